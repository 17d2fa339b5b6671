"""One measurement row: the shape every kind of result (verbs, transfer, crosscheck, baseline) writes.

    {"measured": {...},        # what was measured, its keys in a fixed order: {"test", "size"} (verbs),
                               #   {"handoff", "transport", "sector"} (transfer; + "variant" for an nfs-*
                               #   transport run with a scenario's [nfs] options: "v4.2 nconnect=4"),
                               #   {"tool", "test", "size"} (crosscheck), {"tool", "size"} (baseline)
     "repetition": 0,
     "metric": "bw_avg_MiBps", "unit": "MiB/s", "value": 1234.5, "higher_is_better": true,
     "bytes": 65536000,        # payload moved (null where nothing is counted: a latency test)
     "seconds": 0.05,          # over how long (null where the figure is not a rate)
     "cpu": {"client": {...}, "server": {...},   # cpu.CpuMeter figures at each end (null: not metered)
             "per_gb": {...},                    # cpu.per_gb: CPU-seconds per GB moved, when bytes moved
             "roles": {...}},                    # which host each end was, where that is not obvious
     "detail": {...}}          # everything else the kind measured, kept for the record

make() is the one function that builds a row; compare, plots, the report and the what-if read these keys
and never ask which kind of result a row came from. from_v1() turns a row of a schema-1 file into one.
"""

from __future__ import annotations

from .. import config
from ..nfs.variants import natural_key
from ..cpu import per_gb
from ..engines import tests
from ..transports.base import KNOWN as TRANSPORTS
from ..units import format_size

LATENCY_FIGURES = ("lat_min_us", "lat_max_us", "lat_mean_us", "lat_stdev_us", "lat_p50_us", "lat_p99_us",
                   "lat_p99_9_us", "lat_p99_99_us")
# metric -> (unit, higher is better)
METRICS = {"bw_avg_MiBps": ("MiB/s", True), "throughput_MiBps": ("MiB/s", True), "t_typical_us": ("µs", False),
           "ops_per_s": ("ops/s", True),  # crosscheck's atomic_bw pair: 8-byte operations, compared by their rate
           **{m: ("µs", False) for m in LATENCY_FIGURES}}
KEYS = ("measured", "repetition", "metric", "unit", "value", "higher_is_better", "bytes", "seconds", "cpu", "detail")
# the order rows are listed in: by these measured keys, each in its registry's order where it has one
ORDER = (("scenario", ()), ("tool", ()), ("test", tuple(tests.TESTS)), ("from", ()), ("to", ()),
         ("handoff", config.HANDOFFS), ("sector", ()), ("transport", TRANSPORTS), ("variant", ()), ("size", ()),
         ("workers", ()), ("host", ()))


def make(measured: dict, metric: str, value: float, *, repetition: int = 0, bytes: int | None = None,
         seconds: float | None = None, cpu: dict | None = None, detail: dict | None = None) -> dict:
    """One row. ``cpu`` is {"client": ..., "server": ...} (CpuMeter figures, optionally "roles"; "server" None
    where that end is not ours to meter); CPU-seconds per GB are derived here from it and ``bytes``, nowhere else."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; metrics: {', '.join(METRICS)}")
    unit, higher = METRICS[metric]
    if cpu is not None:
        cpu = dict(cpu)
        figures = per_gb(cpu["client"], cpu.get("server"), bytes or 0) if cpu.get("client") else None
        if figures:
            cpu["per_gb"] = figures
    return {"measured": dict(measured), "repetition": repetition, "metric": metric, "unit": unit,
            "value": float(value), "higher_is_better": higher, "bytes": bytes, "seconds": seconds, "cpu": cpu,
            "detail": dict(detail or {})}


def figure(row: dict, metric: str):
    """The row's value for ``metric``: its own figure, or one kept in its detail (another latency percentile)."""
    return row["value"] if metric == row["metric"] else row["detail"].get(metric)


def label(measured: dict) -> str:
    """What was measured, for people: "write_bw 64 KiB", "pc1-pc2 http 32GiB", "pc1-pc2 nfs-tcp 8MiB v3 nconnect=4",
    a cluster's "fan-in pc1-pc2 http 32GiB 2 workers aggregate" and "all-pairs a -> b write_bw 64 KiB"."""
    return " ".join(_part(k, v) for k, v in measured.items())


def _part(key: str, v) -> str:
    if key == "size":
        return format_size(int(v))
    if key == "workers":
        return f"{v} worker" + ("" if v == 1 else "s")
    if key == "host":
        return "aggregate" if v == "all" else f"at {v}"
    if key == "from":
        return f"{v} ->"
    return str(v)


def series(measured: dict) -> str | None:
    """The transport as plots and the what-if name it: "nfs-tcp v3 nconnect=4" for an [nfs] variant."""
    transport, variant = measured.get("transport"), measured.get("variant")
    return f"{transport} {variant}" if transport and variant else transport


def sort_key(measured: dict) -> tuple:
    out = []
    for key, order in ORDER:
        if key in measured:
            v = measured[key]
            value = (v if key == "size" else f"{int(v):09d}" if key == "workers" else
                     natural_key(str(v)) if key == "variant" else str(v))
            out += [order.index(v) if v in order else len(order), value]
    return tuple(out)


# ---- schema 1: one flat dict per row, its shape depending on the kind ----

_V1_MEASURED = {"verbs": ("test", "size"), "transfer": ("handoff", "transport", "sector"),
                "crosscheck": ("tool", "test", "size")}
_V1_METRICS = ("throughput_MiBps", "t_typical_us", "lat_p50_us", "bw_avg_MiBps")  # the first present is judged


def from_v1(kind: str, old: dict) -> dict:
    old = dict(old)
    measured = {k: old.pop(k) for k in _V1_MEASURED[kind] if k in old}
    metric = next((m for m in _V1_METRICS if m in old), None)
    if metric is None:
        raise ValueError(f"a {kind} row of schema 1 with none of {', '.join(_V1_METRICS)}")
    cpu = old.pop("cpu", None)
    if cpu is not None:
        cpu = {**cpu, **({"roles": old.pop("cpu_roles")} if "cpu_roles" in old else {})}
    per = old.pop("cpu_s_per_gb", None)
    row = make(measured, metric, old[metric], repetition=old.pop("repetition", 0), bytes=old.pop("bytes", None),
               seconds=old.pop("seconds", None), detail=old)
    if cpu is not None:  # as recorded, not derived again
        row["cpu"] = {**cpu, **({"per_gb": per} if per else {})}
    return row
