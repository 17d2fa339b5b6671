"""The one loader: result files into pandas tables that compare, report and the what-if all read.

    t = frames.load(["a.json", "b.json.gz"])
    t.runs        one row per file: run label, path, kind, and its context flattened (host, kernel, device, ...)
    t.verbs       one row per verbs measurement (test, size, repetition, ...), nested dicts flattened with dots
                  (cpu_s_per_gb.client_system, cpu.server.system.busy_s, ...); raw samples are not kept here
    t.transfer    one row per transfer measurement (handoff, transport, sector, repetition, throughput_MiBps, ...)
    t.crosscheck  crosscheck rows (tool: perftest | rdmabench)
    t.samples     raw latency samples, one row per sample: run, test, size, repetition, latency_us

Every table has a `run` column naming the file it came from (its name, made unique).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .model import Result, load as load_result

# context fields shown and compared, as (column, path into the context dict)
CONTEXT_FIELDS = [
    ("hostname", ("host", "hostname")),
    ("kernel", ("host", "kernel")),
    ("os", ("host", "os")),
    ("cpu_model", ("host", "cpu_model")),
    ("virtualization", ("host", "virtualization")),
    ("rdma_core", ("host", "rdma_core")),
    ("perftest", ("host", "perftest")),
    ("rdmabench", ("host", "rdmabench")),
    ("device", ("device", "name")),
    ("driver", ("device", "driver")),
    ("firmware", ("device", "firmware")),
    ("link_layer", ("device", "link_layer")),
    ("rate", ("device", "rate")),
    ("active_mtu", ("device", "active_mtu")),
    ("gid_type", ("device", "gid_type")),
    ("environment", ("environment",)),
    ("hardware", ("hardware",)),
]
LATENCY_TESTS = ("write_lat", "read_lat", "send_lat")
BANDWIDTH_TESTS = ("write_bw", "read_bw", "send_bw")


def _get(d: dict | None, path: tuple[str, ...]):
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def context_row(context: dict | None) -> dict:
    return {col: _get(context, path) for col, path in CONTEXT_FIELDS}


@dataclass
class Tables:
    runs: pd.DataFrame
    verbs: pd.DataFrame
    transfer: pd.DataFrame
    crosscheck: pd.DataFrame
    samples: pd.DataFrame
    results: dict[str, Result] = field(default_factory=dict)  # run label -> the Result it came from

    def kinds(self) -> set[str]:
        return set(self.runs["kind"]) if not self.runs.empty else set()


def _labels(paths: list[Path]) -> list[str]:
    """File names, without .json/.gz; made unique by prefixing their position when two are the same."""
    names = [p.name.removesuffix(".gz").removesuffix(".json") for p in paths]
    return [f"{i + 1}:{n}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _frame(rows: list[dict], first: list[str]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame(columns=first)
    df = pd.json_normalize(rows, sep=".")
    return df[[c for c in first if c in df.columns] + [c for c in df.columns if c not in first]]


def load(paths: list[Path | str]) -> Tables:
    """Read and validate every file (model.load), then shape them into tables."""
    paths = [Path(p) for p in paths]
    return from_results(list(zip(_labels(paths), [load_result(p) for p in paths])), paths)


def from_results(labelled: list[tuple[str, Result]], paths: list[Path] | None = None) -> Tables:
    runs, verbs, transfer, cross, samples = [], [], [], [], []
    for i, (label, result) in enumerate(labelled):
        runs.append({"run": label, "path": str(paths[i]) if paths else None, "kind": result.kind,
                     "created": result.created, "rows": len(result.rows),
                     "peer_hostname": _get(result.peer_context, ("host", "hostname")),
                     **context_row(result.context)})
        for row in result.rows:
            row = {k: v for k, v in row.items()}
            raw = row.pop("samples_us", None)
            if result.kind == "verbs":
                verbs.append({"run": label, **row})
                if raw:
                    samples.extend({"run": label, "test": row.get("test"), "size": row.get("size"),
                                    "repetition": row.get("repetition", 0), "latency_us": v} for v in raw)
            elif result.kind == "transfer":
                transfer.append({"run": label, **row})
            else:
                cross.append({"run": label, **row})
    return Tables(
        runs=pd.DataFrame(runs, columns=["run", "path", "kind", "created", "rows", "peer_hostname"]
                          + [c for c, _ in CONTEXT_FIELDS]),
        verbs=_frame(verbs, ["run", "test", "size", "repetition"]),
        transfer=_frame(transfer, ["run", "handoff", "transport", "sector", "repetition"]),
        crosscheck=_frame(cross, ["run", "tool"]),
        samples=pd.DataFrame(samples, columns=["run", "test", "size", "repetition", "latency_us"]),
        results={label: r for label, r in labelled},
    )


def metric_for(test: str, latency_metric: str = "lat_p50_us") -> str:
    """The column a verbs test is judged by: average bandwidth, or a latency figure (p50 by default)."""
    return latency_metric if test in LATENCY_TESTS else "bw_avg_MiBps"
