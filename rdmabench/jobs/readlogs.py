"""Which log a file is, and everything in a set of logs: the job tracker's tasks (logparse) and the fetches of
Lotus, lotus-worker and Curio daemon logs (fetchlog). `rdmabench jobs` reads through here; logparse.read stays
the reader of job tracker logs alone.

A file is a job tracker log when its lines are the tracker's (its header, or tab-separated task lines), a
daemon log when they are go-log lines (console or JSON, journal prefix or not). A file with neither, or with
nothing to report (a daemon log without a fetch line, a job log with a header only, an empty file), is named in
`Logs.empty` with what was looked for; callers fail on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import fetchlog, logparse
from .logparse import JobLog, JobLogError, Problem

JOB, DAEMON = "job tracker log", "daemon log"
LOOKED_FOR = ("a Lotus job tracker log (tab-separated: HostName Worker Sector TaskType StartTime EndTime "
              "Duration), or a Lotus, lotus-worker or Curio log with fetch lines ('Fetch done' with url, took, "
              "bytes and MiB/s; 'Fetch URL -> PATH'), in go-log's console or JSON format")


@dataclass
class Logs:
    jobs: JobLog
    fetches: pd.DataFrame  # fetchlog.COLUMNS
    kinds: dict[str, str] = field(default_factory=dict)  # file -> "job tracker log", "Curio log", ...
    empty: list[str] = field(default_factory=list)  # one message per file with nothing to report
    fetch_problems: list[Problem] = field(default_factory=list)

    @property
    def problems(self) -> list[Problem]:
        return self.jobs.problems + self.fetch_problems


def _job_lines(lines: list[str]) -> tuple[bool, int]:
    header = valid = 0
    for line in lines:
        if not line.strip():
            continue
        if line.split(None, 1)[0] == logparse.HEADER[0]:
            header = 1
            continue
        try:
            logparse.parse_line(line)
            valid += 1
        except ValueError:
            pass
    return bool(header), valid


def read(paths: list[Path | str], host: str | None = None) -> Logs:
    """Every file in `paths`, each read as the kind it is. `host` names the host the daemon logs come from
    (else a journal prefix's host, else the file's name: fetchlog.file_host)."""
    job_files, rows, problems, kinds, empty = [], [], [], {}, []
    for path in map(Path, paths):
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as err:
            raise JobLogError(f"{path}: cannot read: {err.strerror}") from None
        if not any(line.strip() for line in lines):
            empty.append(f"{path}: empty; looked for {LOOKED_FOR}")
            continue
        header, jobs = _job_lines(lines)
        s = fetchlog.scan(lines, str(path))
        if (header or jobs) and jobs >= s.golog_lines:
            kinds[str(path)] = JOB
            job_files.append(path)
            if not jobs:
                empty.append(f"{path}: a job tracker log with its header and no job line that parses")
            continue
        if not s.golog_lines and not s.problems:
            empty.append(f"{path}: no line of a known log; looked for {LOOKED_FOR}")
            continue
        kinds[str(path)] = s.kind
        problems += s.problems
        if not s.rows:
            empty.append(f"{path}: a {s.program} log ({s.golog_lines} go-log lines) without a valid fetch line; "
                         "fetch lines are INFO from the logger 'stores' ('Fetch done', 'Fetch URL -> PATH'): "
                         "is its level above info (GOLOG_LOG_LEVEL, lotus-worker log set-level)?")
        for r in s.rows:
            r["destination"] = host or r.get("host") or fetchlog.file_host(path)
        rows += s.rows
    jobs = logparse.read(job_files) if job_files else JobLog(logparse.read([]).jobs)
    return Logs(jobs, fetchlog.frame(rows), kinds, empty, problems)
