"""The report's plots, drawn from the loader's tables to PNG bytes (matplotlib, Agg backend, no display).

Each function returns a list of Plot (empty when the tables hold nothing for it); drawing never prints.
Every Plot carries a Table of the numbers it draws, made from the same aggregated frame as its bars and lines.
Figures are 10 inches wide at 100 dpi: 1000 pixels, the report's page width, so nothing is scaled down.
Figures are matplotlib.figure.Figure objects, not pyplot's global state, so nothing leaks between plots.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter  # noqa: E402

from ..config import HANDOFFS  # noqa: E402
from ..engines.tests import TESTS  # noqa: E402
from ..units import format_size  # noqa: E402
from .frames import Tables, column, series, series_order  # noqa: E402
from .page import Table  # noqa: E402

TODAY = ("http",)  # the transport Lotus uses today (its HTTP fetch; JSON-RPC for the C1 output)
CPU_KEYS = [("cpu.per_gb.client_system", "client, system-wide"), ("cpu.per_gb.client_process", "client, process"),
            ("cpu.per_gb.server_system", "server, system-wide"), ("cpu.per_gb.server_process", "server, process")]
MAX_CDF_SIZES = 4
MAX_BARS_LEVEL = 12  # bars in a transfer panel beyond which their labels slant
DPI = 100
WIDTH = 10.0  # inches: 1000 pixels at DPI, the report page's width


@dataclass
class Plot:
    name: str       # file name stem: bw-write_bw
    title: str
    png: bytes
    caption: str = ""
    table: Table | None = None  # the numbers drawn, for people who read tables (and for screen readers)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _us(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _short_size(n: float) -> str:
    n = int(n)
    for unit, mult in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{unit}"
    return str(n)


def _size_ticks(sizes) -> list[int]:
    """Powers of two spanning the sizes, at most a dozen, evenly spaced on the log2 axis, the largest labelled."""
    lo, hi = int(np.floor(np.log2(min(sizes)))), int(np.ceil(np.log2(max(sizes))))
    step = max(1, -(-(hi - lo) // 11))
    return [1 << e for e in range(hi, lo - 1, -step)][::-1]


def _ordered(values, order) -> list:
    present = list(dict.fromkeys(values))
    return [v for v in order if v in present] + sorted(v for v in present if v not in order)


def _num(v: float) -> str:
    return "-" if v is None or v != v else f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"


def _pct(share) -> str:
    return "-" if share is None or share != share else f"{share * 100:.1f}%"


def _mean_sd(mean: float, sd: float) -> str:
    return _num(mean) if sd != sd else f"{_num(mean)} ± {_num(sd)}"


def bandwidth_vs_size(t: Tables) -> list[Plot]:
    """Average bandwidth against message size (log2 axis), one plot per test measured by it, a line per run."""
    df = t.rows
    if df.empty:
        return []
    df = df[(df["metric"] == "bw_avg_MiBps") & column(df, "test").notna() & column(df, "size").notna()]
    out = []
    for test in _ordered(df["test"] if not df.empty else [], TESTS):
        d = df[df["test"] == test]
        fig = Figure(figsize=(WIDTH, 4.2))
        ax = fig.add_subplot()
        sizes = sorted(d["size"].unique())
        top = 0.0
        stats = {}
        for run, g in d.groupby("run", sort=False):
            s = stats[run] = g.groupby("size")["value"].agg(["mean", "std"]).sort_index()
            ax.errorbar(s.index, s["mean"], yerr=s["std"].fillna(0), marker="o", ms=4, capsize=3, label=run)
            top = max(top, float((s["mean"] + s["std"].fillna(0)).max()))
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(_size_ticks(sizes)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _short_size(v)))
        ax.xaxis.set_minor_locator(FixedLocator([]))
        ax.set_xlabel("message size (bytes, log2)")
        ax.set_ylabel("average bandwidth (MiB/s)")
        ax.set_ylim(0, top * 1.12 or 1)
        ax.set_xlim(min(sizes) / 1.5, max(sizes) * 1.5)
        ax.set_title(f"{test}: bandwidth vs message size")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        shares = {run: g.groupby("size")["detail.share_of_line_rate"].mean()
                  for run, g in d.groupby("run", sort=False)} if "detail.share_of_line_rate" in d else {}
        body = [[format_size(int(size))] + [cell for run, s in stats.items() for cell in (
            [_mean_sd(s.at[size, "mean"], s.at[size, "std"]) if size in s.index else "-"]
            + ([_pct(shares[run].get(size))] if shares else []))] for size in sizes]
        table = Table(["message size"] + [h for run in stats for h in (
            [f"{run}: MiB/s"] + ([f"{run}: % of line"] if shares else []))], body,
            "Mean ± one standard deviation over repetitions (the points and error bars above)."
            + (" % of line: the mean BW average over the path's physical limit (the port's rate, RoCE v2 goodput "
               "at the active MTU, the NIC's PCIe link: the smallest; rxe: its netdev's speed), '-' where none "
               "is known." if shares else ""), kind="numbers")
        out.append(Plot(f"bw-{test}", f"{test}: bandwidth vs message size", _png(fig),
                        "Mean over repetitions; error bars are one standard deviation.", table))
    return out


PERCENTILES = (("p50", 50), ("p99", 99), ("p99.9", 99.9))


def latency_cdf(t: Tables) -> list[Plot]:
    """The distribution of raw latency samples as a CDF, one plot per latency test, a line per run and size."""
    s = t.samples
    if s.empty:
        return []
    out = []
    for test in _ordered(s["test"], TESTS):
        d = s[s.test == test]
        sizes = sorted(d["size"].unique())
        note = ""
        if len(sizes) > MAX_CDF_SIZES:
            keep = sorted({sizes[round(i * (len(sizes) - 1) / (MAX_CDF_SIZES - 1))] for i in range(MAX_CDF_SIZES)})
            note = f" Sizes shown: {', '.join(_short_size(x) for x in keep)} of {len(sizes)} measured."
            sizes = keep
        fig = Figure(figsize=(WIDTH, 4.2))
        ax = fig.add_subplot()
        lo, hi = np.inf, 0.0
        body = []
        for (run, size), g in d[d["size"].isin(sizes)].groupby(["run", "size"], sort=False):
            v = np.sort(g["latency_us"].to_numpy(dtype=float))
            if not len(v):
                continue
            lo, hi = min(lo, v[0]), max(hi, v[-1])
            ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post",
                    label=f"{run}, {format_size(int(size))} (p50 {_us(float(np.median(v)))} µs)")
            body.append([run, format_size(int(size)), f"{len(v):,}", _us(float(v[0]))]
                        + [_us(float(np.percentile(v, q))) for _, q in PERCENTILES] + [_us(float(v[-1]))])
        if lo > 0 and hi / lo > 20:
            ax.set_xscale("log")
        ax.set_xlabel("latency (µs)")
        ax.set_ylabel("fraction of samples ≤ x")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{test}: latency distribution (CDF of raw samples)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
        table = Table(["run", "message size", "samples", "min µs"] + [f"{n} µs" for n, _ in PERCENTILES] + ["max µs"],
                      body, "Over the samples drawn above (every repetition's, untrimmed).", kind="numbers")
        out.append(Plot(f"lat-{test}", f"{test}: latency CDF", _png(fig),
                        "Every raw sample of every repetition, untrimmed." + note, table))
    return out


def _shapes(d) -> list[str]:
    """The sector shapes of these rows, the biggest real sector first ("32GiB@1/16384" before "8MiB")."""
    size = column(d, "detail.sector_size")
    pairs = dict.fromkeys(zip(d["sector"].astype(str), size.where(size.notna(), 0)))
    return [label for label, _ in sorted(pairs, key=lambda p: (-float(p[1]), p[0]))]


def transfer_times(t: Tables) -> list[Plot]:
    """One chart per hand-off: mean transfer time per transport, a panel per sector shape (stacked, full width),
    with the throughput on each bar; and its table."""
    df = t.rows
    if df.empty:
        return []
    df = df[column(df, "handoff").notna() & column(df, "transport").notna() & df["seconds"].notna()]
    if df.empty:
        return []
    runs = list(dict.fromkeys(df["run"]))
    out = []
    for handoff in _ordered(df["handoff"], HANDOFFS):
        d = df[df.handoff == handoff]
        d = d.assign(series=series(d))  # an [nfs] variant is a bar of its own
        shapes = _shapes(d)
        nbars = max(len(runs) * d[d.sector.astype(str) == s]["series"].nunique() for s in shapes)
        slant = nbars > MAX_BARS_LEVEL
        fig = Figure(figsize=(max(WIDTH, 0.32 * nbars + 1.5), 0.6 + (4.6 if slant else 3.4) * len(shapes)),
                     layout="constrained")
        axes = fig.subplots(len(shapes), 1, squeeze=False)[:, 0]
        body = []
        for ax, shape in zip(axes, shapes):
            ds = d[d.sector.astype(str) == shape]
            transports = series_order(ds)
            width = 0.8 / len(runs)
            x = np.arange(len(transports))
            for i, run in enumerate(runs):
                g = ds[ds.run == run].groupby("series").agg(mean=("seconds", "mean"), std=("seconds", "std"),
                                                            mibps=("value", "mean"), reps=("seconds", "size"))
                g = g.reindex(transports)
                bars = ax.bar(x + (i - (len(runs) - 1) / 2) * width, g["mean"], width, yerr=g["std"].fillna(0),
                              capsize=3, label=run if len(runs) > 1 else None, color=None if len(runs) > 1 else
                              [("#c0504d" if tp in TODAY else "#4f81bd") for tp in transports])
                for bar, mibps, sd in zip(bars, g["mibps"], g["std"].fillna(0)):
                    if mibps == mibps:
                        ax.annotate(f"{_num(mibps)} MiB/s", (bar.get_x() + bar.get_width() / 2, bar.get_height() + sd),
                                    ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
                body += [([run] if len(runs) > 1 else []) + [shape, tp, str(int(r["reps"])), _num(r["mean"]),
                                                             _num(r["std"]), _num(r["mibps"])]
                         for tp, r in g.iterrows() if r["reps"] == r["reps"]]
            ax.set_xticks(x, transports, **({"rotation": 60, "ha": "right"} if slant else {}))
            ax.set_title(f"{shape} sector" + (" (scaled: every file a fraction of its real size)" if "@" in shape
                                              else ""))
            ax.set_ylabel("transfer time (s)")
            ax.margins(y=0.15)
            ax.grid(True, axis="y", alpha=0.3)
            if len(runs) > 1:
                ax.legend(fontsize="small")
        fig.suptitle(f"{handoff}: transfer time per transport (mean; bars: one standard deviation)")
        caption = "Red: the transport Lotus uses today (HTTP fetch, JSON-RPC for the C1 output)." if len(runs) == 1 else ""
        table = Table((["run"] if len(runs) > 1 else []) + ["sector", "transport", "reps", "mean s", "sd s",
                                                            "MiB/s (mean)"], body,
                      "As measured, at the shape named (not projected to the real size: the decision table does that).",
                      kind="numbers")
        out.append(Plot(f"transfer-{handoff}", f"{handoff}: transfer time per transport", _png(fig), caption, table))
    return out


def cpu_per_gb(t: Tables) -> list[Plot]:
    """CPU-seconds per GB moved, per transport, at both ends (system-wide as qperf counts, and per process)."""
    df = t.rows
    df = df[column(df, "transport").notna()] if not df.empty else df
    cols = [c for c, _ in CPU_KEYS if c in df.columns and df[c].notna().any()]
    if df.empty or not cols:
        return []
    runs = list(dict.fromkeys(df["run"]))
    named = max(len(series_order(df[df.run == run])) for run in runs)  # [nfs] variants: a group of bars each
    variants = column(df, "variant").notna().any()
    fig = Figure(figsize=(max(WIDTH, 0.6 * named + 1.5), (6.5 if variants else 4.2) * len(runs)),
                 layout="constrained" if variants else None)
    axes = fig.subplots(len(runs), 1, squeeze=False)[:, 0]
    labels = [lab for c, lab in CPU_KEYS if c in cols]
    body = []
    for ax, run in zip(axes, runs):
        d = df[df.run == run]
        transports = series_order(d)
        g = d.assign(series=series(d)).groupby("series")[cols].mean().reindex(transports)
        body += [([run] if len(runs) > 1 else []) + [tp] + [_num(v) for v in r] for tp, r in g.iterrows()]
        x = np.arange(len(transports))
        width = 0.8 / len(cols)
        for i, (col, label) in enumerate(zip(cols, labels)):
            ax.bar(x + (i - (len(cols) - 1) / 2) * width, g[col], width, label=label,
                   hatch="//" if "process" in col else None, color="#4f81bd" if "client" in col else "#9bbb59",
                   edgecolor="white")
        ax.set_xticks(x, transports, **({"rotation": 60, "ha": "right"} if variants else {}))
        ax.set_ylabel("CPU-seconds per GB")
        ax.set_title(f"{run}: CPU cost per GB moved (mean over hand-offs and repetitions)")
        ax.grid(True, axis="y", alpha=0.3)
        if variants:  # long rotated labels below: the legend goes above the bars
            ax.legend(fontsize="small", ncols=len(cols), loc="lower center", bbox_to_anchor=(0.5, 1.06))
        else:
            ax.legend(fontsize="small", ncols=len(cols), loc="upper center", bbox_to_anchor=(0.5, -0.08))  # clear of the bars
    table = Table((["run"] if len(runs) > 1 else []) + ["transport"] + [f"{lab} CPU-s/GB" for lab in labels], body,
                  "Mean over hand-offs and repetitions, as drawn above. The client is the worker, the server the "
                  "storage host.", kind="numbers")
    return [Plot("cpu-per-gb", "CPU-seconds per GB per transport", _png(fig),
                 "System-wide counts user+nice+system+irq+softirq+steal on the whole host (qperf's way); "
                 "process counts rdmabench's own process tree.", table)]


def all_plots(t: Tables) -> dict[str, list[Plot]]:
    return {"bandwidth": bandwidth_vs_size(t), "latency": latency_cdf(t), "transfer": transfer_times(t),
            "cpu": cpu_per_gb(t)}
