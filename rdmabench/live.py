"""`rdmabench live`: Lotus's own fetch from a running Lotus or Curio, into a scratch directory, measured.

What it sends, and nothing else: ``GET /remote/sealed/<id>`` with ``Range: bytes=0-0`` once per sector
before anything is timed (the answer's Content-Range gives the sealed file's length, which is the sector
size), then per repetition ``GET /remote/sealed/<id>`` and ``GET /remote/cache/<id>``, exactly the requests
Lotus's own fetch sends (transports.http_client), one connection each. Never ``DELETE`` (Lotus's mover
sends one after a move; this is a measurement, not a move), never ``HEAD`` (gorilla/mux routes only GET
there: a HEAD is a 405), nothing that writes to the source.

What lands: ``<dest>/sealed/<id>`` and ``<dest>/cache/<id>/``, through ``fetching/<id>`` and a rename as
Lotus does it. rdmabench writes only where nothing was, refuses a ``--dest`` that is a Lotus or Curio storage
path (it holds ``sectorstore.json``), checks the room first (a 32 GiB sector after PC1 is 448 GiB), and
deletes what it fetched after each repetition unless ``keep`` (then the last repetition's files stay).

What is recorded: a "transfer" result whose rows are shaped as every transfer row (results.row), measured
``{"handoff", "transport": "http", "sector": "32GiB", "variant": "live lotus"}`` (the variant keeps them apart
from rdmabench's own http rows), CPU at this end only (the source is not ours to meter: its figures are
null), and detail ``"live": true``, the source's host:port, the sector id, the files, and what was checked.
A live source offers no digest: what arrived is hashed as it arrives (as for rdmabench's own http rows, so
the CPU cost is like for like) and its digests are recorded, but nothing was compared with anything.
The token is never written into the result, a log or an error message (live_auth.Credentials.scrub).
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from . import integrity
from .cpu import CpuMeter
from .errors import RdmabenchError
from .live_auth import Credentials
from .results import context
from .results.model import Result
from .results.row import make as make_row
from .transfer.measure import throughput_mibps
from .transports import http_client
from .units import format_size
from .workloads import sector as sectors

HANDOFFS = {"pc1-pc2": "pc1", "finalize": "finalized"}  # the stage the source's cache is at
KINDS = ("lotus", "curio")
SECTOR_ID = re.compile(r"\As-t0[0-9]{1,20}-[0-9]{1,20}\Z")
STORAGE_MARKER = "sectorstore.json"  # every Lotus and Curio storage path has one at its root
_CONTENT_RANGE = re.compile(r"\Abytes 0-0/(\d+)\Z")


class LiveError(RdmabenchError):
    """The live run cannot go on; nothing it fetched is left behind."""


@dataclass(frozen=True)
class Endpoint:
    base: str    # what the fetch appends /remote/{type}/{id} to: scheme://host:port[/prefix]
    source: str  # host:port, for the record

    @classmethod
    def parse(cls, url: str | None) -> "Endpoint":
        if not url:
            raise LiveError("no URL: give --url or set RDMABENCH_LIVE_URL to the miner's, worker's or Curio node's "
                            "/remote, e.g. http://10.0.0.5:2345/remote (lotus-miner), :3456 (lotus-worker), "
                            ":12300 (curio run --listen)")
        u = urlsplit(url.strip())
        if u.scheme != "http":
            raise LiveError(f"{u.scheme or 'no'} scheme in the URL: Lotus and Curio serve /remote over plain "
                            "http://, and so does this fetch")
        if u.username or u.password:
            raise LiveError("the URL holds a user name or password: give the token with RDMABENCH_LIVE_TOKEN, "
                            "--token-file or --secret-file instead")
        if u.query or u.fragment or not u.hostname:
            raise LiveError("the URL must be http://HOST:PORT[/remote], with no query (a ?token= would be "
                            "logged by the source and by proxies)")
        path = u.path.rstrip("/")
        prefix = path[:-len("/remote")] if path.endswith("/remote") else path
        host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
        port = u.port or 80
        return cls(f"http://{host}:{port}{prefix}", f"{host}:{port}")


def probe_size(ep: Endpoint, creds: Credentials, sid: str, timeout: float = 60.0) -> int:
    """The length of ``sealed/<sid>`` at the source: one GET of its first byte (Range: bytes=0-0)."""
    sock, netloc, prefix = http_client._connect(ep.base, timeout)
    try:
        sock.sendall((f"GET {prefix}/remote/sealed/{sid} HTTP/1.1\r\nHost: {netloc}\r\n"
                      f"Authorization: Bearer {creds.token}\r\nRange: bytes=0-0\r\nUser-Agent: rdmabench\r\n"
                      "Connection: close\r\n\r\n").encode())
        s = http_client._Stream(sock, 1 << 16)
        status, headers = http_client._response_head(s)
        body = ""
        if status != 206 and headers.get("content-length", "").isdigit() and 0 < int(headers["content-length"]) < 4096:
            body = s.read(int(headers["content-length"])).decode(errors="replace").strip()
    finally:
        sock.close()
    where = f"GET {ep.base}/remote/sealed/{sid}"
    if status == 206 and (m := _CONTENT_RANGE.match(headers.get("content-range", ""))):
        return int(m.group(1))
    if status == 200 and headers.get("content-length", "").isdigit():  # a server that ignores Range
        return int(headers["content-length"])
    if status == 401:
        raise LiveError(f"{where}: HTTP 401, the token was refused{': ' + body if body else ''} (made with another "
                        "secret, or without admin permission: Lotus needs `auth create-token --perm admin`)")
    if status == 500:
        raise LiveError(f"{where}: HTTP 500. Lotus and Curio answer 500, with no reason, for a sector file they do "
                        f"not hold on this node: is {sid} there (`lotus-miner storage find`, Curio's web UI), and is "
                        "the URL the node holding it?")
    if status in (404, 405):
        raise LiveError(f"{where}: HTTP {status}: not a Lotus /remote endpoint; give the miner's, worker's or Curio "
                        "node's API address (http://HOST:PORT/remote)")
    raise LiveError(f"{where}: unexpected HTTP {status}{': ' + body if body else ''}")


def sector_label(size: int) -> str:
    return format_size(size).replace(" ", "")


def cache_cap(size: int, handoff: str) -> int:
    """The most a sector's cache can hold at ``handoff``: after PC1 the source may already hold PC2's trees too
    (every file of the pc2 stage); after Finalize, tree-r-last files, p_aux and t_aux. p_aux, t_aux and
    tree-r-last count at Lotus's caps (http_client), the other files at their sizes (workloads.sector)."""
    stage = "pc2" if handoff == "pc1-pc2" else "finalized"
    total = 0
    for f in sectors.shape(size, stage).cache_files:
        capped = "tree-r-last" in f.name or f.name in ("p_aux", "t_aux")
        total += max(f.size, http_client.cache_cap(f.name)) if capped else f.size
    return total


@dataclass(frozen=True)
class Plan:
    sector_id: str
    size: int       # the sealed file's length: the sector size
    cache_cap: int  # the most its cache may hold at the hand-off (cache_cap)

    @property
    def need(self) -> int:
        """The room one copy needs."""
        return self.size + self.cache_cap


def _prepare(ep, creds, handoff, sector_ids, dest: Path, keep: bool, say) -> list[Plan]:
    if handoff not in HANDOFFS:
        raise LiveError(f"hand-off {handoff!r}: a live run measures {' or '.join(HANDOFFS)} (c1-c2 moves no files)")
    bad = [s for s in sector_ids if not SECTOR_ID.match(s)]
    if bad or not sector_ids:
        raise LiveError(f"sector {bad[0] if bad else '(none)'}: give Lotus's file name, s-t0<miner>-<number> "
                        "(e.g. s-t01000-5)")
    if len(set(sector_ids)) != len(sector_ids):
        raise LiveError("a sector is named twice")
    if (dest / STORAGE_MARKER).exists():
        raise LiveError(f"{dest} is a Lotus or Curio storage path (it holds {STORAGE_MARKER}): give a scratch "
                        "directory of its own")
    for sid in sector_ids:
        for t in ("sealed", "cache"):
            if (dest / t / sid).exists() or (dest / t / "fetching" / sid).exists():
                raise LiveError(f"{dest / t / sid} already exists: rdmabench writes only where nothing is and "
                                "deletes only what it wrote; remove it or choose another --dest")
    plans = []
    for sid in sector_ids:
        size = probe_size(ep, creds, sid)
        if size not in sectors.SECTOR_SIZES:
            raise LiveError(f"sealed/{sid} at {ep.source} is {size:,} bytes, not a sector size Lotus seals ("
                            + ", ".join(map(sector_label, sectors.SECTOR_SIZES)) + "): a sealed file's length is "
                            "its sector size")
        plans.append(Plan(sid, size, cache_cap(size, handoff)))
        say(f"{sid}: {sector_label(size)} sector at {ep.source}")
    dest.mkdir(parents=True, exist_ok=True)
    need = sum(p.need for p in plans) if keep else max(p.need for p in plans)
    integrity.check_free_space(dest, need)
    return plans


def _fetch_sector(ep, creds, plan: Plan, handoff: str, dest: Path) -> list[dict]:
    """The two GETs of one hand-off, each timed as the runner times a move; the records, with ``seconds``."""
    records = []
    for lotus_type in ("sealed", "cache"):
        cap = plan.size if lotus_type == "sealed" else plan.cache_cap

        def guard(got: int, cap=cap, lotus_type=lotus_type) -> None:
            if got > cap:
                raise LiveError(f"{lotus_type}/{plan.sector_id} passed {got:,} bytes, more than a "
                                f"{sector_label(plan.size)} sector's {lotus_type} holds at {handoff} ({cap:,}): "
                                + ("the sector is not finalized at the source; measure it with --handoff pc1-pc2, "
                                   "or after Finalize" if handoff == "finalize" else "stopped"))

        t0 = time.perf_counter()
        rec = http_client.fetch(ep.base, creds.token, lotus_type, plan.sector_id, dest, progress=guard,
                                transport="http", need=cap)
        records.append({**asdict(rec), "seconds": time.perf_counter() - t0})
    names = sorted(p.name for p in (dest / "cache" / plan.sector_id).iterdir())
    if handoff == "pc1-pc2" and not any(n.startswith("sc-02-data-layer-") for n in names):
        raise LiveError(f"cache/{plan.sector_id} holds no layers ({', '.join(names) or 'nothing'}): the sector is "
                        "past Finalize at the source; measure it with --handoff finalize")
    unfinalized = [n for n in names if re.match(r"sc-02-data-(layer|tree-c|tree-d)", n)]
    if handoff == "finalize" and unfinalized:
        raise LiveError(f"cache/{plan.sector_id} holds {unfinalized[0]}: the sector is not finalized at the source "
                        "(Finalize keeps only tree-r-last, p_aux and t_aux); measure it with --handoff pc1-pc2, "
                        "or after Finalize")
    records[-1]["extra"]["files"] = names
    return records


def _remove(dest: Path, sid: str) -> None:
    for t in ("sealed", "cache"):
        integrity._remove(dest / t / sid)
        for d in (dest / t / "fetching", dest / t):
            try:
                d.rmdir()  # only when empty: what was there before is left alone
            except OSError:
                pass


def _row(kind, ep, handoff, plan: Plan, rep: int, records: list[dict], cpu: dict, dest: Path) -> dict:
    moved = sum(r["bytes"] for r in records)
    seconds = sum(r["seconds"] for r in records)
    files = records[-1]["extra"].get("files", [])
    return make_row(
        {"handoff": handoff, "transport": "http", "sector": sector_label(plan.size), "variant": f"live {kind}"},
        "throughput_MiBps", throughput_mibps(moved, seconds), repetition=rep, bytes=moved, seconds=seconds,
        cpu={"client": cpu, "server": None,
             "roles": {"client": f"{socket.gethostname()} (receiving)",
                       "server": f"the {kind} node at {ep.source}: not ours to meter"}},
        detail={"live": True, "kind": kind, "source": ep.source, "destination": socket.gethostname(),
                "scratch": str(dest), "sector_id": plan.sector_id, "sector_size": plan.size, "scale": "1",
                "files": 1 + len(files), "file_names": [f"sealed/{plan.sector_id}"] + [f"cache/{plan.sector_id}/{n}"
                                                                                      for n in files],
                "protocol": "lotus", "chunk": http_client.BUFFER, "streams": 1, "parallel": 1,
                "verified": False,
                "verification": "none compared: a live source offers no digest (Lotus's fetch has no checksum); what "
                                "arrived was hashed as it arrived (XXH3-128, as rdmabench's own http rows are) and "
                                "its digests are recorded",
                "digests": {r["item"]: r["digest"] for r in records},
                "cold": None, "source_cache": "unknown: the source's page cache is its own",
                "active_end": "receiver", "items": records})


def run(url: str | None, creds: Credentials, handoff: str, sector_ids: list[str], dest: Path | str, *,
        kind: str = "lotus", repetitions: int = 3, keep: bool = False,
        say: Callable[[str], None] = lambda msg: None) -> Result:
    """Fetch each sector ``repetitions`` times from the live endpoint at ``url``; the result (not yet saved)."""
    if kind not in KINDS:
        raise LiveError(f"kind {kind!r}: one of {', '.join(KINDS)}")
    try:
        ep = Endpoint.parse(url)
        dest = Path(dest).absolute()
        plans = _prepare(ep, creds, handoff, list(sector_ids), dest, keep, say)
        rows = []
        for rep in range(repetitions):
            for plan in plans:
                try:
                    meter = CpuMeter()
                    records = _fetch_sector(ep, creds, plan, handoff, dest)
                    row = _row(kind, ep, handoff, plan, rep, records, meter.stop(sum(r["bytes"] for r in records)),
                               dest)
                finally:
                    if not (keep and rep == repetitions - 1):
                        _remove(dest, plan.sector_id)
                rows.append(row)
                say(f"{handoff} {row['measured']['sector']} {plan.sector_id} #{rep + 1}: {row['bytes']:,} B in "
                    f"{row['seconds']:.3f} s, {row['value']:.1f} MiB/s, "
                    f"{row['cpu']['per_gb']['client_process']:.3f} CPU-s/GB here" if row["bytes"] else "nothing moved")
    except RdmabenchError as err:
        raise type(err)(creds.scrub(str(err))) from None
    except OSError as err:  # the scratch directory: not writable, gone, ...
        raise LiveError(creds.scrub(f"{err.filename or dest}: {err.strerror or err}")) from None
    options = {"live": True, "kind": kind, "source": ep.source, "handoff": handoff, "sectors": list(sector_ids),
               "repetitions": repetitions, "keep": keep, "scratch": str(dest), "token": creds.origin}
    return Result(kind="transfer", context=context.collect(), options=options, rows=rows)
