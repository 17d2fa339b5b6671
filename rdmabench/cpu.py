"""CPU cost of a measured interval, as qperf counts it and per process.

System-wide: the jiffies of /proc/stat that are not idle — user, nice, system,
irq, softirq, steal (iowait counted separately: qperf adds it, we report it
apart so a disk-bound run does not look CPU-bound) — over the elapsed time;
1.0 = one core busy. Per process: this process's (and its children's) user and
system seconds from psutil. CPU-seconds per GB moved are derived from both.

/proc/stat ticks (HZ, commonly 100 or 250 a second): over an interval of a few ticks it says more
cores were busy than the host has, or none at all. A system-wide figure over fewer than MIN_TICKS
ticks is reported with its raw counts, ``"measurable": false`` and a note, and no rate. The process
figure does not tick: ``cpu_s`` is the process's CPU clock (CLOCK_PROCESS_CPUTIME_ID, the
scheduler's own nanosecond count) plus its children's, so it holds for a 20 ms test too; only its
user/system split is tick-counted. No rate is ever above the host's core count.
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
    proc_clock: float  # this process's CPU clock, all threads, plus its children's (tick-counted) seconds


class CpuMeter:
    """meter = CpuMeter(); ... ; figures = meter.stop(bytes_moved)."""

    def __init__(self, pid: int | None = None):
        self._proc = psutil.Process(pid or os.getpid())
        self._hz = os.sysconf("SC_CLK_TCK")
        self._start = self._mark()

    def _mark(self) -> _Mark:
        t = self._proc.cpu_times()
        clock = (time.process_time() if self._proc.pid == os.getpid() else t.user + t.system) \
            + t.children_user + t.children_system
        return _Mark(time.perf_counter(), _proc_stat(), t.user + t.children_user, t.system + t.children_system, clock)

    def stop(self, bytes_moved: int | None = None) -> dict:
        end = self._mark()
        elapsed = end.wall - self._start.wall
        delta = {k: (end.stat[k] - self._start.stat[k]) / self._hz for k in _FIELDS}
        busy_s = sum(delta[k] for k in BUSY)
        proc_s = end.proc_clock - self._start.proc_clock
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
                "pid": self._proc.pid,  # whose figure this is: a local run's two ends are two processes
                "user_s": end.proc_user - self._start.proc_user,
                "system_s": end.proc_system - self._start.proc_system,
                "cpu_s": proc_s,
                "cores": min(proc_s / elapsed, cores) if elapsed > 0 else None,
            },
        }
        if not measurable:
            out["note"] = (f"{elapsed * 1000:.0f} ms is under {MIN_TICKS} ticks of /proc/stat "
                           f"({MIN_TICKS / self._hz:g} s): no system-wide rate (run longer: more --iters or "
                           "--duration); the process figure is exact")
        if bytes_moved:
            if measurable:
                out["system"]["cpu_s_per_gb"] = _per_gb(busy_s, bytes_moved)
            out["process"]["cpu_s_per_gb"] = _per_gb(proc_s, bytes_moved)
        return out


def _per_gb(cpu_s: float, moved: int) -> float:
    return cpu_s / (moved / 1e9)


def per_gb(client: dict, server: dict | None, moved: int) -> dict | None:
    """CPU-seconds per GB moved at both ends: per process always, system-wide where the interval was long
    enough to measure (see MIN_TICKS); None when nothing moved. results.row.make calls it for every row.
    ``server`` None: the other end is not ours to meter (a live Lotus): the client's figures alone."""
    if not moved:
        return None
    out = {"client_process": _per_gb(client["process"]["cpu_s"], moved)}
    if server is not None:
        out["server_process"] = _per_gb(server["process"]["cpu_s"], moved)
    for side, cpu in (("client", client), ("server", server)):
        if cpu is not None and cpu.get("measurable", True):
            out[f"{side}_system"] = _per_gb(cpu["system"]["busy_s"], moved)
    return out
