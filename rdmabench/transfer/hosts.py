"""A host's part in a transfer, the same whether it is this one or the far one.

Items travel between hosts as descriptions ({kind, lotus_type, sector_id, size, digest,
sector_size}): each host resolves them against its own roots (files come from
<storage_root>/<type>/<id>, land in <work_root>/<type>/<id>), and a blob (the C1 output)
is regenerated deterministically by whichever host sends it.

A description may come from the far host, so it is checked field by field (``ITEM``) and its
paths confined under this host's roots (``confine``). ``cleanup`` deletes only what ``expect``
saw absent before the transfer: a host never removes anything that was there before this run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import confine, integrity, transports
from ..cpu import CpuMeter
from ..errors import RdmabenchError
from ..transports.base import Context
from ..wirecheck import Bool, Int, Opt, Str
from ..workloads import c1, sector
from ..workloads.item import KINDS, Item
from .measure import timed_move

# One item as it travels: what LocalHost.item() accepts.
ITEM = {"kind": Str(choices=KINDS), "lotus_type": Str(choices=confine.LOTUS_TYPES), "sector_id": Str(max_len=64),
        "size": Int(0, 1 << 50), "digest": Opt(Str(max_len=128)), "sector_size": Opt(Int(1, 1 << 40)),
        "files": Opt(Int(0, 1 << 20))}
# The tuning knobs a host takes from the far one; everything else (its device, roots, exports) is its own.
WIRE_OPTIONS = {"chunk": Opt(Int(4096, 64 << 20)), "inflight": Opt(Int(1, 1024)), "streams": Opt(Int(1, 64)),
                "parallel": Opt(Int(1, 64)), "verify": Opt(Str(choices=("stream", "reread"))), "direct": Opt(Bool()),
                "timeout_ms": Opt(Int(100, 24 * 3600 * 1000)), "cold": Opt(Bool()), "bufsize": Opt(Int(4096, 64 << 20)),
                "abort_after": Opt(Int(-1, 1 << 40)), "passive_abort_after": Opt(Int(-1, 1 << 40)),
                "corrupt_at": Opt(Int(-1, 1 << 40)), "passive_corrupt_at": Opt(Int(-1, 1 << 40))}


def wire_options(options: dict | None) -> dict:
    """The part of ``options`` that may be sent to the far host (see WIRE_OPTIONS)."""
    return {k: v for k, v in (options or {}).items() if k in WIRE_OPTIONS and v is not None}


def describe(item: Item) -> dict:
    files = sum(1 for p in item.source.iterdir() if p.is_file()) if item.kind == "dir" else 1
    return {"kind": item.kind, "lotus_type": item.lotus_type, "sector_id": item.sector_id, "size": item.size,
            "digest": item.digest, "sector_size": item.sector_size, "files": files}


class LocalHost:
    def __init__(self, name: str, storage_root: Path, work_root: Path, bind: str, token: str,
                 options: dict | None = None):
        self.name = name
        self.storage_root, self.work_root = Path(storage_root), Path(work_root)
        for root in (self.storage_root, self.work_root):
            root.mkdir(parents=True, exist_ok=True)
        self.bind, self.token = bind, token
        self.options = dict(options or {})
        self._passive = None
        self._meter = None
        self._ours: set[Path] = set()  # destinations absent when expect() was told of them: ours to remove

    # -- the workload
    def generate(self, sector_size: int, stage: str | None, scale: str, miner: int, number: int) -> list[dict]:
        if stage is None:
            return [describe(c1.item(sector_size, miner, number))]
        shape = sector.shape(sector_size, stage, miner=miner, number=number, scale=sector.parse_scale(scale))
        gen = sector.generate(shape, self.storage_root)
        return [describe(i) for i in sector.items(gen, self.work_root)]

    def item(self, d: dict) -> Item:
        if d["kind"] == "blob":
            miner, number = confine.sector_numbers(d["sector_id"])
            return c1.item(d["sector_size"], miner, number)  # a size Lotus does not seal: WorkloadError
        return Item(kind=d["kind"], lotus_type=d["lotus_type"], sector_id=d["sector_id"],
                    source=confine.item_path(self.storage_root, d["lotus_type"], d["sector_id"]),
                    destination=self._destination(d), size=d["size"],
                    digest=d.get("digest"), sector_size=d.get("sector_size"))

    def _destination(self, d: dict) -> Path:
        return confine.item_path(self.work_root, d["lotus_type"], d["sector_id"])

    def context(self, peer_info: dict | None = None, options: dict | None = None) -> Context:
        return Context(storage_root=self.storage_root, work_root=self.work_root, token=self.token, bind=self.bind,
                       port=0, peer=None, options={**self.options, **(options or {})}, peer_info=peer_info)

    # -- the two ends
    def start_passive(self, transport: str, kind: str, options: dict | None = None) -> dict | None:
        end = transports.lookup(transport).start_passive(self.context(options=options), kind)
        self._passive = end
        return end.info if end else None

    def stop_passive(self) -> dict:
        end, self._passive = self._passive, None
        return (end.stop() or {}) if end else {}

    def move(self, transport: str, descs: list[dict], peer_info: dict | None, options: dict | None = None) -> list[dict]:
        items = [self.item(d) for d in descs]  # a C1 output is built first: slow, and not part of the transfer
        t = transports.get(transport)
        t.prepare(self.context(peer_info, options))
        try:
            return [timed_move(t, item) for item in items]
        finally:
            t.teardown()

    # -- CPU over the measured move, at this end
    def meter_start(self) -> None:
        self._meter = CpuMeter()

    def meter_stop(self, nbytes: int) -> dict:
        meter, self._meter = self._meter, None
        return meter.stop(nbytes or None)

    def expect(self, descs: list[dict]) -> None:
        """Before a transfer lands here: note which destinations do not exist yet (only those may be cleaned)."""
        for d in descs:
            if d["kind"] != "blob":
                path = self._destination(d)
                if not path.exists() and not path.is_symlink():
                    self._ours.add(path)

    def drop_cache(self, descs: list[dict]) -> None:
        """``cold``: flush the items this host sends and drop their pages from the page cache, so the
        transfer reads them from the disk (before the clock starts; a blob lives in memory, untouched)."""
        for d in descs:
            if d["kind"] != "blob":
                integrity.drop_cached_pages(confine.item_path(self.storage_root, d["lotus_type"], d["sector_id"]))

    def cleanup(self, descs: list[dict]) -> None:
        """Remove what a transfer delivered here, so the next repetition moves it again. Only
        destinations that expect() saw absent are removed; anything else is refused, untouched."""
        paths = [self._destination(d) for d in descs if d["kind"] != "blob"]
        foreign = [p for p in paths if p not in self._ours and (p.exists() or p.is_symlink())]
        if foreign:
            raise RdmabenchError(f"cleanup: {foreign[0]} was not created by this run; it is left as it is")
        for path in paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            self._ours.discard(path)

    def close(self) -> None:
        if self._passive:
            self.stop_passive()


class RemoteHost:
    """The same operations, carried out by `rdmabench serve` on the other host."""

    def __init__(self, chan, token: str, name: str = "storage"):
        self.chan = chan
        self.token = token
        self.name = name

    def _call(self, op: str, timeout: float = 600, **args):
        self.chan.send("xfer", op=op, args=args, token=self.token)
        return self.chan.recv(timeout, "xfer_result")["value"]

    def generate(self, sector_size, stage, scale, miner, number):
        return self._call("generate", 1800, sector_size=sector_size, stage=stage, scale=scale, miner=miner,
                          number=number)

    def start_passive(self, transport, kind, options=None):
        return self._call("start_passive", transport=transport, kind=kind, options=wire_options(options))

    def stop_passive(self):
        return self._call("stop_passive")

    def move(self, transport, descs, peer_info, options=None):
        return self._call("move", 3600, transport=transport, descs=descs, peer_info=peer_info,
                          options=wire_options(options))

    def meter_start(self):
        return self._call("meter_start")

    def meter_stop(self, nbytes):
        return self._call("meter_stop", nbytes=nbytes)

    def expect(self, descs):
        return self._call("expect", descs=descs)

    def cleanup(self, descs):
        return self._call("cleanup", descs=descs)

    def drop_cache(self, descs):
        return self._call("drop_cache", descs=descs)

    def close(self):
        pass
