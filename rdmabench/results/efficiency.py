"""The report's efficiency table: each rdma transfer (mean over its repetitions) beside the raw bandwidth of
the same link at the same chunk size, QPs and depth, measured in the same run (rdmabench.transfer.efficiency),
and the share of it the transfer reached.

Only rows that carry the fields are listed: files written before rdma rows had a raw figure add nothing
(and break nothing). A row whose raw measurement failed is listed with "-" and the reason.
"""

from __future__ import annotations

import pandas as pd

from ..units import format_size
from .frames import Tables, column

HEADER = ["run", "hand-off", "sector", "transport", "reps", "MiB/s", "raw test", "chunk x QPs x depth",
          "raw MiB/s", "of raw", "note"]
CAPTION = ("raw: the link's write_bw (rdma-write) or read_bw (rdma-read) with message size = the transfer's chunk, "
           "QPs = its streams, depth = its chunks in flight per stream, measured once per setting in the same run; "
           "of raw: transfer throughput / raw, mean over repetitions.")


def _mean(values: pd.Series) -> float | None:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return float(v.mean()) if len(v) else None


def _setup(g: pd.DataFrame) -> str:
    first = g.iloc[0]
    size, qps, depth = (first.get(f"detail.raw_setup.{k}") for k in ("size", "qps", "depth"))
    if any(x is None or x != x for x in (size, qps, depth)):
        return "-"
    return f"{format_size(int(size))} x {int(qps)} x {int(depth)}"


def table(t: Tables) -> list[list[str]]:
    """One line per (run, hand-off, sector, rdma transport) whose rows carry a raw figure field."""
    df = t.rows
    if df.empty or "detail.raw_test" not in df.columns:
        return []
    df = df[column(df, "handoff").notna() & df["detail.raw_test"].notna()]
    if df.empty:
        return []
    runs = list(t.runs["run"])
    keys = [(runs.index(r), o) for r, o in zip(df["run"], df["order"])]  # files in order, then row.sort_key
    df = df.iloc[sorted(range(len(df)), key=keys.__getitem__)]
    body = []
    for (run, handoff, sector, transport), g in df.groupby(["run", "handoff", "sector", "transport"], sort=False):
        raw, eff = _mean(column(g, "detail.raw_bw_MiBps")), _mean(column(g, "detail.efficiency"))
        notes = [n for n in dict.fromkeys(column(g, "detail.raw_note")) if isinstance(n, str) and n]
        body.append([run, handoff, str(sector), transport, str(len(g)), f"{g['value'].mean():.1f}",
                     str(g["detail.raw_test"].iloc[0]), _setup(g), "-" if raw is None else f"{raw:.1f}",
                     "-" if eff is None else f"{eff:.0%}", "; ".join(notes)])
    return body
