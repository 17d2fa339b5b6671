"""Lotus job tracker logs (`jobs-YYYY-MM-DD.log`) into one table, and its per-task-type summaries.

A log is tab-separated with the header `HostName Worker Sector TaskType StartTime EndTime Duration`:

    ip-172-31-36-231	77a69335	2	C2	2021-07-30 03:29:28	2021-07-30 03:31:29	2m1.638826486s

A line that does not parse is reported with its file and line number and skipped: one bad line never
costs the rest of a day's log.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import RdmabenchError
from .durations import parse_go_duration

HEADER = ("HostName", "Worker", "Sector", "TaskType", "StartTime", "EndTime", "Duration")
COLUMNS = ["host", "worker", "sector", "task", "start", "end", "duration_s", "file", "line"]
# the sealing pipeline in order; other task types (GET, UNS, RU, ...) follow alphabetically
PIPELINE = ("AP", "PC1", "PC2", "C1", "C2", "FIN")
_ORDER = PIPELINE + ("GET", "UNS")


class JobLogError(RdmabenchError):
    pass


@dataclass
class Problem:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}; line skipped"


@dataclass
class JobLog:
    jobs: pd.DataFrame  # one row per job: COLUMNS
    problems: list[Problem] = field(default_factory=list)


def _time(text: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(text.strip())


def parse_line(text: str) -> dict:
    """One data line to a job dict; ValueError saying what is wrong."""
    parts = text.rstrip("\r\n").split("\t")
    if len(parts) != len(HEADER):
        raise ValueError(f"{len(parts)} tab-separated fields, expected {len(HEADER)} ({' '.join(HEADER)})")
    host, worker, sector, task, start, end, duration = (p.strip() for p in parts)
    if not host or not worker or not task:
        raise ValueError("empty HostName, Worker or TaskType")
    try:
        sector_n = int(sector)
    except ValueError:
        raise ValueError(f"sector {sector!r} is not a number") from None
    try:
        t0, t1 = _time(start), _time(end)
    except ValueError:
        raise ValueError(f"times {start!r} / {end!r} are not YYYY-MM-DD HH:MM:SS") from None
    seconds = parse_go_duration(duration)
    return {"host": host, "worker": worker, "sector": sector_n, "task": task, "start": t0, "end": t1,
            "duration_s": seconds}


def read(paths: list[Path | str]) -> JobLog:
    rows, problems = [], []
    for path in map(Path, paths):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            raise JobLogError(f"{path}: cannot read: {err.strerror}") from None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            if line.split(None, 1)[0] == HEADER[0]:  # the header (also when logs were concatenated)
                continue
            try:
                job = parse_line(line)
            except ValueError as err:
                problems.append(Problem(str(path), n, str(err)))
                continue
            rows.append({**job, "file": str(path), "line": n})
    jobs = pd.DataFrame(rows, columns=COLUMNS)
    jobs["duration_s"] = jobs["duration_s"].astype(float)
    return JobLog(jobs, problems)


def task_order(tasks) -> list[str]:
    present = list(dict.fromkeys(tasks))
    return [t for t in _ORDER if t in present] + sorted(t for t in present if t not in _ORDER)


def summary(jobs: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Per task type (and per `by`: "worker" or "host"): count, mean, p50, p95, max, total seconds."""
    keys = ([by] if by else []) + ["task"]
    cols = keys + ["count", "mean_s", "p50_s", "p95_s", "max_s", "total_s"]
    if jobs.empty:
        return pd.DataFrame(columns=cols)
    g = jobs.groupby(keys, sort=False)["duration_s"]
    out = pd.DataFrame({
        "count": g.size(), "mean_s": g.mean(), "p50_s": g.quantile(0.5), "p95_s": g.quantile(0.95),
        "max_s": g.max(), "total_s": g.sum(),
    }).reset_index()
    rank = {t: i for i, t in enumerate(task_order(jobs["task"]))}
    out["_rank"] = out["task"].map(rank)
    out = out.sort_values(([by] if by else []) + ["_rank"]).drop(columns="_rank").reset_index(drop=True)
    return out[cols]
