"""CPU cost of a measured interval, as qperf counts it and per process.

System-wide: the jiffies of /proc/stat that are not idle — user, nice, system,
irq, softirq, steal (iowait counted separately: qperf adds it, we report it
apart so a disk-bound run does not look CPU-bound) — over the elapsed time;
1.0 = one core busy. Per process: this process's (and its children's) user and
system seconds from psutil. CPU-seconds per GB moved are derived from both.

Both counters tick (HZ, commonly 100 or 250 a second): over an interval of a few ticks they say
more cores were busy than the host has, or none at all for a process that spun the whole time.
An interval shorter than MIN_TICKS ticks is reported with its raw counts and ``"measurable":
false`` and no rates; a rate is never above the host's core count.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

MIN_TICKS = 50  # 0.5 s at HZ 100: one tick either way is then 2 % of the figure
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
        cores = psutil.cpu_count()
        measurable = elapsed >= MIN_TICKS / self._hz
        out = {
            "elapsed_s": elapsed,
            "cores": cores,
            "measurable": measurable,
            "system": {
                # qperf's cpus_used, 1.0 = one core
                "busy_cores": min(busy_s / elapsed, cores) if measurable else None,
                "busy_s": busy_s,
                **{f"{k}_s": delta[k] for k in _FIELDS},
            },
            "process": {
                "user_s": end.proc_user - self._start.proc_user,
                "system_s": end.proc_system - self._start.proc_system,
                "cores": min(proc_s / elapsed, cores) if measurable else None,
            },
        }
        if not measurable:
            out["note"] = (f"{elapsed * 1000:.0f} ms is under {MIN_TICKS} ticks of the kernel's CPU accounting "
                           f"({MIN_TICKS / self._hz:g} s): no rates (run longer: more --iters or --duration)")
        elif bytes_moved:
            gb = bytes_moved / 1e9
            out["system"]["cpu_s_per_gb"] = busy_s / gb
            out["process"]["cpu_s_per_gb"] = proc_s / gb
        return out


def per_gb(client: dict, server: dict, moved: int) -> dict | None:
    """CPU-seconds per GB moved at both ends, system-wide and per process; None when either interval
    was too short to measure or nothing moved."""
    if not moved or not client.get("measurable", True) or not server.get("measurable", True):
        return None
    gb = moved / 1e9
    proc = lambda c: c["process"]["user_s"] + c["process"]["system_s"]  # noqa: E731
    return {"client_system": client["system"]["busy_s"] / gb, "client_process": proc(client) / gb,
            "server_system": server["system"]["busy_s"] / gb, "server_process": proc(server) / gb}
