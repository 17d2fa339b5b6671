"""The sealing what-if: measured transfer throughputs applied to the bytes Lotus moves per sector.

Inputs: the mean task durations from job tracker logs, and a transfer result file (throughput per hand-off
and transport). For one sector size, each hand-off's fetch takes bytes / throughput; today's is Lotus's own
transport (the HTTP fetch for pc1-pc2 and finalize, JSON-RPC for the C1 output, or HTTP where JSON-RPC was not
measured). A sector's time in the pipeline is the sum of the mean AP, PC1, PC2, C1, C2, FIN durations plus its
fetches. Transfers measured on soft-RoCE or under emulation make the what-if illustrative only, and it says so.

Bytes per hand-off, from shared/docs/lotus.md (proofs constants, [C]):
- pc1-pc2: the sealed file + the cache after PC1 (11 layers, tree-d, tree-c, tree-r-last, p_aux, t_aux):
  481,036,337,120 B for 32 GiB.
- finalize: the sealed file + the finalized cache (tree-r-last, p_aux, t_aux).
- c1-c2: the C1 output, twice (worker -> miner, miner -> C2 worker): as base64 inside JSON-RPC over
  Lotus's transport (what `bytes` shows for it), as raw bytes over the others.

Each transport is charged what it moves: a transfer row's throughput is payload bytes per second over
one hop, whatever the transport put on the wire (base64 for JSON-RPC), so a hand-off takes
hops x payload / throughput. Only rows measured at the what-if's sector size are used where there
are any (32 GiB and 64 GiB are never averaged together); otherwise it says which sizes it used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..errors import RdmabenchError
from ..results.frames import Tables, column, series
from ..units import format_size
from .durations import format_seconds
from .logparse import PIPELINE

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
SECTORS = {"2KiB": 2 * KiB, "8MiB": 8 * MiB, "512MiB": 512 * MiB, "32GiB": 32 * GiB, "64GiB": 64 * GiB}
CACHE_AFTER_PC1 = {2 * KiB: 8_160, 8 * MiB: 33_554_400, 512 * MiB: 2_147_483_616, 32 * GiB: 446_676_598_752,
                   64 * GiB: 893_353_197_536}
CACHE_FINALIZED = {2 * KiB: 96, 8 * MiB: 18_784, 512 * MiB: 1_198_432, 32 * GiB: 76_695_872,
                   64 * GiB: 153_391_680}  # + t_aux
T_AUX = 2_000  # "~1-2 KB": the upper end
C1_BASE64_PER_HOP = {2 * KiB: 134_000, 8 * MiB: 281_000, 512 * MiB: 354_000, 32 * GiB: 51_600_000,
                     64 * GiB: 52_200_000}
C1_HOPS = 2
BASE64_TRANSPORTS = ("http",)  # its C1 output goes base64 inside JSON-RPC, as Lotus sends it
HANDOFFS = ("pc1-pc2", "finalize", "c1-c2")
TODAY = {"pc1-pc2": ("http",), "finalize": ("http",), "c1-c2": ("http",)}  # first one measured wins
DAY_S = 86_400
SECTORS_A_DAY = ("Sectors a day = 86,400 s / a sector's time in the pipeline (its mean task durations from the "
                 "logs plus its fetches): one sealing lane taking one sector at a time through AP, PC1, PC2, C1, "
                 "C2 and FIN. A cluster that keeps k sectors in flight seals about k times as many (Little's law), "
                 "so the change against today holds whatever k, as long as a sector's time through this chain is "
                 "what limits the cluster, not a shared resource that is saturated (GPUs, the network, the disks).")


class WhatIfError(RdmabenchError):
    pass


def sector_bytes(name: str | int) -> int:
    from ..units import parse_size

    try:
        size = parse_size(name)
    except ValueError:
        size = None
    if size not in CACHE_AFTER_PC1:
        raise WhatIfError(f"sector size {name!r}: use one of {', '.join(SECTORS)}")
    return size


def handoff_bytes(sector: int) -> dict[str, int]:
    """Bytes Lotus moves at each hand-off for one sector of this size (today's transports)."""
    return {
        "pc1-pc2": sector + CACHE_AFTER_PC1[sector],
        "finalize": sector + CACHE_FINALIZED[sector] + T_AUX,
        "c1-c2": C1_HOPS * C1_BASE64_PER_HOP[sector],
    }


def payload_bytes(sector: int) -> dict[str, int]:
    """What a transfer row's throughput counts per hand-off: the payload, all hops included."""
    from ..workloads.c1 import C1_BYTES

    return {**handoff_bytes(sector), "c1-c2": C1_HOPS * C1_BYTES[sector]}


def wire_bytes(handoff: str, transport: str, sector: int) -> int:
    """What ``transport`` puts on the wire for ``handoff``: base64 for the C1 output over JSON-RPC, raw otherwise."""
    if handoff == "c1-c2" and transport.split()[0] not in BASE64_TRANSPORTS:  # "http live-lotus" is http too
        return payload_bytes(sector)["c1-c2"]
    return handoff_bytes(sector)[handoff]


def _same_shape(tr: pd.DataFrame, sector: int, notes: list[str]) -> pd.DataFrame:
    """Per hand-off, only the rows measured at ``sector``'s size where there are any."""
    if "sector_size" not in tr.columns:
        notes.append(f"the transfer rows do not say their sector size: throughputs of every size "
                     f"({', '.join(sorted(set(map(str, tr.get('sector', [])))))}) are averaged")
        return tr
    parts = []
    for h, rows in tr.groupby("handoff", sort=False):
        same = rows[rows["sector_size"] == sector]
        if same.empty:
            notes.append(f"{h}: nothing measured at {format_size(sector)}; using the rows of "
                         f"{', '.join(sorted(set(map(str, rows['sector']))))}")
            same = rows
        parts.append(same)
    return pd.concat(parts) if parts else tr


def transfer_rows(tables: Tables) -> pd.DataFrame | None:
    """The rows that measured a hand-off's throughput, as (handoff, transport, sector, sector_size,
    throughput_MiBps); None when some file measured no hand-off at all (not a transfer result)."""
    df = tables.rows
    by_handoff = column(df, "handoff").notna()
    if tables.runs.empty or set(tables.runs["run"]) != set(df.loc[by_handoff, "run"]):
        return None
    df = df[by_handoff & (df["metric"] == "throughput_MiBps")]
    # an [nfs] variant is a transport of its own here ("nfs-tcp v3 nconnect=4"): never averaged with the others
    out = df[["run", "handoff"]].assign(transport=series(df), sector=df["sector"], throughput_MiBps=df["value"])
    if "detail.sector_size" in df.columns:
        out["sector_size"] = df["detail.sector_size"]
    return out


@dataclass
class WhatIf:
    sector: int
    environment: str
    hardware: bool
    tasks: pd.DataFrame      # task, count, mean_s (the pipeline's tasks found in the logs)
    fetches: pd.DataFrame    # handoff, transport, today, bytes, throughput_MiBps, repetitions, seconds, vs_today
    pipeline: pd.DataFrame   # scenario, transports, tasks_s, fetch_s, total_s, fetch_share, saved_s, change,
    #                          sectors_per_day (SECTORS_A_DAY says how)
    notes: list[str] = field(default_factory=list)
    measured_with: str = ""  # the sector sizes the throughputs were measured with

    @property
    def illustrative(self) -> bool:
        return not self.hardware


def compute(jobs: pd.DataFrame, tables: Tables, sector: int, today: dict[str, str] | None = None) -> WhatIf:
    """``today`` names, per hand-off, the transport (a series: "http live-lotus") that is today's there, where
    the caller knows better than TODAY (the report: a live fetch from the user's own worker); else TODAY's."""
    choices = {h: (today[h],) if today and today.get(h) else TODAY[h] for h in HANDOFFS}
    tr = transfer_rows(tables)
    if tr is None:
        kinds = ", ".join(sorted(set(tables.runs["kind"]))) or "nothing"
        raise WhatIfError(f"the what-if needs a transfer result (from `rdmabench run --config`), got {kinds}")
    if tr.empty:
        raise WhatIfError("the transfer result has no throughput rows")
    runs = tables.runs
    hardware = bool(runs["hardware"].fillna(False).astype(bool).all())
    environment = "; ".join(dict.fromkeys(str(e) for e in runs["environment"]))
    notes = []
    if not hardware:
        notes.append(f"ILLUSTRATIVE ONLY: the throughputs were measured on {environment}. "
                     "Soft-RoCE (rxe) is not a NIC and under emulation its absolute figures mean nothing: "
                     "measure on the cluster's own hardware before acting on these times.")

    # tasks: mean duration of each pipeline task in the logs
    have = jobs[jobs["task"].isin(PIPELINE)]
    g = have.groupby("task")["duration_s"]
    tasks = pd.DataFrame({"task": [t for t in PIPELINE if t in g.groups]})
    tasks["count"] = [int(g.size()[t]) for t in tasks["task"]]
    tasks["mean_s"] = [float(g.mean()[t]) for t in tasks["task"]]
    missing = [t for t in PIPELINE if t not in g.groups]
    if missing:
        notes.append(f"not in the logs: {', '.join(missing)} (counted as 0 s)")
    tasks_s = float(tasks["mean_s"].sum())

    # throughput: mean per (hand-off, transport) over repetitions, at this sector size where measured
    tr = _same_shape(tr, sector, notes)
    thr = tr.groupby(["handoff", "transport"])["throughput_MiBps"].agg(["mean", "size"])
    moved = payload_bytes(sector)
    today = {}  # from here on: the transport measured as today's, per hand-off
    for h in HANDOFFS:
        today[h] = next((t for t in choices[h] if (h, t) in thr.index), None)
        if today[h] is None:
            notes.append(f"{h}: Lotus's own transport ({' or '.join(choices[h])}) was not measured: "
                         "no baseline for this hand-off")
    fetch_rows = []
    for h in HANDOFFS:
        if h not in thr.index.get_level_values(0):
            notes.append(f"{h}: no transfer measured at this hand-off: left out of the fetch times")
            continue
        base = today[h]
        base_s = moved[h] / (thr.loc[(h, base), "mean"] * MiB) if base else None
        for t in thr.loc[h].index:
            mibps = float(thr.loc[(h, t), "mean"])
            secs = moved[h] / (mibps * MiB)
            fetch_rows.append({"handoff": h, "transport": t, "today": t == base, "bytes": wire_bytes(h, t, sector),
                               "throughput_MiBps": mibps, "repetitions": int(thr.loc[(h, t), "size"]),
                               "seconds": secs, "vs_today": (base_s / secs) if base_s else float("nan")})
    fetches = pd.DataFrame(fetch_rows, columns=["handoff", "transport", "today", "bytes", "throughput_MiBps",
                                                "repetitions", "seconds", "vs_today"])
    fetches["_h"] = fetches["handoff"].map(HANDOFFS.index)
    fetches = fetches.sort_values(["_h", "today", "seconds"], ascending=[True, False, False]).drop(columns="_h")

    # the pipeline per scenario: today, then each other transport where it was measured (today's elsewhere)
    secs = {(r["handoff"], r["transport"]): r["seconds"] for r in fetch_rows}
    candidates = [t for t in dict.fromkeys(fetches["transport"]) if t not in set(today.values())]
    scenarios = [("today", {h: today[h] for h in HANDOFFS if today[h]})]
    for t in candidates:
        use = {h: (t if (h, t) in secs else today[h]) for h in HANDOFFS}
        scenarios.append((t, {h: x for h, x in use.items() if x}))
        kept = [h for h in HANDOFFS if (h, t) not in secs and today[h]]
        if kept:
            notes.append(f"{t} was not measured at {', '.join(kept)}: its pipeline keeps today's transport there")
    pipe = []
    for name, use in scenarios:
        fetch_s = sum(secs[(h, x)] for h, x in use.items())
        pipe.append({"scenario": name, "transports": ", ".join(f"{h}: {x}" for h, x in use.items()),
                     "tasks_s": tasks_s, "fetch_s": fetch_s, "total_s": tasks_s + fetch_s,
                     "fetch_share": fetch_s / (tasks_s + fetch_s) if tasks_s + fetch_s else float("nan")})
    pipeline = pd.DataFrame(pipe)
    today_total = pipeline["total_s"].iloc[0]
    pipeline["saved_s"] = today_total - pipeline["total_s"]
    pipeline["change"] = pipeline["total_s"] / today_total - 1 if today_total else float("nan")
    pipeline["sectors_per_day"] = [DAY_S / s if s else float("nan") for s in pipeline["total_s"]]

    sizes = sorted(set(map(str, tr["sector"]))) if "sector" in tr.columns else []
    return WhatIf(sector=sector, environment=environment, hardware=hardware, tasks=tasks, fetches=fetches,
                  pipeline=pipeline, notes=notes, measured_with=", ".join(sizes))


# ---- printing ----

def human_bytes(n: int) -> str:
    """448.0 GiB, 73.1 MiB, 77,400 kB, 2,000 B: sizes as the what-if and the report print them."""
    if n >= 10 * GiB:
        return f"{n / GiB:,.1f} GiB"
    if n >= 10 * MiB:
        return f"{n / MiB:,.1f} MiB"
    return f"{n / 1e3:,.0f} kB" if n >= 1e4 else f"{n:,} B"


def render(w: WhatIf, markdown: bool = False) -> str:
    from ..results.compare import md_table, text_table

    table = md_table if markdown else text_table
    head = (lambda s: f"### {s}\n") if markdown else (lambda s: f"{s}:")
    out = []
    if w.illustrative:
        banner = w.notes[0]
        out += [f"> **{banner}**\n" if markdown else "!" * 78 + "\n! " + banner + "\n" + "!" * 78, ""]
    out.append(f"What-if for one {format_size(w.sector)} sector (throughputs measured with {w.measured_with or '?'} "
               f"sectors on: {w.environment})")
    out.append("")
    out.append(head("Fetch time per hand-off"))
    body = [[r["handoff"], r["transport"] + (" (today)" if r["today"] else ""), human_bytes(r["bytes"]),
             f"{r['throughput_MiBps']:,.1f}", format_seconds(r["seconds"]),
             "-" if r["today"] or r["vs_today"] != r["vs_today"] else f"{r['vs_today']:.2f}x faster"
             if r["vs_today"] >= 1 else f"{1 / r['vs_today']:.2f}x slower"]
            for r in w.fetches.to_dict("records")]
    out.append(table(["hand-off", "transport", "bytes", "MiB/s (mean)", "fetch time", "vs today"], body))
    out.append("")
    out.append(head("Mean task durations from the logs"))
    out.append(table(["task", "jobs", "mean"], [[r["task"], str(r["count"]), format_seconds(r["mean_s"])]
                                                for r in w.tasks.to_dict("records")]))
    out.append("")
    out.append(head("A sector's time in the pipeline (tasks + fetches)"))
    body = [[r["scenario"], format_seconds(r["tasks_s"]), format_seconds(r["fetch_s"]), format_seconds(r["total_s"]),
             f"{r['fetch_share']:.1%}", f"{r['sectors_per_day']:.2f}", "-" if r["scenario"] == "today" else
             f"{format_seconds(r['saved_s'])} saved ({r['change']:+.1%})" if r["saved_s"] >= 0 else
             f"{format_seconds(-r['saved_s'])} more ({r['change']:+.1%})", r["transports"]]
            for r in w.pipeline.to_dict("records")]
    out.append(table(["scenario", "tasks", "fetches", "total", "fetch share", "sectors a day", "vs today",
                      "transport per hand-off"], body))
    out.append("")
    out.append(SECTORS_A_DAY)
    rest = w.notes[1:] if w.illustrative else w.notes
    if rest:
        out.append("")
        out += [f"- {n}" for n in rest] if markdown else [f"note: {n}" for n in rest]
    return "\n".join(out) + "\n"
