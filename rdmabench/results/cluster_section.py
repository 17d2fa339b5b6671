"""The report's cluster section: the fan-in table and the all-pairs matrices of `rdmabench cluster` files,
with the hosts that took part. Cluster rows are kept out of every other section: a worker's throughput
while others fetch too is not a two-host transfer, and must not be averaged with one."""

from __future__ import annotations

from ..cluster import figures
from .frames import Tables
from .page import Section, Table


def section(t: Tables) -> Section:
    tables: list[Table] = []
    for run, result in t.results.items():
        if result.kind != "cluster":
            continue
        hosts = result.options.get("hosts") or {}
        warn = "" if result.context.get("hardware") else f"Lab figure, not hardware: {result.context.get('environment')}"
        tables.append(Table(["host", "role", "address", "device", "kernel", "environment"],
                            [[h, str(v.get("role")), str(v.get("address")),
                              str(((v.get("context") or {}).get("device") or {}).get("name")),
                              str(((v.get("context") or {}).get("host") or {}).get("kernel")),
                              str((v.get("context") or {}).get("environment"))] for h, v in hosts.items()],
                            title=f"{run}: hosts", kind="numbers"))
        body = figures.fan_in_table(result.rows)
        if body:
            tables.append(Table(figures.FAN_IN_HEADER, body, figures.FAN_IN_CAPTION, title=f"{run}: fan-in",
                                warn=warn, kind="numbers"))
        for title, header, body, note in figures.matrix_tables(result.rows):
            tables.append(Table(header, body, note, title=f"{run}: all pairs, {title}", warn=warn, kind="numbers"))
    absent = "" if tables else ("No cluster results in these files. They come from `rdmabench cluster` under mpirun "
                                "(see `rdmabench cluster --help`).")
    intro = ["Several workers against one storage host at once (fan-in), and a verbs test between every ordered "
             "pair of hosts (all pairs). These rows appear only here."] if tables else []
    return Section("cluster", "Cluster: fan-in and all pairs", [], absent, tables, intro)


def without_cluster_rows(t: Tables) -> Tables:
    """``t`` with only the rows of two-host runs, for every other section."""
    if "scenario" not in t.rows.columns:
        return t
    from dataclasses import replace
    return replace(t, rows=t.rows[t.rows["scenario"].isna()])
