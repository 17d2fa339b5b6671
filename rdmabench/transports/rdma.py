"""The ``rdma-write`` (push) and ``rdma-read`` (pull) transports: files and cache directories moved
disk to disk through a bounded ring of registered buffers, on the native engine.

Two connections join the ends:
- control: one rdmabench.wire channel to the passive end (``PassiveEnd.info`` = {"host", "port",
  "service"}): "open" (the ring's shape, the verification and I/O mode, and each side's QP info, i.e.
  the out-of-band exchange that connects the endpoints), then per item its file names and sizes, the
  source's digests once the bytes have passed, and the receiver's verdict.
- data: ``streams`` RC QPs (``rdmabench._native.Endpoint``) whose registered memory is ``chunk`` x
  ``inflight`` x ``streams`` bytes on each end, whatever the file size. native/filexfer.c moves an
  item's files in one call, ``parallel`` files at once, with the GIL released: the loop that talks to
  the wire never waits on the disk; an I/O thread (native/pipeline.c) preads or pwrites the chunks
  and digests them as they pass.

Verification in the stream: each end digests every file as its bytes pass (the source as it reads
them, the receiver from its landing buffer before it writes them), with integrity.py's definitions
(XXH3-128 of a file; a directory composed from its files'), so nothing is read twice inside the timed
transfer. The receiver compares its digests with the source's, and with the item's expected digest
when it has one (the generator's); ``verify = "reread"`` also re-reads every landed file from the disk
after fsync, with its cached pages dropped. Only a verified item is renamed into ``<root>/<type>/<id>``
(integrity.atomic_destination); anything else leaves nothing there.

rdma-write: the passive end is the destination (``start_passive`` on the host that receives;
``capabilities.active_side`` "source"); it answers the verdict on the control connection before the
source's ``move`` returns: the record's ``verified`` is the receiver's. A blob (the C1 output) is
received into memory. rdma-read: the passive end is the source; the destination drives, verifies and
renames itself. A cache directory is its top-level files in name order, into a temporary directory
renamed when every file is in.

A failure mid-transfer (either end) sends ABORT on the QP, the other end's loop stops at once, the
temporary is removed, the session is closed (the next ``move`` opens a new one); sources are only
ever read.

The passive end lives in rdma_server.py (`rdmabench serve` offers one per mode, services "rdma-write"
and "rdma-read"; it moves only what is already in its root); what both ends share is in rdma_common.py.
Every control connection starts with the shared-secret handshake (rdmabench.auth).
Options (``ctx.options``, the scenario's [transfer] table): device, gid_index (default: the only device
and its recommended GID), chunk (1 MiB), inflight (16), streams (1), parallel (1), verify ("stream"),
direct (false), timeout_ms (no progress for that long fails; 30000). Test hooks: abort_after,
passive_abort_after, corrupt_at.
"""

from __future__ import annotations

import os

from .. import confine, integrity
from ..errors import RdmabenchError
from ..wire import Channel
from ..workloads.item import Item
from .base import Capabilities, Context, PassiveEnd, TransferRecord, Transport, TransportError, register
from .rdma_common import (CHUNK, INFLIGHT, MAX_FILES, PARALLEL, REPLY_WAIT_S, STREAMS, TIMEOUT_MS, close_all,
                          default_device, fx, item_digest, open_endpoint, open_files, reread)
from .rdma_server import RdmaServer

__all__ = ["RdmaWrite", "RdmaRead", "RdmaServer", "default_device"]


# ---- the active end ------------------------------------------------------------------------------

class _RdmaTransport(Transport):
    mode = ""

    def __init__(self):
        self.ctx: Context | None = None
        self._server: RdmaServer | None = None
        self._peer: tuple[str, int] | None = None
        self.wire: Channel | None = None
        self.ep = None

    @classmethod
    def start_passive(cls, ctx: Context, kind: str) -> PassiveEnd:
        root = ctx.work_root if cls.mode == "write" else ctx.storage_root
        server = RdmaServer(root, cls.mode, ctx.options).listen(ctx.bind, ctx.port)
        return PassiveEnd(info=server.info, stop=server.stop)

    def prepare(self, ctx: Context) -> None:
        self.ctx = ctx
        o = ctx.options
        self.chunk, self.inflight = int(o.get("chunk", CHUNK)), int(o.get("inflight", INFLIGHT))
        self.streams, self.parallel = int(o.get("streams", STREAMS)), int(o.get("parallel", PARALLEL))
        self.verify, self.direct = o.get("verify", "stream"), bool(o.get("direct", False))
        if self.verify not in ("stream", "reread"):
            raise TransportError(f"rdma-{self.mode}: verify {self.verify!r} is not stream or reread")
        self.timeout_ms = int(o.get("timeout_ms", TIMEOUT_MS))
        self.abort_after = int(o.get("abort_after", -1))  # test hook: this end fails after N chunks
        self.corrupt_at = int(o.get("corrupt_at", -1))  # test hook: the source flips a byte of chunk N on the wire
        if ctx.peer_info:
            self._peer = (ctx.peer_info["host"], int(ctx.peer_info["port"]))
        elif ctx.peer:
            self._peer = (ctx.peer, int(o.get("port", ctx.port)))
        else:
            self._server = RdmaServer(ctx.work_root if self.mode == "write" else ctx.storage_root,
                                      self.mode, o).listen(ctx.bind, 0)
            self._peer = (self._server.info["host"], self._server.info["port"])
        self._connect()

    def _connect(self) -> None:
        self.wire = Channel.connect(*self._peer, service=f"rdma-{self.mode}", timeout=self.timeout_ms / 1000)
        try:
            self.ep = open_endpoint(self.ctx.options, self.chunk, self.inflight, self.streams)
            self.wire.send("open", chunk=self.chunk, inflight=self.inflight, streams=self.streams,
                           verify=self.verify, direct=self.direct, qp=self.ep.local_info())
            reply = self.wire.recv(REPLY_WAIT_S)
            if not reply.get("ok"):
                raise TransportError(f"rdma-{self.mode}: {reply.get('error')}")
            self.ep.connect(reply["qp"])
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        if self.ep is not None:
            self.ep.close()
        if self.wire is not None:
            self.wire.close()
        self.ep = self.wire = None

    def _session(self):
        if self.wire is None:
            self._connect()
        return self.wire, self.ep

    @property
    def registered_bytes(self) -> int:
        return self.ep.registered_bytes if self.ep is not None else 0

    def _failed(self, item: Item, exc: BaseException) -> TransportError:
        """A chunk loop failed: collect the passive end's reason if it sent one, end the session."""
        reason = ""
        try:
            reply = self.wire.recv(2)
            if not reply.get("ok"):
                reason = f"; {reply.get('error')}"
        except Exception:
            pass
        self._drop()
        return TransportError(f"rdma-{self.mode}: {item.label} failed: {exc}{reason}")

    def _record(self, item: Item, verified: bool, digest: str | None, result: dict, **extra) -> TransferRecord:
        return TransferRecord(transport=self.name, item=item.label, bytes=item.size,
                              verified=verified, digest=digest, wire_bytes=item.size,
                              extra={"chunk": self.chunk, "inflight": self.inflight, "streams": self.streams,
                                     "parallel": self.parallel, "direct": self.direct,
                                     "verification": "stream+reread" if self.verify == "reread" else "stream",
                                     "cold": bool(self.ctx.options.get("cold", False)),
                                     "registered_bytes": self.registered_bytes,
                                     "io_busy_s": result.get("io_ns", 0) / 1e9,
                                     "io_wait_s": result.get("io_wait_ns", 0) / 1e9, **extra})

    def teardown(self) -> None:
        if self.wire is not None:
            try:
                self.wire.send("bye")
            except (OSError, RdmabenchError):
                pass
        self._drop()
        if self._server is not None:
            self.last_passive = self._server.stop()
        self._server = None


@register
class RdmaWrite(_RdmaTransport):
    """Push: the source RDMA WRITEs chunks into the destination's ring; the destination verifies."""

    name = "rdma-write"
    mode = "write"
    capabilities = Capabilities(kinds=frozenset({"file", "dir", "blob"}),
                                source_active=frozenset({"file", "dir", "blob"}), needs_device=True)

    def move(self, item: Item) -> TransferRecord:
        if item.kind == "blob":
            if item.data is None:
                raise TransportError(f"rdma-write: blob {item.label} has no data")
            files, paths = [(item.sector_id, len(item.data))], []
        elif item.kind == "dir":
            files = integrity.dir_entries(item.source)
            paths = [item.source / n for n, _ in files]
        else:
            files, paths = [(item.sector_id, os.stat(item.source).st_size)], [item.source]
        if len(files) > MAX_FILES:
            raise TransportError(f"rdma-write: {item.label} has {len(files)} files; at most {MAX_FILES} move as one item")
        wire, ep = self._session()
        fds = open_files(paths, write=False, direct=self.direct)
        try:
            reply = wire.request("put", REPLY_WAIT_S, kind=item.kind, lotus_type=item.lotus_type, id=item.sector_id,
                                 size=sum(s for _, s in files), digest=item.digest,
                                 files=[[n, s, None] for n, s in files], parallel=self.parallel)
            if not reply.get("ok"):
                raise TransportError(f"rdma-write: the destination refused {item.label}: "
                                     f"{reply.get('error')}")
            io = [(item.data, len(item.data))] if item.kind == "blob" else list(zip(fds, (s for _, s in files)))
            try:
                result = fx("fx_push", ep, io, self.timeout_ms, self.parallel, self.abort_after, self.corrupt_at)
            except (OSError, RdmabenchError) as exc:
                raise self._failed(item, exc) from exc
            wire.send("sent", digests=result["digests"])
            verdict = wire.recv(REPLY_WAIT_S)
        finally:
            close_all(fds)
        if not verdict.get("ok"):
            self._drop()
            raise TransportError(f"rdma-write: {item.label}: {verdict.get('error')}")
        sent = item_digest(item.kind, files, result["digests"])
        verified = bool(verdict["verified"]) and verdict.get("digest") == sent \
            and (item.digest is None or sent == item.digest)
        return self._record(item, verified, verdict.get("digest"), result)


@register
class RdmaRead(_RdmaTransport):
    """Pull: the destination RDMA READs chunks the source staged in its ring, then verifies."""

    name = "rdma-read"
    mode = "read"
    capabilities = Capabilities(kinds=frozenset({"file", "dir"}), needs_device=True)

    def move(self, item: Item) -> TransferRecord:
        if item.destination is None or item.kind not in ("file", "dir"):
            raise TransportError(f"rdma-read: {item.label} needs a file or directory "
                                 "destination")
        integrity.check_free_space(item.destination.parent, item.size)
        wire, ep = self._session()
        listing = wire.request("get", REPLY_WAIT_S, lotus_type=item.lotus_type, id=item.sector_id,
                               parallel=self.parallel)
        if not listing.get("ok"):
            raise TransportError(f"rdma-read: the source refused {item.label}: "
                                 f"{listing.get('error')}")
        files = [(confine.file_name(n, "files"), int(s)) for n, s in listing["files"]]
        if listing["kind"] != item.kind:
            self._drop()
            raise TransportError(f"rdma-read: {item.label} is a {listing['kind']} "
                                 f"at the source, not a {item.kind}")
        integrity.check_free_space(item.destination.parent, sum(s for _, s in files))
        verified, got, result = False, None, {}
        try:
            with integrity.atomic_destination(item.destination) as d:
                if item.kind == "dir":
                    d.path.mkdir()
                paths = [d.path / n for n, _ in files] if item.kind == "dir" else [d.path]
                fds = open_files(paths, write=True, direct=self.direct)
                try:
                    result = fx("fx_pull", ep, list(zip(fds, (s for _, s in files))), self.timeout_ms,
                                self.parallel, self.abort_after)
                except (OSError, RdmabenchError) as exc:
                    raise self._failed(item, exc) from exc
                finally:
                    close_all(fds)
                sent = wire.recv(REPLY_WAIT_S, "sent")["digests"]
                d.digest = got = item_digest(item.kind, files, result["digests"])
                check = reread(paths) if self.verify == "reread" else result["digests"]
                if check != sent or got != item_digest(item.kind, files, sent) \
                        or (item.digest is not None and got != item.digest):
                    raise integrity.IntegrityError(f"{item.label}: what landed does not match what the source sent")
            verified = True
        except integrity.IntegrityError:
            verified = False
        if self.wire is not None:
            self.wire.send("verdict", verified=verified, digest=got)
        return self._record(item, verified, got, result)
