"""The one loader: result files into pandas tables that compare, report and the what-if all read.

    t = frames.load(["a.json", "b.json.gz"])
    t.runs        one row per file: run label, path, kind, and its context flattened (host, kernel, device, ...)
    t.rows        one row per measurement, whatever its kind (row.py's shape): run, kind, key (what was measured,
                  as a tuple), item (its label), order, the measured keys as columns (test, size, handoff,
                  transport, sector, variant, tool), repetition, metric, unit, value, higher_is_better, bytes, seconds,
                  then cpu.* and detail.* flattened with dots (cpu.per_gb.client_system, detail.lat_p99_us, ...);
                  raw samples are not kept here
    t.aside       the rows of kinds that are set aside (ASIDE: crosscheck), in the same shape
    t.samples     raw latency samples, one row per sample: run, test, size, repetition, latency_us

Every table has a `run` column naming the file it came from (its name, made unique).
``series(df)`` names each row's transport as plots and the what-if show it (an [nfs] variant is its own:
"nfs-tcp v3 nconnect=4"), ``series_order(df)`` lists those names in the transports' order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..nfs.variants import natural_key
from ..transports.base import KNOWN as TRANSPORTS
from . import row as rowshape
from .model import Result, load as load_result

# context fields shown and compared, as (column, path into the context dict)
CONTEXT_FIELDS = [
    ("hostname", ("host", "hostname")),
    ("kernel", ("host", "kernel")),
    ("os", ("host", "os")),
    ("cpu_model", ("host", "cpu_model")),
    ("virtualization", ("host", "virtualization")),
    ("container", ("host", "container")),  # podman or docker; absent in files from before it was recorded
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
# kinds whose rows are neither compared nor plotted, and why: they pair two tools, and their own command says it
ASIDE = {"crosscheck": "`rdmabench crosscheck` prints their ratios"}
FIRST = ["run", "kind", "key", "item", "order"]


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
    rows: pd.DataFrame
    aside: pd.DataFrame
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


def _record(label: str, kind: str, r: dict) -> dict:
    """A row for the table: its measured keys become columns beside the common ones."""
    m = r["measured"]
    return {"run": label, "kind": kind, "key": tuple(m.items()), "item": rowshape.label(m),
            "order": rowshape.sort_key(m), **m, **{k: v for k, v in r.items() if k != "measured"}}


def from_results(labelled: list[tuple[str, Result]], paths: list[Path] | None = None) -> Tables:
    runs, rows, aside, samples = [], [], [], []
    for i, (label, result) in enumerate(labelled):
        runs.append({"run": label, "path": str(paths[i]) if paths else None, "kind": result.kind,
                     "created": result.created, "rows": len(result.rows),
                     "peer_hostname": _get(result.peer_context, ("host", "hostname")),
                     **context_row(result.context)})
        for r in result.rows:
            detail = dict(r["detail"])
            raw = detail.pop("samples_us", None)
            (aside if result.kind in ASIDE else rows).append(_record(label, result.kind, {**r, "detail": detail}))
            if raw and result.kind not in ASIDE:
                m = r["measured"]
                samples.extend({"run": label, "test": m.get("test"), "size": m.get("size"),
                                "repetition": r["repetition"], "latency_us": v} for v in raw)
    return Tables(
        runs=pd.DataFrame(runs, columns=["run", "path", "kind", "created", "rows", "peer_hostname"]
                          + [c for c, _ in CONTEXT_FIELDS]),
        rows=_frame(rows, FIRST),
        aside=_frame(aside, FIRST),
        samples=pd.DataFrame(samples, columns=["run", "test", "size", "repetition", "latency_us"]),
        results={label: r for label, r in labelled},
    )


def column(df: pd.DataFrame, name: str) -> pd.Series:
    """A column, or all missing where no row has it (a measured key that none of these rows has)."""
    return df[name] if name in df.columns else pd.Series([None] * len(df), index=df.index, dtype=object)


def series(df: pd.DataFrame) -> pd.Series:
    """Per row, the transport a plot or the what-if shows it under: its transport, followed by its [nfs]
    variant where it has one ("nfs-rdma v4.2 nconnect=4"), so that variants are never averaged together."""
    transport, variant = column(df, "transport"), column(df, "variant")
    has = transport.notna() & variant.notna()
    return transport.where(~has, transport.astype(str) + " " + variant.astype(str))


def series_order(df: pd.DataFrame) -> list[str]:
    """The distinct series of ``df``: known transports in their registry's order, each one's variants
    in natural order ("nconnect=4" before "nconnect=16"), then anything else by name."""
    seen = dict.fromkeys(zip(column(df, "transport"), column(df, "variant"), series(df)))

    def key(entry):
        transport, variant, _ = entry
        where = TRANSPORTS.index(transport) if transport in TRANSPORTS else len(TRANSPORTS)
        return where, str(transport), natural_key(variant) if isinstance(variant, str) else ()
    return [name for *_, name in sorted((e for e in seen if isinstance(e[2], str)), key=key)]
