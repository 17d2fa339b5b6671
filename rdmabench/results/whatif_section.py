"""The report's what-if section: with Lotus job tracker logs (`rdmabench report ... --jobs LOG`), sectors a day
today and with each transport, from jobs.whatif.compute (the bytes of each hand-off / the measured throughput,
plus the logs' mean task durations), turned into the page's tables. The sums are whatif's; this only lays out.
"""

from __future__ import annotations

import pandas as pd

from ..errors import RdmabenchError
from ..jobs import whatif
from ..jobs.durations import format_seconds
from ..units import format_size
from .frames import Tables, column
from .page import Section, Table

TITLE = "Sectors a day: today and with each transport"


def transfer_only(t: Tables) -> Tables:
    """The tables of the runs that measured a hand-off (a report may mix verbs runs in; the what-if reads transfers)."""
    have = set(t.rows.loc[column(t.rows, "handoff").notna(), "run"]) if not t.rows.empty else set()

    def keep(df: pd.DataFrame) -> pd.DataFrame:
        return df[df["run"].isin(have)] if "run" in df.columns else df
    return Tables(keep(t.runs), keep(t.rows), keep(t.aside), keep(t.samples),
                  {k: v for k, v in t.results.items() if k in have})


def _change(r: dict) -> str:
    if r["scenario"] == "today":
        return "-"
    saved = r["saved_s"]
    return (f"{format_seconds(saved)} shorter ({r['change']:+.1%})" if saved >= 0
            else f"{format_seconds(-saved)} longer ({r['change']:+.1%})")


def _per_day(r: dict, today: float) -> str:
    n = r["sectors_per_day"]
    return f"{n:.2f}" if r["scenario"] == "today" or not today else f"{n:.2f} ({n / today - 1:+.0%})"


def section(t: Tables, jobs: pd.DataFrame | None, sector: int | None, today: dict[str, str] | None = None,
            logs: int = 0) -> Section:
    s = Section("what-if", TITLE)
    if jobs is None:
        s.absent = ("Give Lotus's job tracker logs to see this: `rdmabench report RESULTS... -o DIR --jobs "
                    "jobs-2024-05-01.log` (the miner's $LOTUS_MINER_JOB_LOG_PATH). Sectors a day today and with "
                    "each transport then appear here.")
        return s
    if sector is None:
        s.absent = "No transfer rows in these files: no hand-off to put in the pipeline."
        return s
    try:
        w = whatif.compute(jobs, transfer_only(t), sector, today)
    except RdmabenchError as err:
        s.absent = f"No what-if: {err}."
        return s
    days = w.pipeline.to_dict("records")
    today_per_day = days[0]["sectors_per_day"] if days else None
    s.intro = [f"For one {format_size(sector)} sector: the mean task durations of {len(jobs)} jobs in "
               f"{logs or 'the'} job log{'s' if logs != 1 else ''}, plus each hand-off's fetch: the bytes Lotus moves "
               f"for it / the mean throughput measured with {w.measured_with or '?'} sectors (the decision "
               f"table's model, projections included) on {w.environment}.", whatif.SECTORS_A_DAY]
    pipeline = Table(["scenario", "sectors a day", "a sector's time", "tasks", "fetches", "fetch share", "vs today",
                      "transport per hand-off"],
                     [[r["scenario"], _per_day(r, today_per_day), format_seconds(r["total_s"]),
                       format_seconds(r["tasks_s"]), format_seconds(r["fetch_s"]), f"{r['fetch_share']:.1%}",
                       _change(r), r["transports"]] for r in days],
                     "today: Lotus's own transport at every hand-off; each other row swaps in one transport "
                     "where it was measured and keeps today's elsewhere.", kind="whatif",
                     warn=w.notes[0] if w.illustrative else "")
    tasks = Table(["task", "jobs", "mean"], [[r["task"], str(r["count"]), format_seconds(r["mean_s"])]
                                             for r in w.tasks.to_dict("records")],
                  "Mean durations from the job logs (what the pipeline's tasks cost without their fetches).",
                  title="Task durations from the logs", kind="whatif")
    s.tables = [pipeline, tasks]
    s.intro += [n + "." for n in (w.notes[1:] if w.illustrative else w.notes)]
    return s
