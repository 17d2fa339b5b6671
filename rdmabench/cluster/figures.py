"""A cluster run's figures: fairness between workers, and the tables `rdmabench cluster` prints.

Jain's fairness index over the workers' throughputs x_i is (sum x_i)^2 / (n * sum x_i^2): 1.0 when all
are equal, 1/n when one worker gets everything. min/max is the slowest worker's throughput over the
fastest's. The aggregate is all bytes over the slowest worker's time: the moment the last one is done.
"""

from __future__ import annotations

import statistics

MIB = 1 << 20


def jain(values: list[float]) -> float | None:
    if not values or not any(values):
        return None
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


def fairness(rows_by_host: dict[str, dict]) -> dict:
    """Per-host throughput, the aggregate, the slowest worker, Jain's index and min/max of one fan-in step."""
    per_host = {h: r["value"] for h, r in rows_by_host.items()}
    seconds = {h: r["seconds"] for h, r in rows_by_host.items()}
    slowest = max(seconds, key=seconds.get)
    moved = sum(r["bytes"] for r in rows_by_host.values())
    values = list(per_host.values())
    return {"per_host_MiBps": per_host, "per_host_s": seconds, "slowest_host": slowest,
            "slowest_s": seconds[slowest],
            "aggregate_MiBps": moved / MIB / seconds[slowest] if seconds[slowest] > 0 else 0.0,
            "jain": jain(values), "min_over_max": min(values) / max(values) if max(values) > 0 else None}


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _cell(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


FAN_IN_HEADER = ["hand-off", "sector", "transport", "workers", "aggregate MiB/s", "vs 1 worker", "slowest s", "Jain",
                 "min/max", "CPU s/GB storage", "CPU s/GB workers", "verified"]
FAN_IN_CAPTION = ("aggregate: all bytes over the slowest worker's time (means over repetitions); vs 1 worker: that "
                  "over the one-worker aggregate; Jain: Jain's fairness index of the workers' throughputs (1 = "
                  "equal); min/max: the slowest worker's throughput over the fastest's; CPU s/GB: process "
                  "CPU-seconds per GB at the storage host (all its serving) and summed over the workers")


def fan_in_table(rows: list[dict]) -> list[list[str]]:
    """FAN_IN_HEADER's rows: per hand-off, sector, transport and worker count, from the aggregate rows."""
    groups: dict = {}
    for r in rows:
        m = r["measured"]
        if m.get("scenario") == "fan-in" and m.get("host") == "all":
            groups.setdefault((m["handoff"], m["sector"], m["transport"]), {}).setdefault(m["workers"], []).append(r)
    body = []
    for (handoff, sector, transport), by_n in groups.items():
        one = _mean([r["value"] for r in by_n.get(1, [])])
        for n in sorted(by_n):
            agg = _mean([r["value"] for r in by_n[n]])
            d = [r["detail"] for r in by_n[n]]
            body.append([handoff, sector, transport, str(n), _cell(agg, ".1f"),
                         _cell(agg / one if one and agg is not None else None, ".2f"),
                         _cell(_mean([x["slowest_s"] for x in d]), ".3f"), _cell(_mean([x["jain"] for x in d]), ".3f"),
                         _cell(_mean([x["min_over_max"] for x in d]), ".2f"),
                         _cell(_mean([x["storage_cpu_s_per_gb"] for x in d]), ".2f"),
                         _cell(_mean([x["workers_cpu_s_per_gb"] for x in d]), ".2f"),
                         "yes" if all(x["verified"] for x in d) else "NO"])
    return body


def matrix_tables(rows: list[dict]) -> list[tuple[str, list[str], list[list[str]], str]]:
    """Per test: (title, header, body, note): a row per client host, a column per server host, and the cell
    furthest from the median named in the note."""
    tests: dict = {}
    for r in rows:
        m = r["measured"]
        if m.get("scenario") == "all-pairs":
            tests.setdefault((m["test"], r["metric"], r["unit"], r["higher_is_better"]), {})[(m["from"], m["to"])] = r["value"]
    out = []
    for (test, metric, unit, higher), cells in tests.items():
        hosts = sorted({h for pair in cells for h in pair})
        body = [[a] + ["-" if a == b else _cell(cells.get((a, b)), ".2f") for b in hosts] for a in hosts]
        note = ""
        med = statistics.median(cells.values())
        if len(cells) > 1 and med:
            worst = (min if higher else max)(cells, key=cells.get)
            note = (f"median {med:.2f} {unit}; furthest from it on the bad side: {worst[0]} -> {worst[1]}, "
                    f"{cells[worst]:.2f} ({cells[worst] / med:.2f} x the median)")
        out.append((f"{test} ({metric}, {unit})", ["client \\ server"] + hosts, body, note))
    return out


def _text(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    return "\n".join("  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in [header, *body])


def render_fan_in(rows: list[dict]) -> str:
    body = fan_in_table(rows)
    return f"{_text(FAN_IN_HEADER, body)}\n{FAN_IN_CAPTION}" if body else ""


def render_matrix(rows: list[dict]) -> str:
    return "\n\n".join(f"{title}\n{_text(header, body)}" + (f"\n{note}" if note else "")
                        for title, header, body, note in matrix_tables(rows))
