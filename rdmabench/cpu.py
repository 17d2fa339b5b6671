"""CPU cost of a measured interval, as qperf counts it and per process.

System-wide: the jiffies of /proc/stat that are not idle — user, nice, system,
irq, softirq, steal (iowait counted separately: qperf adds it, we report it
apart so a disk-bound run does not look CPU-bound) — over the elapsed time;
1.0 = one core busy. Per process: this process's (and its children's) user and
system seconds from psutil. CPU-seconds per GB moved are derived from both.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
BUSY = ("user", "nice", "system", "irq", "softirq", "steal")


def _proc_stat() -> dict[str, int]:
    with open("/proc/stat") as f:
        parts = f.readline().split()
    assert parts[0] == "cpu"
    return dict(zip(_FIELDS, map(int, parts[1:9])))


@dataclass
class _Mark:
    wall: float
    stat: dict[str, int]
    proc_user: float
    proc_system: float


class CpuMeter:
    """meter = CpuMeter(); ... ; figures = meter.stop(bytes_moved)."""

    def __init__(self, pid: int | None = None):
        self._proc = psutil.Process(pid or os.getpid())
        self._hz = os.sysconf("SC_CLK_TCK")
        self._start = self._mark()

    def _mark(self) -> _Mark:
        t = self._proc.cpu_times()
        return _Mark(time.perf_counter(), _proc_stat(), t.user + t.children_user, t.system + t.children_system)

    def stop(self, bytes_moved: int | None = None) -> dict:
        end = self._mark()
        elapsed = end.wall - self._start.wall
        delta = {k: (end.stat[k] - self._start.stat[k]) / self._hz for k in _FIELDS}
        busy_s = sum(delta[k] for k in BUSY)
        proc_s = (end.proc_user - self._start.proc_user) + (end.proc_system - self._start.proc_system)
        out = {
            "elapsed_s": elapsed,
            "cores": psutil.cpu_count(),
            "system": {
                "busy_cores": busy_s / elapsed if elapsed > 0 else 0.0,  # qperf's cpus_used, 1.0 = one core
                "busy_s": busy_s,
                **{f"{k}_s": delta[k] for k in _FIELDS},
            },
            "process": {
                "user_s": end.proc_user - self._start.proc_user,
                "system_s": end.proc_system - self._start.proc_system,
                "cores": proc_s / elapsed if elapsed > 0 else 0.0,
            },
        }
        if bytes_moved:
            gb = bytes_moved / 1e9
            out["system"]["cpu_s_per_gb"] = busy_s / gb
            out["process"]["cpu_s_per_gb"] = proc_s / gb
        return out
