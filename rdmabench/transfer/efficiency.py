"""Each rdma transfer beside the link's raw RDMA bandwidth at the same settings, measured in the same run.

An rdma-write transfer moves ``chunk``-byte RDMA WRITEs, ``inflight`` of them in flight on each of its
``streams`` QPs; an rdma-read transfer the same with READs. Its efficiency is its throughput over what
perftest's write_bw (read_bw) reaches on the same link with message size = chunk, QPs = streams and
depth = inflight per QP: how much of the wire the file path (disk, digests, credits, control messages)
leaves unused.

Raw figures are measured once per distinct (test, chunk, streams, inflight) of the run, BEFORE any
transfer: on a quiet link (no sector files being written back, no passive end running), never overlapping
a transfer (the verbs service would measure the transfer too), and known before the first row is built.
Each is bounded in time, not in bytes: ``RAW_SECONDS`` of traffic (the engines' duration mode) after a
warm-up of one queue's worth of messages per QP, whatever the link's speed. Two hosts: the worker is the
verbs client of the storage host's `rdmabench serve` (its ``verbs`` service, as `rdmabench run -t write_bw
--peer HOST` does): write_bw's data flows worker -> storage, read_bw's storage -> worker. One host: both
ends on the local device (`rdmabench run -t write_bw` without --peer).

A raw measurement that fails (no device, the far end refuses, a timeout) is not a failed run: the rdma
rows keep their figures, with the raw ones null and a note saying why.

The raw measurements are rows of the result too (measured {test, size}, metric bw_avg_MiBps, as `run`'s
verbs rows), without the per-completion timeline verbs rows keep (``completions``; the best-window figure
stays).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..config import TRANSFER_DEFAULTS
from ..engines.tests import TESTS
from ..errors import RdmabenchError
from ..units import format_size

RAW_SECONDS = 2.0  # of traffic per raw measurement (duration mode); the warm-up adds one queue's worth per QP
# the verbs test each rdma transport's data moves by
RAW_TEST = {"rdma-write": "write_bw", "rdma-read": "read_bw"}


@dataclass(frozen=True)
class Setup:
    """One raw measurement: ``test`` at message ``size`` (= chunk) on ``qps`` QPs (= streams), ``depth``
    messages in flight per QP (= inflight)."""

    test: str
    size: int
    qps: int
    depth: int

    def to_dict(self) -> dict:
        return {"size": self.size, "qps": self.qps, "depth": self.depth}


@dataclass
class Raw:
    """What the raw measurements gave: a verbs row per Setup measured, the reason per Setup that was not."""

    rows: dict[Setup, dict] = field(default_factory=dict)
    failed: dict[Setup, str] = field(default_factory=dict)
    stalled_once: dict[Setup, str] = field(default_factory=dict)  # measured on a second try; the first's reason
    seconds: float = RAW_SECONDS
    between: str = ""  # where it ran: "worker -> storage's rdmabench serve at HOST:PORT" or "loopback on DEV"

    def all_rows(self) -> list[dict]:
        return list(self.rows.values())


def setup_for(transport: str, options: dict, extra: dict | None = None) -> Setup | None:
    """The raw measurement an rdma transfer is to be held against (None: not an rdma transport). What the
    transport reports it used (its record's ``extra``) comes first; then the options it was given; then the
    [transfer] table's defaults. A transport that does not report ``streams`` used one QP."""
    test = RAW_TEST.get(transport)
    if test is None:
        return None
    extra = extra or {}

    def pick(key):
        return int(extra.get(key, options.get(key, TRANSFER_DEFAULTS[key])))

    streams = int(extra.get("streams", 1)) if extra else int(options.get("streams", TRANSFER_DEFAULTS["streams"]))
    return Setup(test, pick("chunk"), streams, pick("inflight"))


def planned(transports: Iterable[str], options: dict) -> list[Setup]:
    """The distinct raw measurements a run of these transports with these options needs, in a fixed order."""
    out = {s: None for s in (setup_for(t, options) for t in dict.fromkeys(transports)) if s is not None}
    return sorted(out, key=lambda s: (s.size, s.qps, s.depth, list(TESTS).index(s.test)))


def measure(setups: list[Setup], device: str | None, gid_index: int | None, peer: tuple[str, int] | None, *,
            seconds: float = RAW_SECONDS, wait: float = 5.0, timeout_ms: int = 10000,
            progress: Callable[[str], None] = lambda msg: None) -> Raw:
    """Run every setup (one verbs session per (size, qps, depth), its tests back to back); never raises
    for a measurement that fails: the reason goes into ``Raw.failed``.

    A session that stalls ("no progress": completions stopped coming, as rxe under emulation now and then
    does) is run once more; the figure then measured is kept, and the stall's reason goes into
    ``Raw.stalled_once`` and the row's ``first_attempt``, so it is never hidden."""
    from ..perf.client import Client, run_local
    from ..perf.options import RunOptions

    raw = Raw(seconds=seconds, between=f"worker -> storage's rdmabench serve at {peer[0]}:{peer[1]}" if peer
              else f"loopback on {device}")
    groups: dict[tuple[int, int, int], list[Setup]] = {}
    for s in setups:
        groups.setdefault((s.size, s.qps, s.depth), []).append(s)
    for (size, qps, depth), group in groups.items():
        o = RunOptions(tests=[s.test for s in group], sizes=[size], duration=seconds, warmup=depth, depth=depth,
                       qps=qps, cq_mod=max(1, depth // 2), gid_index=gid_index)
        say = lambda msg: progress(f"{msg}, {qps} QP(s), depth {depth}")  # noqa: E731

        def session():
            if not device:
                raise RdmabenchError("this host has no RDMA device")
            if peer:
                return Client(o, device, peer[0], peer[1], timeout_ms=timeout_ms, wait=wait, progress=say).run()
            return run_local(o, device, timeout_ms=timeout_ms, progress=say)

        stall = None
        try:
            try:
                result = session()
            except (RdmabenchError, OSError, ValueError) as err:
                if "no progress" not in _first_line(err):
                    raise
                stall = _first_line(err)
                progress(f"{stall}; measuring once more")
                result = session()
        except (RdmabenchError, OSError, ValueError) as err:
            reason = _first_line(err)
            for s in group:
                raw.failed[s] = f"raw {_name(s)} not measured: {reason}" + (
                    f" (and before that: {stall})" if stall and stall != reason else "")
            continue
        for r in result.rows:
            s = Setup(r["measured"]["test"], int(r["measured"]["size"]), qps, depth)
            raw.rows[s] = raw_row(r, s, o.cq_mod, raw.between, remote=bool(peer))
            if stall:
                raw.stalled_once[s] = f"raw {_name(s)}: the first attempt stalled ({stall}); measured on the second"
                r["detail"]["first_attempt"] = stall
        for s in group:
            if s not in raw.rows:
                raw.failed[s] = f"raw {_name(s)}: the verbs run returned no row for it"
    return raw


def raw_row(r: dict, s: Setup, cq_mod: int, between: str, remote: bool) -> dict:
    """A verbs row (perf.client.make_row) as the transfer result keeps it: the settings it was measured at
    and which transports it stands for, without the per-completion timeline (too big to keep per chunk
    size; the best-window figure stays)."""
    r["detail"].pop("completions", None)
    r["detail"].update(depth=s.depth, cq_mod=cq_mod, warmup_per_qp=s.depth, between=between,
                       raw_for=sorted(t for t, test in RAW_TEST.items() if test == s.test))
    if r.get("cpu"):
        r["cpu"]["roles"] = {"client": "worker", "server": "storage" if remote else "worker"}
    return r


def fields(transport: str, throughput: float, records: list[dict], options: dict, raw: Raw | None) -> dict:
    """The efficiency fields of one transfer row's detail; {} for a transport that is not rdma."""
    s = setup_for(transport, options, (records[0].get("extra") if records else None) or None)
    if s is None:
        return {}
    out = {"raw_test": s.test, "raw_setup": s.to_dict(), "raw_bw_MiBps": None, "efficiency": None,
           "raw_seconds": raw.seconds if raw else None, "raw_between": raw.between if raw else None}
    row = raw.rows.get(s) if raw else None
    if row is None:
        if raw is None:
            out["raw_note"] = "no raw measurement was made in this run"
        else:
            out["raw_note"] = raw.failed.get(s) or (
                f"no raw {_name(s)} was measured in this run "
                f"(it measured {', '.join(_name(m) for m in raw.rows) or 'none'})")
        return out
    out["raw_bw_MiBps"] = row["value"]
    out["efficiency"] = throughput / row["value"] if row["value"] > 0 else None
    if out["efficiency"] is None:
        out["raw_note"] = f"raw {s.test} measured 0 MiB/s"
    return out


def _first_line(err: Exception) -> str:
    """What an error says, without the hints that follow its first line."""
    return (str(err).splitlines() or [type(err).__name__])[0]


def _name(s: Setup) -> str:
    return f"{s.test} at {format_size(s.size)} x {s.qps} QP(s) x depth {s.depth}"


def cells(rows: list[dict]) -> tuple[str, str]:
    """The printed table's "raw MiB/s" and "of raw" for a group of repetitions: blank where not rdma,
    "n/a" where the raw figure is missing; "of raw" is the mean of the rows' ratios."""
    if not rows or "raw_test" not in rows[0]["detail"]:
        return "", ""
    raws = [r["detail"].get("raw_bw_MiBps") for r in rows]
    effs = [r["detail"].get("efficiency") for r in rows]
    raws = [x for x in raws if x is not None]
    effs = [x for x in effs if x is not None]
    if not raws or not effs:
        return "n/a", "n/a"
    return f"{sum(raws) / len(raws):.1f}", f"{sum(effs) / len(effs):.0%}"


def legend(rows: list[dict], raw_rows: list[dict]) -> list[str]:
    """The lines under the printed table: each raw measurement, and why any rdma row has none."""
    out = []
    if any("raw_test" in r["detail"] for r in rows if "handoff" in r["measured"]):
        out.append("raw MiB/s: the link's write_bw (rdma-write) or read_bw (rdma-read) at the transfer's chunk size, "
                   "streams as QPs and inflight as depth, measured in this run; of raw: throughput / raw")
    for r in raw_rows:
        d = r["detail"]
        size = format_size(int(r["measured"]["size"]))
        out.append(f"  raw {r['measured']['test']} at {size} x {d.get('qps')} QP(s) x depth {d.get('depth')}: "
                   f"{r['value']:.1f} MiB/s over {d.get('duration_s')} s ({d.get('between')})")
    notes = dict.fromkeys(r["detail"]["raw_note"] for r in rows if r["detail"].get("raw_note"))
    out += [f"  {n}" for n in notes]
    return out
