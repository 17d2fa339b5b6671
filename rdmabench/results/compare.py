"""Compare result files: like with like, each later file against the first, with significance.

pyperf's compare_to is the model: per pair the two means with their spread over repetitions, the ratio, and
a two-tailed t-test at 95% over the repetitions. We use Welch's form (no equal-variance assumption: two
hosts or two transports rarely share a variance). A spread over 10% of the mean is flagged, as `pyperf check`
does, and so are runs whose context differs (device, MTU, link layer, hardware vs emulation, kernel), since
such a ratio measures the setup as much as the code.

compare() returns data; render_text() and render_markdown() print it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
from scipy import stats

from .frames import ASIDE, Tables
from .row import LATENCY_FIGURES

ALPHA = 0.05
SPREAD_LIMIT = 0.10
# context fields whose difference makes a comparison suspect: (column in Tables.runs, how to name it)
CONTEXT_CHECKS = [("hardware", "hardware"), ("environment", "environment"), ("device", "device"),
                  ("active_mtu", "active MTU"), ("link_layer", "link layer"), ("kernel", "kernel")]
# details that should match for a pair to be like with like, where the rows have them (verbs runs' settings)
LIKE_WITH_LIKE = ("qps", "bidir", "engine", "connect", "iterations")


@dataclass
class Welch:
    t: float
    df: float
    p: float


def welch(a: list[float], b: list[float]) -> Welch | None:
    """Welch's two-sample two-tailed t-test; None with fewer than two values on either side."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return None
    ma, mb = sum(a) / na, sum(b) / nb
    va = sum((x - ma) ** 2 for x in a) / (na - 1)
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1)
    se2 = va / na + vb / nb
    if se2 == 0:  # both perfectly steady: any difference is certain, none is none
        return Welch(math.inf if ma != mb else 0.0, float(na + nb - 2), 0.0 if ma != mb else 1.0)
    t = (mb - ma) / math.sqrt(se2)
    df = se2 ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    p = float(2 * stats.t.sf(abs(t), df))
    return Welch(t, df, p)


def significance(test: Welch | None) -> str:
    if test is None:
        return "n/a: one run"
    return "significant" if test.p < ALPHA else "not significant"


@dataclass
class Comparison:
    baseline: str                     # run label of the first file
    others: list[str]                 # the later ones, each compared against the baseline
    table: pd.DataFrame               # one row per (other run, item): see COLUMNS
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


COLUMNS = ["run", "kind", "item", "metric", "unit", "higher_is_better", "a_mean", "a_sd", "a_n",
           "b_mean", "b_sd", "b_n", "ratio", "p_value", "significance"]


def _series(t: Tables, latency_metric: str) -> pd.DataFrame:
    """One row per (run, item, repetition) with the value the item is judged by: the row's own, or for a
    latency figure the one --latency asks for (kept in the row's detail)."""
    df = t.rows
    cols = ["run", "key", "item", "metric", "unit", "higher_is_better", "value", "order", *LIKE_WITH_LIKE]
    if df.empty:
        return pd.DataFrame(columns=cols)
    df = df.copy()
    swap = df["metric"].isin(LATENCY_FIGURES) & (df["metric"] != latency_metric)
    if swap.any():
        col = f"detail.{latency_metric}"
        df.loc[swap, "value"] = df.loc[swap, col] if col in df.columns else float("nan")
        df.loc[swap, "metric"] = latency_metric
    for opt in LIKE_WITH_LIKE:
        df[opt] = df[f"detail.{opt}"] if f"detail.{opt}" in df.columns else None
    df = df[df["value"].notna()]
    df["value"] = df["value"].astype(float)
    return df[cols]


def _value(x):
    """A context value with pandas' missing markers as None, so that two missing ones are equal."""
    return None if x is None or (isinstance(x, float) and x != x) else x


def _fmt(x: float) -> str:
    if x is None or x != x:
        return "-"
    return f"{x:,.{_decimals(x)}f}"


def compare(t: Tables, latency_metric: str = "lat_p50_us") -> Comparison:
    """Pair every later run's items with the first run's: rows that measured the same thing (test and size;
    hand-off, transport and sector; ...)."""
    labels = list(t.runs["run"])
    if len(labels) < 2:
        raise ValueError("compare needs at least two result files")
    base, others = labels[0], labels[1:]
    out = Comparison(base, others, pd.DataFrame(columns=COLUMNS))
    runs = t.runs.set_index("run")
    kind_of = runs["kind"].to_dict()
    s = _series(t, latency_metric)
    for kind, why in ASIDE.items():
        if kind in kind_of.values():
            out.notes.append(f"{kind} results are not compared here: {why}")

    # spread over 10% of the mean, in any file
    if not s.empty:
        for (run, item), g in s.groupby(["run", "item"], sort=False):
            if len(g) >= 2 and g["value"].mean():
                rel = g["value"].std(ddof=1) / abs(g["value"].mean())
                if rel > SPREAD_LIMIT:
                    out.warnings.append(f"{run}: {item}: spread {rel:.0%} of the mean over {len(g)} repetitions "
                                        f"(over {SPREAD_LIMIT:.0%}): unsteady, rerun with more repetitions or a quieter host")

    rows = []
    for other in others:
        diffs = []
        for col, name in CONTEXT_CHECKS:
            a, b = _value(runs.at[base, col]), _value(runs.at[other, col])
            if a == b or (col == "environment" and any(d.startswith("hardware vs") for d in diffs)):
                continue
            if col == "hardware":
                diffs.append(f"hardware vs soft-RoCE/emulation: {base} on {runs.at[base, 'environment']!r}, "
                             f"{other} on {runs.at[other, 'environment']!r}")
            else:
                diffs.append(f"{name} {a} vs {b}")
        if diffs:
            out.warnings.append(f"{other} ran in a different context from {base}: " + "; ".join(diffs)
                                + ": the ratio measures the setup as well")
        if kind_of[other] != kind_of[base]:
            out.notes.append(f"{other} is a {kind_of[other]} result and {base} a {kind_of[base]} one: nothing to pair")
            continue
        if s.empty:
            continue
        a_all, b_all = s[s.run == base], s[s.run == other]
        a_groups = {k: g for k, g in a_all.groupby("key", sort=False)}
        b_groups = {k: g for k, g in b_all.groupby("key", sort=False)}
        only_a = [a_groups[k]["item"].iloc[0] for k in a_groups if k not in b_groups]
        only_b = [b_groups[k]["item"].iloc[0] for k in b_groups if k not in a_groups]
        if only_a:
            out.notes.append(f"only in {base} (no pair in {other}): " + ", ".join(only_a))
        if only_b:
            out.notes.append(f"only in {other} (no pair in {base}): " + ", ".join(only_b))
        option_diffs: dict[tuple[str, str, str], list[str]] = {}
        for key in sorted((k for k in a_groups if k in b_groups), key=lambda k: a_groups[k]["order"].iloc[0]):
            ga, gb = a_groups[key], b_groups[key]
            item, metric = ga["item"].iloc[0], ga["metric"].iloc[0]
            for opt in LIKE_WITH_LIKE:
                if ga[opt].isna().all() and gb[opt].isna().all():
                    continue
                va, vb = "/".join(sorted(set(map(str, ga[opt])))), "/".join(sorted(set(map(str, gb[opt]))))
                if va != vb:
                    option_diffs.setdefault((opt, va, vb), []).append(item)
            a, b = list(ga["value"]), list(gb["value"])
            test = welch(a, b)
            ma, mb = sum(a) / len(a), sum(b) / len(b)
            rows.append({
                "run": other, "kind": kind_of[base], "item": item, "metric": metric,
                "unit": ga["unit"].iloc[0], "higher_is_better": bool(ga["higher_is_better"].iloc[0]),
                "a_mean": ma, "a_sd": ga["value"].std(ddof=1) if len(a) > 1 else float("nan"), "a_n": len(a),
                "b_mean": mb, "b_sd": gb["value"].std(ddof=1) if len(b) > 1 else float("nan"), "b_n": len(b),
                "ratio": mb / ma if ma else float("nan"), "p_value": test.p if test else float("nan"),
                "significance": significance(test),
            })
        for (opt, va, vb), items in option_diffs.items():
            out.warnings.append(f"{opt} differs between {base} ({va}) and {other} ({vb}) for "
                                f"{', '.join(items)}: not quite like with like")
    if rows:
        out.table = pd.DataFrame(rows, columns=COLUMNS)
    return out


# ---- printing ----

def _decimals(x: float) -> int:
    return 0 if not x or x != x else max(0, min(4, 3 - int(math.floor(math.log10(abs(x))))))


def _mean_sd(mean: float, sd: float, n: int) -> str:
    """The mean to four significant figures, the spread to as many decimals: 951.0 ± 1.0, 2.000 ± 0.100."""
    if n < 2:
        return f"{_fmt(mean)} (1 run)"
    d = _decimals(mean)
    return f"{mean:,.{d}f} ± {sd:,.{d}f}"


def _change(row) -> str:
    r = row["ratio"]
    if r != r:
        return "-"
    better = (r > 1) == bool(row["higher_is_better"])
    word = "" if r == 1 else (" better" if better else " worse")
    return f"{r:.3f}x ({(r - 1):+.1%}{word})"


def _sig(row) -> str:
    if row["significance"] == "n/a: one run":
        return row["significance"]
    return f"{row['significance']} (p={row['p_value']:.3g})"


def _sections(c: Comparison):
    for other in c.others:
        t = c.table[c.table.run == other] if not c.table.empty else c.table
        header = ["item", "metric", f"A: {c.baseline}", f"B: {other}", "B/A", "significance (Welch, 95%)"]
        body = [[r["item"], f"{r['metric']} ({r['unit']}, {'higher' if r['higher_is_better'] else 'lower'} is better)",
                 _mean_sd(r["a_mean"], r["a_sd"], r["a_n"]), _mean_sd(r["b_mean"], r["b_sd"], r["b_n"]),
                 _change(r), _sig(r)] for r in t.to_dict("records")]
        yield other, header, body


def text_table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in body])


def md_table(header: list[str], body: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(map(esc, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(map(esc, r)) + " |" for r in body]
    return "\n".join(out)


# how each output format spells the same parts: section heading, table, empty section, the two lists
_TEXT = dict(section="{other} against {baseline}:", table=text_table, empty="  (nothing to pair)",
             warnings="warnings:", warning="  ! {}", notes="notes:", note="  - {}", list_gap=False)
_MARKDOWN = dict(section="### {other} against {baseline}\n", table=md_table, empty="_nothing to pair_",
                 warnings="**Warnings**\n", warning="- ⚠ {}", notes="**Notes**\n", note="- {}", list_gap=True)


def _render(c: Comparison, style: dict) -> str:
    parts = []
    for other, header, body in _sections(c):
        parts.append(style["section"].format(other=other, baseline=c.baseline))
        parts.append(style["table"](header, body) if body else style["empty"])
        parts.append("")
    for items, head, item in ((c.warnings, "warnings", "warning"), (c.notes, "notes", "note")):
        if items:
            parts.append(style[head])
            parts += [style[item].format(x) for x in items]
            if style["list_gap"]:
                parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def render_text(c: Comparison) -> str:
    return _render(c, _TEXT)


def render_markdown(c: Comparison) -> str:
    return _render(c, _MARKDOWN)
