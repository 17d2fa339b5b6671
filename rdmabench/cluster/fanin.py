"""Fan-in: N workers move a hand-off against one storage host at the same moment, over one transport.

Each step of the [fan_in] scenario runs once per worker count (``workers = [1, 2]``): the first n workers
take part, the others only keep step. A taking-part worker does what `rdmabench run --config --peer`
does for one transfer (transfer.runner.transfer, against the storage host's `serve` service in the
storage rank's process), with two meeting points: all ends set up, then all moves done. Between them
the storage rank meters its own process (which serves every worker) and each worker times its move.

Rows (one result file, written by the storage rank):
- one per taking-part worker: ``{"scenario": "fan-in", "handoff", "transport", "sector", "workers": n,
  "host": <worker>}``, its throughput, its CPU and the storage process's over its move;
- one aggregate per step: ``"host": "all"``, all bytes over the slowest worker's time, with fairness
  (figures.fairness) and the storage host's CPU over the whole fan-in.
No clock is shared between hosts: every duration is measured on one host.
"""

from __future__ import annotations

from ..cpu import CpuMeter
from ..results.row import make as make_row
from ..transfer import runner
from ..transfer.hosts import LocalHost, RemoteHost
from . import figures

SCENARIO = "fan-in"


def plan(cluster) -> list[tuple]:
    """(step, n) in run order: every scenario step at every worker count, the counts innermost so a drift
    of the hosts spreads over all of them alike."""
    return [(step, n) for step in cluster.fan_in.plan() for n in cluster.fan_in_counts]


def label(step, n: int) -> str:
    handoff, shape, transport, rep, _ = step
    return f"fan-in {handoff} {shape.label} {transport} x{n} #{rep + 1}"


class WorkerSide:
    """A worker rank's part: its own folders, and the storage host's serve at the other end."""

    def __init__(self, cluster, index: int, name: str, chan, bind: str, options: dict):
        self.c, self.index, self.name, self.options = cluster, index, name, options
        work = cluster.root / name  # each host's own folder (several ranks on one machine never share one)
        self.local = LocalHost(name, work / "storage", work / "work", bind, cluster.fan_in.token, options)
        self.storage = RemoteHost(chan, cluster.fan_in.token, name=cluster.storage)
        self.workloads: dict = {}

    def _descs(self, handoff, shape, source):
        key = (handoff, shape)
        if key not in self.workloads:
            # sector numbers of their own per worker: two workers never share a file at either end
            number = 1 + 1000 * (self.index + 1) + len(self.workloads)
            self.workloads[key] = source.generate(shape.sector_size, runner.HANDOFF_STAGE[handoff],
                                                  str(shape.scale), self.c.fan_in.miner, number)
        return self.workloads[key]

    def step(self, step, n: int, sync) -> dict | None:
        handoff, shape, transport, rep, variant = step
        if self.index >= n:  # not taking part at this count: keep step
            sync("ready")
            sync("moved")
            return None
        pull = runner.SOURCE_IS_STORAGE[handoff]
        source, dest = (self.storage, self.local) if pull else (self.local, self.storage)
        descs = self._descs(handoff, shape, source)
        row = runner.transfer(handoff, shape, transport, rep, descs, source, dest, self.local, self.storage,
                               self.options, variant, None, sync=sync)
        row["measured"] = {"scenario": SCENARIO, **row["measured"], "workers": n, "host": self.name}
        return row


def storage_step(sync) -> dict:
    """The storage rank's part of one step: its own process's CPU from all ends set up to all moves done
    (its serve threads answer every worker; this thread only waits at the meeting points)."""
    sync("ready")
    meter = CpuMeter()
    sync("moved")
    return meter.stop()


def aggregate(step, n: int, worker_rows: list[dict], storage_cpu: dict, storage: str) -> dict:
    """The step's aggregate row from the taking-part workers' rows and the storage host's CPU."""
    handoff, shape, transport, rep, _ = step
    fair = figures.fairness({r["measured"]["host"]: r for r in worker_rows})
    moved = sum(r["bytes"] for r in worker_rows)
    cpu_s = storage_cpu["process"]["cpu_s"]
    detail = {**fair, "storage": storage, "storage_cpu_s": cpu_s,
              "storage_cpu_s_per_gb": cpu_s / (moved / 1e9) if moved else None,
              "workers_cpu_s_per_gb": (sum(r["cpu"]["client"]["process"]["cpu_s"] for r in worker_rows)
                                       / (moved / 1e9)) if moved else None,
              "verified": all(r["detail"]["verified"] for r in worker_rows),
              "files": sum(r["detail"]["files"] for r in worker_rows),
              "how": "all bytes over the slowest worker's move time; each duration measured on its own host"}
    measured = {"scenario": SCENARIO, "handoff": handoff, "transport": transport, "sector": shape.label,
                "workers": n, "host": "all"}
    return make_row(measured, "throughput_MiBps", fair["aggregate_MiBps"], repetition=rep, bytes=moved,
                    seconds=fair["slowest_s"], cpu={"client": None, "server": storage_cpu,
                                                    "roles": {"server": "storage"}}, detail=detail)
