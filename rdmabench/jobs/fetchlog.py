"""Sector fetches in the logs of Lotus (lotus-miner, lotus-worker) and Curio: bytes, seconds and MiB/s per
fetch, and per host pair (source host from the URL, destination host: the one whose log it is).

Both fetch a sector file with one function that logs a line when a fetch starts and, since Lotus v1.17.2, one
when its transfer ends. The lines this module reads, from the source (logger "stores" in both):

Lotus v1.36.2 (c6f4d02400dba55ebc5ab3677ef2ae5a5f4d1aef), storage/paths/fetch.go, func fetch (identical
since v1.17.2, fb0fb7144bc2c18a70ef075ba0d934a7f8f0612d); Curio v1.28.4
(550f2ee0aadd3491da2bc71df13673075a803ccb), lib/paths/fetch.go, func fetch, the same two calls:

    log.Infof("Fetch %s -> %s", url, outname)
    ...
    start := time.Now()            // after the 200 answer's headers
    var bytes int64
    defer func() {
        took := time.Since(start)
        mibps := float64(bytes) / 1024 / 1024 * float64(time.Second) / float64(took)
        log.Infow("Fetch done", "url", url, "out", outname, "took", took.Round(time.Millisecond),
                  "bytes", bytes, "MiB/s", mibps, "err", rerr)
    }()

Lotus up to v1.17.1 (8db6a939c1e5c00bdaa79882685a78607825a2c7, storage/paths/remote.go, func (r *Remote) fetch;
before v1.17 extern/sector-storage/stores/remote.go, e.g. v1.10.0) logs only the start,
`log.Infof("Fetch %s -> %s", url, outname)`, and nothing when the transfer ends: such fetches are counted and
listed, with their bytes, seconds and MiB/s said to be not in the log, never guessed. Every version writes no
"Fetch done" for a fetch refused before its transfer began (a connection error, a non-200 answer).

The line formats are go-log v2's (github.com/ipfs/go-log/v2 core.go newCore: zap's production encoder config
with EncodeTime = ISO8601TimeEncoder; zap v1.22.0 config.go NewProductionEncoderConfig: keys ts, level, logger,
caller, msg; EncodeDuration = SecondsDurationEncoder, so "took" is a number of seconds):

    console (GOLOG_LOG_FMT=nocolor, the default when stderr is not a terminal; "color" adds ANSI codes):
      2024-05-04T03:29:28.123Z<TAB>INFO<TAB>stores<TAB>paths/fetch.go:42<TAB>Fetch done<TAB>{"url": ..., "took": 61.2, ...}
    json (GOLOG_LOG_FMT=json, which Lotus's and Curio's systemd units set):
      {"level":"info","ts":"2024-05-04T03:29:28.123Z","logger":"stores","caller":"paths/fetch.go:42",
       "msg":"Fetch done","url":...,"out":...,"took":61.2,"bytes":...,"MiB/s":...,"err":null}

A line read through journalctl keeps its syslog prefix (`May 04 03:29:28 worker-3 lotus-worker[812]: `, or
the short-iso one); that prefix names the host, which becomes the destination. Lines that are not fetch lines
are no concern here (a daemon log is mostly other things); a line that is a fetch line but does not parse is
a Problem with its file and line, and the rest of the file is still read.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pandas as pd

from .durations import parse_go_duration
from .logparse import Problem

MiB = 1 << 20
COLUMNS = ["time", "source", "destination", "sector", "type", "bytes", "seconds", "MiBps", "status",
           "error", "url", "file", "line"]
OK, FAILED, NO_END = "ok", "failed", "no end logged"
LEVELS = {"DEBUG", "INFO", "WARN", "ERROR", "DPANIC", "PANIC", "FATAL"}
# loggers only one of the two writes: which program a log comes from (their fetch lines are the same)
CURIO_LOGGERS = ("harmonytask", "harmonydb", "curio", "webrpc", "ffiselect", "pdp", "proofshare")
LOTUS_LOGGERS = ("sealworker", "advmgr", "storageminer", "lotus-miner", "sectors", "wdpost", "miner")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_JOURNAL = re.compile(  # journalctl's short and short-iso prefixes: time, host, identifier[pid]:
    r"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
    r" (?P<host>\S+) [^\s\[:]+(?:\[\d+\])?: ")
_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)$")
_CALLER = re.compile(r"^\S+\.go:\d+$")
_FETCH_HINT = re.compile(r"(?:^|[\t\"])Fetch (?:done\b|\S+ -> )")
_START = re.compile(r"^Fetch (?P<url>\S+) -> (?P<out>.+)$")
_REMOTE = re.compile(r"/remote/(?P<type>[a-z-]+)/(?P<sector>s-t0\d+-\d+)/?$")


@dataclass
class Entry:
    """One go-log line."""

    ts: _dt.datetime
    level: str
    logger: str
    caller: str
    msg: str
    fields: dict
    host: str | None  # from a journal prefix


@dataclass
class Scan:
    """What one file holds: its fetches and what says which program wrote it."""

    rows: list[dict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    golog_lines: int = 0
    loggers: set = field(default_factory=set)
    callers: set = field(default_factory=set)  # the caller's directory: lotus-worker, paths, harmonytask, ...
    old_lotus: bool = False  # a fetch start logged from remote.go: Lotus before v1.17.2

    @property
    def kind(self) -> str:
        return "Lotus log (before v1.17.2: fetch starts only)" if self.old_lotus else f"{self.program} log"

    @property
    def program(self) -> str:
        if self.old_lotus:
            return "Lotus"
        if any(lg.split("/")[0].startswith(CURIO_LOGGERS) for lg in self.loggers):
            return "Curio"
        if (any(lg.split("/")[0] in LOTUS_LOGGERS for lg in self.loggers)
                or self.callers & {"lotus-worker", "lotus-miner", "lotus-provider"}):
            return "Lotus"
        return "Lotus or Curio"


@dataclass
class FetchLog:
    fetches: pd.DataFrame  # one row per fetch: COLUMNS
    problems: list[Problem] = field(default_factory=list)


def _time(text) -> _dt.datetime:
    if isinstance(text, (int, float)) and not isinstance(text, bool):  # zap's own default: epoch seconds
        return _dt.datetime.fromtimestamp(text, _dt.timezone.utc)
    if not isinstance(text, str) or not _TS.match(text):
        raise ValueError(f"time {text!r} is not ISO 8601 (like 2024-05-04T03:29:28.123Z)")
    t = _dt.datetime.fromisoformat(text)
    return (t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)).astimezone(_dt.timezone.utc)


def parse_golog(raw: str) -> Entry | None:
    """A go-log line (console or JSON, with or without a journal prefix) to an Entry; None when the line is
    not one; ValueError when it looks like one but does not parse."""
    line = _ANSI.sub("", raw.rstrip("\r\n"))
    host = None
    m = _JOURNAL.match(line)
    if m:
        host, line = m.group("host"), line[m.end():]
    if line.startswith("{"):
        if '"level"' not in line or '"msg"' not in line:
            return None
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"a JSON log line that does not parse ({err.msg} at column {err.colno})") from None
        if not isinstance(obj, dict) or "msg" not in obj:
            return None
        fields = {k: v for k, v in obj.items() if k not in ("level", "ts", "logger", "caller", "msg")}
        return Entry(_time(obj.get("ts")), str(obj.get("level", "")).upper(), str(obj.get("logger", "")),
                     str(obj.get("caller", "")), str(obj["msg"]), fields, host)
    parts = line.split("\t")
    if len(parts) < 4 or not _TS.match(parts[0]) or parts[1] not in LEVELS:
        return None
    rest = parts[3:]
    caller = rest.pop(0) if _CALLER.match(rest[0]) and len(rest) > 1 else ""
    fields = {}
    if len(rest) > 1 and rest[-1].startswith("{"):
        try:
            fields = json.loads(rest[-1])
        except json.JSONDecodeError as err:
            raise ValueError(f"the fields {{...}} do not parse as JSON ({err.msg} at column {err.colno})") from None
        rest = rest[:-1]
    return Entry(_time(parts[0]), parts[1], parts[2], caller, "\t".join(rest), fields, host)


def _where(url: str) -> tuple[str, str, str]:
    """Source host, file type and sector name from a fetch URL (http://10.0.0.2:3456/remote/sealed/s-t01000-2);
    type and sector are "" for a URL of another shape (a sector import's download, say)."""
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"url {url!r} is not an http(s) URL with a host")
    m = _REMOTE.search(u.path)
    return u.hostname, (m.group("type") if m else ""), (m.group("sector") if m else "")


def _number(fields: dict, key: str):
    v = fields.get(key)
    if isinstance(v, bool) or v is None:
        raise ValueError(f"no {key!r}")
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str) and v in ("NaN", "+Inf", "-Inf"):  # zap's spelling of these floats
        return float(v.replace("+", ""))
    raise ValueError(f"{key!r} is {v!r}, not a number")


def done_row(e: Entry) -> dict:
    """A "Fetch done" entry to a fetch row; ValueError saying what is missing."""
    f = e.fields
    url = f.get("url")
    if not isinstance(url, str):
        raise ValueError('"Fetch done" without its "url"')
    source, ftype, sector = _where(url)
    took = f.get("took")
    if isinstance(took, str):  # a build whose encoder writes durations as Go strings
        seconds = parse_go_duration(took)
    else:
        seconds = float(_number(f, "took"))
    nbytes = _number(f, "bytes")
    if not float(nbytes).is_integer() or nbytes < 0 or seconds < 0:
        raise ValueError(f"bytes {nbytes!r} / took {took!r} cannot be a transfer's")
    mibps = float(_number(f, "MiB/s")) if "MiB/s" in f else math.nan
    if not math.isfinite(mibps):  # NaN or Inf: no time measured; a 0 s fetch has no rate
        mibps = nbytes / MiB / seconds if seconds > 0 else math.nan
    err = f.get("err")
    return {"time": e.ts, "source": source, "sector": sector, "type": ftype, "bytes": int(nbytes),
            "seconds": seconds, "MiBps": mibps, "status": FAILED if err else OK, "error": str(err) if err else "",
            "url": url, "out": f.get("out"), "host": e.host}


def scan(lines, file: str) -> Scan:
    """Every fetch in one file's lines; starts without a "Fetch done" are kept as NO_END rows."""
    s = Scan()
    starts: list[dict] = []
    for n, raw in enumerate(lines, 1):
        hint = bool(_FETCH_HINT.search(raw))
        try:
            e = parse_golog(raw)
        except ValueError as err:  # a broken line is a problem only when it is a fetch line
            if hint:
                s.problems.append(Problem(file, n, str(err)))
            continue
        if e is None:
            if hint:
                s.problems.append(Problem(file, n, "a fetch line that is not a go-log line (console or JSON)"))
            continue
        try:
            s.golog_lines += 1
            s.loggers.add(e.logger)
            s.callers.add(e.caller.split("/")[0] if "/" in e.caller else "")
            if e.logger != "stores":  # the fetch lines' logger in Lotus and Curio
                continue
            if e.msg == "Fetch done":
                row = done_row(e)
                for i, st in enumerate(starts):  # the earliest open start of the same url -> out
                    if st["url"] == row["url"] and st["out"] == row["out"]:
                        del starts[i]
                        break
                s.rows.append({**row, "file": file, "line": n})
            elif e.msg.startswith("Fetch "):
                m = _START.match(e.msg)
                if not m:
                    raise ValueError(f"{e.msg[:60]!r} is not 'Fetch URL -> PATH'")
                source, ftype, sector = _where(m.group("url"))
                s.old_lotus |= e.caller.startswith(("paths/remote.go", "stores/remote.go"))
                starts.append({"time": e.ts, "source": source, "sector": sector, "type": ftype,
                               "bytes": math.nan, "seconds": math.nan, "MiBps": math.nan, "status": NO_END,
                               "error": "", "url": m.group("url"), "out": m.group("out"), "host": e.host,
                               "file": file, "line": n})
        except ValueError as err:
            s.problems.append(Problem(file, n, str(err)))
    s.rows.extend(starts)
    return s


def frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("bytes", "seconds", "MiBps"):
        df[col] = df[col].astype(float)
    return df.sort_values(["time", "file", "line"], kind="stable").reset_index(drop=True)


GENERIC_NAMES = {"curio", "lotus", "lotus-worker", "lotus-miner", "miner", "worker", "daemon", "journal", "log",
                 "logs", "out", "stderr", "stdout", "syslog", "messages", "sealworker", "fetch", "fetches"}


def file_host(path) -> str:
    """The host a log's name gives (worker-3.log -> worker-3), or "host of NAME" for a name that is no host."""
    name = str(path).replace("\\", "/").rsplit("/", 1)[-1]
    stem = name.split(".log", 1)[0] if ".log" in name else name.rsplit(".", 1)[0]
    if not stem or stem.lower() in GENERIC_NAMES or stem.lower().startswith("jobs-"):
        return f"host of {name}"
    return stem


def summary(fetches: pd.DataFrame) -> pd.DataFrame:
    """Per host pair (source -> destination): fetches measured, failed, without an end; bytes and seconds of
    the measured ones; bytes / seconds; and the mean, p50, min and max of their per-fetch MiB/s."""
    cols = ["source", "destination", "fetches", "failed", "no_end", "bytes", "seconds", "MiBps", "mean_MiBps",
            "p50_MiBps", "min_MiBps", "max_MiBps"]
    out = []
    for (src, dst), g in fetches.groupby(["source", "destination"], sort=True):
        ok = g[g["status"] == OK]
        rate = ok["MiBps"].dropna()
        b, s = ok["bytes"].sum(), ok["seconds"].sum()
        out.append({"source": src, "destination": dst, "fetches": len(ok), "failed": int((g["status"] == FAILED).sum()),
                    "no_end": int((g["status"] == NO_END).sum()), "bytes": b, "seconds": s,
                    "MiBps": b / MiB / s if s > 0 else math.nan,
                    "mean_MiBps": rate.mean() if len(rate) else math.nan,
                    "p50_MiBps": rate.quantile(0.5) if len(rate) else math.nan,
                    "min_MiBps": rate.min() if len(rate) else math.nan,
                    "max_MiBps": rate.max() if len(rate) else math.nan})
    return pd.DataFrame(out, columns=cols)


def _bytes(n: float) -> str:
    if n != n:
        return "-"
    for unit, mult in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1 << 10)):
        if n >= mult:
            return f"{n / mult:,.1f} {unit}"
    return f"{int(n)} B"


def _rate(x: float) -> str:
    return "-" if x != x else f"{x:,.1f}"


def notes(fetches: pd.DataFrame) -> list[str]:
    """What the figures are and what the logs could not say."""
    out = ["seconds are the daemon's own \"took\": from the answer's headers to the last byte written; the wait "
           "for a fetch slot (ParallelFetchLimit) and the request before the answer are not in them",
           "MiB/s: a pair's bytes over its seconds; mean, p50, min and max: of its fetches' own MiB/s; each fetch "
           "is one HTTP stream and fetches run in parallel, so neither is the link's throughput"]
    no_end = fetches[fetches["status"] == NO_END]
    if len(no_end):
        out.append(f"{len(no_end)} fetch{'es' if len(no_end) != 1 else ''} with a start line ('Fetch URL -> PATH') "
                   "and no 'Fetch done': their bytes, seconds and MiB/s are not in the log (Lotus before v1.17.2 "
                   "logs only a fetch's start; every version logs no end for a fetch refused before its transfer "
                   "began, or still running when the log ends)")
    failed = fetches[fetches["status"] == FAILED]
    if len(failed):
        out.append(f"{len(failed)} fetch{'es' if len(failed) != 1 else ''} ended with an error (left out of the "
                   f"throughput), e.g. {failed.iloc[0]['error'][:120]!r}")
    unnamed = sorted(d for d in fetches["destination"].unique() if d.startswith("host of "))
    if unnamed:
        out.append(f"destination {', '.join(unnamed)}: a log line does not name its own host; give --host NAME "
                   "or name the file after its host (journalctl -u lotus-worker > worker-3.log)")
    return out


def render(fetches: pd.DataFrame, table, markdown: bool = False, each: bool = False) -> str:
    """The per-pair summary (and with each=True every fetch) as text or Markdown; `table` draws a table."""
    s = summary(fetches)
    parts = ["### Fetch throughput per host pair\n" if markdown else "Fetch throughput per host pair:",
             table(["source", "destination", "fetches", "failed", "no end", "bytes", "seconds", "MiB/s",
                    "mean MiB/s", "p50", "min", "max"],
                   [[r["source"], r["destination"], str(r["fetches"]), str(r["failed"]), str(r["no_end"]),
                     _bytes(r["bytes"]) if r["fetches"] else "-", f"{r['seconds']:,.1f}" if r["fetches"] else "-"]
                    + [_rate(r[k]) for k in
                     ("MiBps", "mean_MiBps", "p50_MiBps", "min_MiBps", "max_MiBps")] for r in s.to_dict("records")])]
    if each:
        parts += ["", "### Every fetch (UTC)\n" if markdown else "Every fetch (UTC; time the line was logged):",
                  table(["time", "source", "destination", "sector", "type", "bytes", "seconds", "MiB/s", "status"],
                        [[r["time"].strftime("%Y-%m-%d %H:%M:%S"), r["source"], r["destination"], r["sector"] or "-",
                          r["type"] or "-", _bytes(r["bytes"]), "-" if r["seconds"] != r["seconds"]
                          else f"{r['seconds']:,.3f}", _rate(r["MiBps"]), r["status"]]
                         for r in fetches.to_dict("records")])]
    parts += ["", "**Notes**\n" if markdown else "notes:"] + [("- " if markdown else "  - ") + n
                                                            for n in notes(fetches)]
    return "\n".join(parts) + "\n"
