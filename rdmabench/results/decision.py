"""The decision table: per hand-off (pc1-pc2, finalize, c1-c2) at a real sector size, how long one sector's
hand-off takes over each measured transport, its throughput, its speedup against Lotus's HTTP fetch and its
CPU cost at both ends. The report leads with it.

Which size is "real": a row's shape names its sector size ("32GiB" for "32GiB@1/16384", a 32 GiB sector with
every file 1/16384 of its size; "8MiB" for 8 MiB sectors moved whole). There is one table per hand-off per real
size present, the biggest size first: a sealing cluster seals one size, and the biggest is the one that matters.

Measured or projected: a row that moved fewer bytes per hop than a real sector's hand-off (a scaled shape) is
a projection to the real size by MODEL, and every cell it feeds is marked. Where a series has rows of the real
size and scaled ones, only the real-size rows count; among scaled rows only the largest scale (the least
extrapolation). The C1 output is never scaled: a c1-c2 row of a scaled shape moved a real one.

The baseline, per hand-off and real size: a live fetch (a row whose measured variant starts with "live": a
fetch from the user's own Lotus or Curio worker) where any file carries one; otherwise rdmabench's own
Lotus-faithful fetch ("http" rows whose records say protocol "lotus") of the same run. http rows made with
rdmabench's parallel extension (protocol "rdmabench-parallel") are a series of their own, never the baseline.
Runs not measured on hardware are named on every table they feed ("lab figure, not hardware").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import pandas as pd

from ..jobs import whatif
from ..jobs.durations import format_seconds
from ..units import format_size, parse_size
from .frames import Tables, column, series
from .page import Section, Table

MiB = 1 << 20
LIVE = "live"  # a measured variant starting with this is a live fetch from the user's own Lotus/Curio worker
MARK = "†"     # on every cell that is a projection
SHORT = 0.99   # a row that moved under 99% of a real hop's bytes was measured at a scaled shape
WHAT_MOVES = {"pc1-pc2": "the sealed file and the cache after PC1",
              "finalize": "the sealed file and the finalized cache",
              "c1-c2": f"the C1 output, sent {whatif.C1_HOPS} times: worker to miner, miner to C2 worker"}
LEAD = ("One table per hand-off and real sector size, the biggest size first: how long one sector's hand-off "
        "takes over each transport, its speedup against Lotus's HTTP fetch, and the CPU it costs at both ends. "
        f"{MARK} marks a projection from a scaled run; how it is made is said below the tables.")
MODEL = (
    "Time for one sector = the bytes Lotus moves at that hand-off for one sector of that size (pc1-pc2: the "
    "sealed file and the cache after PC1; finalize: the sealed file and the finalized cache; c1-c2: the C1 "
    f"output {whatif.C1_HOPS} times, once per hop, each hop at the measured throughput) / the mean measured "
    "throughput over the repetitions. "
    f"{MARK} marks a projection: a figure measured at a scaled shape (32GiB@1/16384: every file 1/16384 of its "
    "real size, same names and count) applied to the real size, assuming throughput and CPU-seconds per GB do not "
    "depend on size. That ignores fixed costs per file and per connection, which a small scaled file pays over "
    "fewer bytes (the projection errs slow), and the page cache, which holds a scaled file but perhaps not a "
    "real 32 GiB layer (the projection errs fast). Where a real-size measurement exists it is used instead. "
    "CPU-s/GB: CPU-seconds of rdmabench's own processes per GB moved, at the worker (the end that fetches) and "
    "at the storage host, mean over repetitions.")


@dataclass
class Line:
    """One transport (or [nfs] variant, or live fetch) of one run in one table."""
    run: str
    series: str
    projected: bool
    shapes: str                  # the shapes its figures come from: "32GiB@1/16384"
    repetitions: int
    mibps: float                 # mean measured throughput
    seconds: float               # one real sector's hand-off: real bytes / mibps
    worker_cpu: float | None     # process CPU-s per GB at the worker (the client end)
    storage_cpu: float | None    # at the storage host (the server end)
    live: bool = False
    lotus: bool = False          # rdmabench's Lotus-faithful http fetch
    baseline: bool = False
    speedup: float | None = None  # the baseline's time / this time
    speedup_projected: bool = False


@dataclass
class Decision:
    """The table of one hand-off at one real sector size."""
    handoff: str
    sector: int
    bytes: int                   # what one sector's hand-off moves (payload, every hop)
    lines: list[Line]
    baseline: str = ""           # what the speedups are against, in words ("" when there is nothing)
    lab: list[tuple[str, str]] = field(default_factory=list)  # (run, environment) of runs not on hardware
    notes: list[str] = field(default_factory=list)


def _real_size(sector_size, label: str) -> int | None:
    if isinstance(sector_size, (int, float)) and sector_size == sector_size:
        return int(sector_size)
    try:
        return parse_size(label.split("@", 1)[0])
    except ValueError:
        return None


def _scale(scale, label: str) -> Fraction:
    text = str(scale) if scale is not None and scale == scale else label.split("@", 1)[1] if "@" in label else "1"
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return Fraction(1)


def _protocol(items) -> str | None:
    for record in items if isinstance(items, list) else ():
        protocol = ((record or {}).get("extra") or {}).get("protocol")
        if protocol:
            return protocol
    return None


def _one(v) -> bool:
    return v is None or v != v or v == 1


def series_names(df: pd.DataFrame) -> list[str]:
    """frames.series, except that an http row made with rdmabench's parallel extension is named for it:
    "http (rdmabench parallel=4 streams=1)". Rows whose records predate the protocol field count as Lotus's
    fetch when they ran with one file and one stream at a time (all the http transport did then)."""
    out = []
    for name, transport, variant, items, par, streams in zip(
            series(df), column(df, "transport"), column(df, "variant"), column(df, "detail.items"),
            column(df, "detail.parallel"), column(df, "detail.streams")):
        protocol = _protocol(items)
        lotus = protocol == "lotus" if protocol else _one(par) and _one(streams)
        if transport == "http" and not _is_live(variant) and not lotus:
            name = f"{name} (rdmabench parallel={int(par) if not _one(par) else 1} " \
                   f"streams={int(streams) if not _one(streams) else 1})"
        out.append(name)
    return out


def _is_live(variant) -> bool:
    return isinstance(variant, str) and variant.startswith(LIVE)


def _per_hop(handoff: str, sector: int) -> int:
    moved = whatif.payload_bytes(sector)[handoff]
    return moved // whatif.C1_HOPS if handoff == "c1-c2" else moved


def transfer_rows(t: Tables) -> tuple[pd.DataFrame, list[str]]:
    """The throughput rows of Lotus's hand-offs, one line each: run, handoff, series, shape, real (sector size),
    scale, projected, mibps, worker_cpu, storage_cpu, live, lotus. And notes on rows left out."""
    df = t.rows
    cols = ["run", "handoff", "series", "shape", "real", "scale", "projected", "mibps", "worker_cpu",
            "storage_cpu", "live", "lotus"]
    if df.empty or "handoff" not in df.columns:
        return pd.DataFrame(columns=cols), []
    df = df[column(df, "handoff").isin(whatif.HANDOFFS) & (df["metric"] == "throughput_MiBps")]
    shapes = column(df, "sector").astype(str)
    real = [_real_size(s, label) for s, label in zip(column(df, "detail.sector_size"), shapes)]
    known = [r in whatif.CACHE_AFTER_PC1 for r in real]
    notes = [f"{n} rows of sector size {label} left out: the bytes Lotus moves are known for "
             f"{', '.join(whatif.SECTORS)} only" for label, n in
             pd.Series([lab for lab, k in zip(shapes, known) if not k], dtype=object).value_counts().items()]
    names = series_names(df)
    out = pd.DataFrame({
        "run": df["run"], "handoff": df["handoff"], "series": names, "shape": shapes, "real": real,
        "scale": [_scale(s, label) for s, label in zip(column(df, "detail.scale"), shapes)],
        "bytes": pd.to_numeric(column(df, "bytes"), errors="coerce"),
        "mibps": pd.to_numeric(df["value"], errors="coerce"),
        "worker_cpu": pd.to_numeric(column(df, "cpu.per_gb.client_process"), errors="coerce"),
        "storage_cpu": pd.to_numeric(column(df, "cpu.per_gb.server_process"), errors="coerce"),
        "live": [_is_live(v) for v in column(df, "variant")],
        "lotus": [n == "http" for n in names],
    }, index=df.index)[known]
    out["projected"] = [b < SHORT * _per_hop(h, r) if b == b else s != 1
                        for b, h, r, s in zip(out["bytes"], out["handoff"], out["real"], out["scale"])]
    return out[cols], notes


def _mean(values: pd.Series) -> float | None:
    v = values.dropna()
    return float(v.mean()) if len(v) else None


def _line(run: str, name: str, rows: pd.DataFrame, moved: int) -> Line:
    measured = rows[~rows["projected"]]
    use = measured if not measured.empty else rows[rows["scale"] == rows["scale"].max()]
    mibps = float(use["mibps"].mean())
    return Line(run=run, series=name, projected=measured.empty, shapes=", ".join(dict.fromkeys(use["shape"])),
                repetitions=len(use), mibps=mibps, seconds=moved / (mibps * MiB) if mibps > 0 else float("nan"),
                worker_cpu=_mean(use["worker_cpu"]), storage_cpu=_mean(use["storage_cpu"]),
                live=bool(use["live"].all()), lotus=bool(use["lotus"].all()))


def _compare(d: Decision, runs: list[str]) -> None:
    """Choose the baseline and set every line's speedup against it."""
    live = [x for x in d.lines if x.live]
    if live:
        base = {run: live[0] for run in runs}
        d.baseline = (f"a live fetch from your own Lotus/Curio worker ({live[0].series}, in {live[0].run}), "
                      "not rdmabench's reproduction of it")
        if len(live) > 1:
            d.notes.append(f"{len(live)} live fetches here; the first ({live[0].series}, {live[0].run}) is the baseline")
    else:
        base = {x.run: x for x in d.lines if x.lotus}
        if base:
            d.baseline = "Lotus's HTTP fetch as rdmabench reproduces it (http, protocol \"lotus\") in the same run"
        d.notes += [f"{run}: no Lotus HTTP fetch measured here: no speedup for its transports" for run in
                    dict.fromkeys(x.run for x in d.lines) if run not in base]
    for x in d.lines:
        b = base.get(x.run)
        if b is None:
            continue
        x.baseline = x is b
        x.speedup = b.seconds / x.seconds if x.seconds else None
        x.speedup_projected = x.projected or b.projected


def decide(t: Tables) -> tuple[list[Decision], list[str]]:
    """One Decision per (hand-off, real sector size) present, biggest size first, hand-offs in Lotus's order;
    and notes on rows that could not be used."""
    rows, notes = transfer_rows(t)
    runs = list(t.runs["run"]) if not t.runs.empty else []
    rec = t.runs.set_index("run") if runs else None
    out = []
    for sector in sorted(set(rows["real"]), reverse=True):
        for h in whatif.HANDOFFS:
            g = rows[(rows["real"] == sector) & (rows["handoff"] == h)]
            if g.empty:
                continue
            moved = whatif.payload_bytes(sector)[h]
            lines = [_line(run, name, s, moved) for (run, name), s in g.groupby(["run", "series"], sort=False)]
            d = Decision(h, sector, moved, lines)
            _compare(d, runs)
            order = {run: i for i, run in enumerate(runs)}
            d.lines.sort(key=lambda x: (not (x.baseline and x.live), order.get(x.run, len(order)), not x.baseline,
                                        x.seconds if x.seconds == x.seconds else float("inf")))
            d.lab = [(run, str(rec.at[run, "environment"])) for run in dict.fromkeys(x.run for x in d.lines)
                     if rec is not None and run in rec.index and not bool(rec.at[run, "hardware"])]
            out.append(d)
    return out, notes


def baselines(decisions: list[Decision], sector: int) -> dict[str, str]:
    """Per hand-off at ``sector``, the series that is today's (for the what-if): the baseline's."""
    return {d.handoff: x.series for d in decisions if d.sector == sector for x in d.lines if x.baseline}


# ---- the report's section ----

def _marked(text: str, projected: bool) -> str:
    return f"{text} {MARK}" if projected else text


def _cpu(v: float | None, projected: bool) -> str:
    return "-" if v is None else _marked(f"{v:,.2f}", projected)


def _speedup(x: Line) -> str:
    if x.baseline:
        return "baseline"
    if x.speedup is None or x.speedup != x.speedup:
        return "-"
    text = f"{x.speedup:.2f}x faster" if x.speedup >= 1 else f"{1 / x.speedup:.2f}x slower"
    return _marked(text, x.speedup_projected)


def table(d: Decision) -> Table:
    several = len({x.run for x in d.lines}) > 1
    header = (["run"] if several else []) + ["transport", "basis", "time for one sector", "MiB/s",
                                             "vs Lotus's fetch", "worker CPU-s/GB", "storage CPU-s/GB"]
    body = []
    for x in d.lines:
        basis = (f"projected from {x.shapes}" if x.projected else f"measured at {x.shapes}") + \
                f" ({x.repetitions} rep{'s' if x.repetitions != 1 else ''})"
        body.append(([x.run] if several else []) + [
            x.series + (" (baseline)" if x.baseline else ""), basis, _marked(format_seconds(x.seconds), x.projected),
            _marked(f"{x.mibps:,.1f}", x.projected), _speedup(x), _cpu(x.worker_cpu, x.projected),
            _cpu(x.storage_cpu, x.projected)])
    caption = [f"vs Lotus's fetch: against {d.baseline}; its time / this time (2.00x faster: half the time)."
               if d.baseline else "No baseline: Lotus's HTTP fetch was not measured at this hand-off and size."]
    if any(x.projected for x in d.lines):
        caption.append(f"{MARK} projected to the real size from a scaled run (the model is said below the tables).")
    caption += [n + "." for n in d.notes]
    warn = ("Lab figure, not hardware: " + "; ".join(f"{run}: {env}" for run, env in d.lab)) if d.lab else ""
    return Table(header, body, " ".join(caption), warn=warn, mark=MARK, kind="decision",
                 title=f"{d.handoff}, {format_size(d.sector)} sector: {whatif.human_bytes(d.bytes)} per sector "
                       f"({WHAT_MOVES[d.handoff]})")


def section(t: Tables) -> tuple[Section, list[Decision]]:
    decisions, notes = decide(t)
    s = Section("decision", "The decision: each hand-off at the real sector size",
                absent="No transfer rows in these files: nothing to decide per hand-off. "
                       "Transfers come from `rdmabench run --config`.")
    if decisions:
        s.intro = [LEAD]
        s.tables = [table(d) for d in decisions]
        s.outro = [MODEL] + [n + "." for n in notes]
    return s, decisions
