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


def rank(p: float, n: int) -> int:
    """The nearest-rank method's 1-based rank of percentile p among n samples."""
    return max(1, math.ceil(p / 100 * n))


def percentile_key(p: float) -> str:
    return f"lat_p{str(p).replace('.', '_')}_us"


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        raise ValueError("no samples")
    return sorted_values[rank(p, len(sorted_values)) - 1]


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
        out[percentile_key(p)] = percentile(us, p)
    return out


def latency_from_histogram(bucket_ns: Sequence[float], counts: Sequence[int], sample: str) -> dict:
    """metrics.latency's figures from the engine's histogram of every sample (native/ep_window.c: each
    bucket's middle is within 1/256 of its samples), for a run whose raw samples stopped at max_samples."""
    pairs = sorted((v, c) for v, c in zip(bucket_ns, counts) if c)
    n = sum(c for _, c in pairs)
    if not n:
        raise ValueError("no latency samples")
    mean = sum(v * c for v, c in pairs) / n
    var = sum(c * (v - mean) ** 2 for v, c in pairs) / (n - 1) if n > 1 else 0.0
    out = {"samples": n, "sample": sample, "trimmed": "none",
           "percentiles_from": "the histogram of every sample (each figure within 0.4 %): the raw samples "
                               "stopped at max_samples",
           "lat_min_us": pairs[0][0] / 1000, "lat_max_us": pairs[-1][0] / 1000, "lat_mean_us": mean / 1000,
           "lat_stdev_us": math.sqrt(var) / 1000}
    for p in PERCENTILES:
        seen = 0
        for v, c in pairs:
            seen += c
            if seen >= rank(p, n):
                out[percentile_key(p)] = v / 1000
                break
    return out


WINDOW_RULE = ("a window closes at the loop's first check after the interval is up (never shorter); min, median "
               "and max are over the full windows: the last one, cut short by the run's end, is listed but not "
               "counted")


def windows(raw: dict, size: int) -> dict:
    """Per-window figures of a run (the engine's raw windows: end times in ns since the first operation,
    cumulative operations) and, over the full windows, min/median/max bandwidth (bandwidth runs) or of
    the windows' p50 and p99 (latency runs)."""
    t_ns, ops, last = list(raw.get("t_ns") or []), list(raw.get("ops") or []), list(raw.get("last") or [])
    latency = "lat_p50_ns" in raw
    out_w, starts = [], [0] + t_ns[:-1]
    prev_ops = [0] + ops[:-1]
    for k, (t0, t1) in enumerate(zip(starts, t_ns)):
        seconds = (t1 - t0) / 1e9
        if seconds <= 0:
            continue
        w = {"t_s": round(t1 / 1e9, 6), "seconds": round(seconds, 6), "ops": ops[k] - prev_ops[k],
             "full": not (last[k] if k < len(last) else False)}
        if latency:
            w.update({"samples": raw["samples"][k]} if "samples" in raw else {})
            for key in ("lat_min_ns", "lat_p50_ns", "lat_p99_ns", "lat_max_ns"):
                w[key.replace("_ns", "_us")] = raw[key][k] / 1000
        else:
            w["MiBps"] = w["ops"] * size / seconds / MIB
        out_w.append(w)
    full = [w for w in out_w if w["full"]]
    out: dict = {"windows": out_w, "windows_full": len(full), "window_rule": WINDOW_RULE}
    if not full:
        return out
    if latency:
        for key in ("lat_p50_us", "lat_p99_us"):
            vals = [w[key] for w in full if w.get("samples", 1)]
            if vals:
                out[f"window_{key}"] = {"min": min(vals), "median": statistics.median(vals), "max": max(vals)}
    else:
        rates = [w["MiBps"] for w in full]
        out.update({"bw_window_min_MiBps": min(rates), "bw_window_median_MiBps": statistics.median(rates),
                    "bw_window_max_MiBps": max(rates)})
    return out
