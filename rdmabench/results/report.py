"""A report from result files: DIR/report.html (self-contained, plots inline as base64 PNG) and
DIR/report.md (with the PNGs beside it).

build() turns the loader's tables into a Report (sections of plots, tables and notes, and the context of each
run); write() renders it to both files. The page leads with the decision (decision.py: per hand-off at the real
sector size, each transport's time, throughput, speedup against Lotus's HTTP fetch and CPU per GB), then, given
job logs, sectors a day today and with each transport (whatif_section.py), then the plots, each with a table
of its numbers below it. Sections say what is absent and why. A run that did not measure hardware is flagged
at the top of the page, on every decision table it feeds and in its context.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import __version__
from ..engines.tests import TESTS
from . import cluster_section, decision, efficiency, whatif_section
from .frames import ASIDE, Tables, column
from .page import Section, Table
from .plots import Plot, all_plots

CONTEXT_ROWS = [("host", "hostname"), ("peer host", "peer_hostname"), ("kernel", "kernel"), ("OS", "os"),
                ("CPU", "cpu_model"), ("device", "device"), ("driver", "driver"), ("firmware", "firmware"),
                ("link layer", "link_layer"), ("rate", "rate"), ("active MTU", "active_mtu"), ("GID type", "gid_type"),
                ("rdma-core", "rdma_core"), ("perftest", "perftest"), ("virtualization", "virtualization"),
                ("container", "container"), ("environment", "environment"),
                ("kind", "kind"), ("created", "created"), ("rows", "rows"), ("file", "path")]


@dataclass
class Report:
    runs: list[str]
    context: list[tuple[str, list[str]]]   # (field, value per run)
    not_hardware: list[tuple[str, str]]    # (run, environment) for every run that is not a hardware figure
    sections: list[Section]
    notes: list[str] = field(default_factory=list)


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return str(v)


def _tests(latency: bool) -> str:
    names = [name for name, kind in TESTS.items() if kind.latency == latency]
    return ", ".join(names[:-1]) + " or " + names[-1]


def build(t: Tables, jobs: pd.DataFrame | None = None, sector: int | None = None, logs: int = 0) -> Report:
    """``jobs``: Lotus job tracker logs (logparse.read(...).jobs; ``logs`` of them) for the what-if at ``sector``
    (default: the biggest real sector size the transfers were measured for)."""
    cluster = cluster_section.section(t)
    t = cluster_section.without_cluster_rows(t)
    runs = list(t.runs["run"])
    rec = t.runs.set_index("run")
    context = [(label, [_cell(rec.at[r, col]) for r in runs]) for label, col in CONTEXT_ROWS]
    # the container row only when some run was in one (no row of dashes for every run on a host)
    context = [(label, cells) for label, cells in context if label != "container" or set(cells) != {"-"}]
    not_hw = [(r, _cell(rec.at[r, "environment"])) for r in runs if not bool(rec.at[r, "hardware"])]
    p = all_plots(t)
    has_verbs = bool(column(t.rows, "test").notna().any())  # rows that measured a verbs test
    has_transfer = bool(column(t.rows, "handoff").notna().any())  # rows that measured a hand-off
    lead, decided = decision.section(t)
    if sector is None and decided:
        sector = max(d.sector for d in decided)
    sections = [
        lead,
        whatif_section.section(t, jobs, sector, decision.baselines(decided, sector) if sector else None, logs),
        Section("bandwidth", "Bandwidth vs message size", p["bandwidth"],
                "" if p["bandwidth"] else f"No bandwidth rows in these files (verbs {_tests(latency=False)})."
                if not has_verbs else "No bandwidth test in these verbs results."),
        Section("latency", "Latency distribution", p["latency"],
                "" if p["latency"] else f"No raw latency samples in these files (verbs {_tests(latency=True)})."),
        Section("transfer", "Transfer time per hand-off, as measured", p["transfer"],
                "" if p["transfer"] else "No transfer rows in these files: nothing to plot per hand-off. "
                "Transfers come from `rdmabench run --config`."),
        _efficiency(t, has_transfer),
        Section("cpu", "CPU-seconds per GB per transport", p["cpu"],
                "" if p["cpu"] else "No transfer rows with CPU figures in these files: no CPU-per-GB plot."
                if not has_transfer else "The transfer rows carry no CPU-per-GB figures."),
        cluster,
    ]
    notes = [f"{n} {kind} rows are not plotted: {ASIDE[kind]}."
             for kind, n in (t.aside["kind"].value_counts(sort=False).items() if not t.aside.empty else ())]
    return Report(runs, context, not_hw, sections, notes)


def _efficiency(t: Tables, has_transfer: bool) -> Section:
    body = efficiency.table(t)
    absent = ("No transfer rows in these files." if not has_transfer else
              "No rdma transfer rows with a raw figure in these files (rdma-write and rdma-read rows carry one "
              "since rdmabench measures the link's raw bandwidth in the same run; older files do not).")
    return Section("efficiency", "RDMA transfers against the link's raw bandwidth", [],
                   "" if body else absent,
                   [Table(efficiency.HEADER, body, efficiency.CAPTION, kind="numbers")] if body else [])


# ---- HTML ----

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
.sub { color: #666; margin-top: 0; }
.warn { background: #fde8e8; border: 2px solid #c0392b; color: #7b1d14; padding: 0.8em 1em; border-radius: 6px;
        font-weight: 600; }
.warn ul { margin: 0.4em 0 0 0; font-weight: normal; }
.absent { color: #666; font-style: italic; }
figure { margin: 1em 0 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.emulated { background: #fde8e8; color: #7b1d14; font-weight: 600; }
td.projected { background: #fff6dc; font-style: italic; }
.labfig { background: #fde8e8; border-left: 4px solid #c0392b; color: #7b1d14; padding: 0.3em 0.8em;
          font-weight: 600; margin: 0.3em 0; }
.tablewrap { overflow-x: auto; margin: 0.8em 0 1.4em 0; }
h3 { margin: 1.2em 0 0.3em 0; font-size: 1.05em; }
.plot { margin: 1em 0 2em 0; }
table.decision { width: 100%; } table.decision td { white-space: nowrap; }
p.model { color: #444; font-size: 0.92em; }
nav a { margin-right: 1em; }
"""


def _img(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode()
    cap = f"<figcaption>{html.escape(plot.caption)}</figcaption>" if plot.caption else ""
    return f'<figure><img alt="{html.escape(plot.title)}" src="data:image/png;base64,{data}">{cap}</figure>'



def _td(cell, mark: str) -> str:
    text = html.escape(str(cell))
    return f'<td class="projected">{text}</td>' if mark and str(cell).endswith(mark) else f"<td>{text}</td>"


def _html_table(tb: Table) -> str:
    e = html.escape
    kind = f" {tb.kind}" if tb.kind else ""
    out = [f'<div class="tablewrap{kind}">']
    if tb.title:
        out.append(f"<h3>{e(tb.title)}</h3>")
    if tb.warn:
        out.append(f'<p class="labfig">{e(tb.warn)}</p>')
    out.append(f'<table class="numbers{kind}"><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in tb.header)
               + "</tr></thead><tbody>")
    out += ["<tr>" + "".join(_td(c, tb.mark) for c in line) + "</tr>" for line in tb.body]
    out.append("</tbody></table>")
    if tb.caption:
        out.append(f'<p class="sub">{e(tb.caption)}</p>')
    out.append("</div>")
    return "\n".join(out)


def _html_section(s: Section) -> list[str]:
    e = html.escape
    out = [f'<h2 id="{s.id}">{e(s.title)}</h2>']
    if not (s.plots or s.tables):
        return out + [f'<p class="absent">{e(s.absent)}</p>']
    out += [f"<p>{e(para)}</p>" for para in s.intro]
    out += [f'<div class="plot">{_img(p)}' + (_html_table(p.table) if p.table else "") + "</div>" for p in s.plots]
    return out + [_html_table(tb) for tb in s.tables] + [f'<p class="model">{e(para)}</p>' for para in s.outro]


def render_html(r: Report) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>rdmabench report</title>", f"<style>{_CSS}</style></head><body>",
           "<h1>rdmabench report</h1>",
           f'<p class="sub">{len(r.runs)} result file{"s" if len(r.runs) != 1 else ""}: '
           f'{e(", ".join(r.runs))} &middot; rdmabench {e(__version__)}</p>']
    if r.not_hardware:
        out.append('<div class="warn" id="not-hardware">Not a hardware figure: '
                   + ("this run was" if len(r.not_hardware) == 1 else "these runs were")
                   + " measured on soft-RoCE or in a virtual machine, not on bare metal. Read absolute numbers as meaningless; "
                   "ratios within one run only.<ul>"
                   + "".join(f"<li>{e(run)}: {e(env)}</li>" for run, env in r.not_hardware) + "</ul></div>")
    out.append("<nav>" + "".join(f'<a href="#{s.id}">{e(s.title)}</a>' for s in r.sections)
               + '<a href="#context">Context</a></nav>')
    for s in r.sections:
        out += _html_section(s)
    out.append('<h2 id="context">Context</h2>')
    out.append("<table><thead><tr><th></th>" + "".join(f"<th>{e(x)}</th>" for x in r.runs) + "</tr></thead><tbody>")
    flagged = {run for run, _ in r.not_hardware}
    for label, values in r.context:
        cells = "".join(
            f'<td class="emulated">{e(v)}</td>' if label == "environment" and run in flagged else f"<td>{e(v)}</td>"
            for run, v in zip(r.runs, values))
        out.append(f"<tr><th>{e(label)}</th>{cells}</tr>")
    out.append("</tbody></table>")
    if r.notes:
        out.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in r.notes) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ---- Markdown ----

def render_markdown(r: Report) -> str:
    from .compare import md_table

    out = ["# rdmabench report", "", f"{len(r.runs)} result file(s): {', '.join(r.runs)} · rdmabench {__version__}", ""]
    if r.not_hardware:
        out.append("> **⚠ Not a hardware figure**: measured on soft-RoCE or in a virtual machine, not on bare metal. Read absolute numbers as "
                   "meaningless; ratios within one run only.")
        out += [f"> - {run}: {env}" for run, env in r.not_hardware]
        out.append("")
    def table(tb: Table) -> list[str]:
        return (([f"### {tb.title}", ""] if tb.title else []) + ([f"> **⚠ {tb.warn}**", ""] if tb.warn else [])
                + [md_table(tb.header, tb.body), ""] + ([f"_{tb.caption}_", ""] if tb.caption else []))

    for s in r.sections:
        out += [f"## {s.title}", ""]
        if s.plots or s.tables:
            for para in s.intro:
                out += [para, ""]
            for p in s.plots:
                out += [f"![{p.title}]({p.name}.png)", ""]
                if p.caption:
                    out += [f"_{p.caption}_", ""]
                if p.table:
                    out += table(p.table)
            for tb in s.tables:
                out += table(tb)
            for para in s.outro:
                out += [para, ""]
        else:
            out += [f"_{s.absent}_", ""]
    out += ["## Context", ""]
    out.append(md_table([""] + r.runs, [[f"**{label}**"] + [f"**{v}**" if label == "environment" and
                                                            any(run == f for f, _ in r.not_hardware) else v
                                                            for run, v in zip(r.runs, values)]
                                        for label, values in r.context]))
    if r.notes:
        out += [""] + [f"- {n}" for n in r.notes]
    return "\n".join(out) + "\n"


def write(r: Report, folder: Path) -> Path:
    """DIR/report.html, DIR/report.md and DIR/<plot>.png; returns the HTML's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for s in r.sections:
        for p in s.plots:
            (folder / f"{p.name}.png").write_bytes(p.png)
    (folder / "report.md").write_text(render_markdown(r))
    page = folder / "report.html"
    page.write_text(render_html(r))
    return page
