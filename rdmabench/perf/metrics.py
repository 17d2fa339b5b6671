"""Figures from an engine's raw record. Pure functions: easy to check by hand.

Bandwidth average = bytes / (last completion - first post), as perftest's "BW
average". The best window is the highest rate over any stretch of consecutive
signaled completions spanning at least a tenth of the run's operations: a
labelled, bounded version of perftest's optimistic "BW peak". Completions
reaped in one poll share a timestamp and count as one point.

Latency percentiles are exact, by the nearest-rank method, over every sample
(nothing trimmed unless asked; a trim is stated in the output). stdev is a float
sample standard deviation, not perftest's whole-microsecond truncation.
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

MIB = 1 << 20
PERCENTILES = (50, 99, 99.9, 99.99)


def bandwidth(nbytes: int, ops: int, t_start_ns: float, t_end_ns: float) -> dict:
    seconds = (t_end_ns - t_start_ns) / 1e9
    if seconds <= 0:
        raise ValueError("empty measurement interval")
    return {
        "bytes": nbytes,
        "ops": ops,
        "seconds": seconds,
        "bw_avg_MiBps": nbytes / seconds / MIB,
        "bw_avg_Gbps": nbytes * 8 / seconds / 1e9,
        "msg_rate_Mpps": ops / seconds / 1e6,
    }


def best_window(completions_ns: Sequence[float], completions_ops: Sequence[int], size: int,
                t_start_ns: float, min_fraction: float = 0.1) -> dict | None:
    """Best rate over consecutive completions covering >= min_fraction of the operations."""
    n = len(completions_ns)
    if n == 0 or len(completions_ops) != n:
        return None
    total_ops = completions_ops[-1]
    need = max(1, math.ceil(total_ops * min_fraction))
    times, ops = [t_start_ns], [0]
    for t, n_ops in zip(completions_ns, completions_ops):
        if t == times[-1]:  # completions reaped in one poll share a timestamp: one point, the later count
            ops[-1] = n_ops
        else:
            times.append(t)
            ops.append(n_ops)
    best = None
    j = 0
    for i in range(1, len(times)):  # window (j, i]: two pointers, shrinking j while the window stays wide enough
        while j + 1 < i and ops[i] - ops[j + 1] >= need:
            j += 1
        if ops[i] - ops[j] < need:
            continue
        dt = times[i] - times[j]
        if dt <= 0:
            continue
        rate = (ops[i] - ops[j]) * size / (dt / 1e9)
        if best is None or rate > best[0]:
            best = (rate, ops[i] - ops[j], dt)
    if best is None:
        return None
    return {"bw_best_window_MiBps": best[0] / MIB, "window_ops": best[1], "window_s": best[2] / 1e9,
            "window_rule": f"shortest span of consecutive signaled completions holding >= {min_fraction:.0%} "
                           "of the run's operations, ending at each completion; the best of those"}


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        raise ValueError("no samples")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency(samples_ns: Sequence[float], sample: str, trim_largest: int = 0) -> dict:
    values = sorted(samples_ns)
    if trim_largest:
        values = values[: len(values) - trim_largest]
    if not values:
        raise ValueError("no latency samples")
    us = [v / 1000 for v in values]
    out = {
        "samples": len(us),
        "sample": sample,
        "trimmed": f"{trim_largest} largest samples dropped" if trim_largest else "none",
        "lat_min_us": us[0],
        "lat_max_us": us[-1],
        "lat_mean_us": statistics.fmean(us),
        "lat_stdev_us": statistics.stdev(us) if len(us) > 1 else 0.0,
    }
    for p in PERCENTILES:
        out[f"lat_p{str(p).replace('.', '_')}_us"] = percentile(us, p)
    return out
