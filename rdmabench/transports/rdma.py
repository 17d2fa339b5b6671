"""The ``rdma-write`` (push) and ``rdma-read`` (pull) transports: files and cache directories moved
disk to disk through a bounded ring of registered buffers, on the native engine.

Two connections join the ends:
- control: one rdmabench.wire channel to the passive end (``PassiveEnd.info`` = {"host", "port",
  "service"}): "open" (chunk size, chunks in flight, and each side's QP info, i.e. the out-of-band
  exchange that connects the endpoints), then per item its file names, sizes and digests, and the
  receiver's verdict.
- data: one RC QP (``rdmabench._native.Endpoint``, qps=1) whose registered memory is ``chunk`` x
  ``inflight`` bytes (options ``chunk``, default 1 MiB, and ``inflight``, default 8) on each end,
  whatever the file size. The chunk loops run in C with the GIL released (native/filexfer.c):
  push = pread, RDMA WRITE_WITH_IMM into the receiver's slot, pwrite, credit back; pull = request,
  pread into a slot, "ready", RDMA READ, pwrite, next request.

rdma-write: the passive end is the destination (``start_passive`` on the host that receives;
``capabilities.active_side`` "source"). It writes under a temporary name (integrity.atomic_destination),
digests what it wrote, renames only a verified item into ``<root>/<type>/<id>``, and answers the verdict on
the control connection before the source's ``move`` returns: the record's ``verified`` is the
receiver's. A blob (the C1 output) is received into memory and its XXH3-128 checked.
rdma-read: the passive end is the source; the destination drives, verifies and renames itself.
A cache directory is its top-level files in name order, into a temporary directory renamed when
every file is in.

A failure mid-transfer (either end) sends ABORT on the QP, the other end's loop stops at once, the
temporary is removed, the session is closed (the next ``move`` opens a new one); sources are only
ever read.

The passive end lives in rdma_server.py (`rdmabench serve` offers one per mode, services "rdma-write"
and "rdma-read"; it moves only what is already in its root); what both ends share is in rdma_common.py. Every control connection starts with the
shared-secret handshake (rdmabench.auth).
Options (``ctx.options``): device, gid_index (default: the only device and
its recommended GID), chunk, inflight, timeout_ms (no progress for that long fails; 30000).
"""

from __future__ import annotations

import os

from .. import confine, integrity
from ..errors import RdmabenchError
from ..wire import Channel
from ..workloads.item import Item
from .base import Capabilities, Context, PassiveEnd, TransferRecord, Transport, TransportError, register
from .rdma_common import CHUNK, INFLIGHT, REPLY_WAIT_S, TIMEOUT_MS, blob_digest, default_device, fx, open_endpoint
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
        self.timeout_ms = int(o.get("timeout_ms", TIMEOUT_MS))
        self.abort_after = int(o.get("abort_after", -1))  # test hook: this end fails after N chunks
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
            self.ep = open_endpoint(self.ctx.options, self.chunk, self.inflight)
            self.wire.send("open", chunk=self.chunk, inflight=self.inflight, qp=self.ep.local_info())
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

    def _record(self, item: Item, verified: bool, digest: str | None, **extra) -> TransferRecord:
        return TransferRecord(transport=self.name, item=item.label, bytes=item.size,
                              verified=verified, digest=digest, wire_bytes=item.size,
                              extra={"chunk": self.chunk, "inflight": self.inflight,
                                     "registered_bytes": self.registered_bytes, **extra})

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
        fds: list[int] = []
        if item.kind == "blob":
            if item.data is None:
                raise TransportError(f"rdma-write: blob {item.label} has no data")
            files = [[item.sector_id, len(item.data), None]]
            expected = item.digest or blob_digest(item.data)
        elif item.kind == "dir":
            files = [[n, s, None] for n, s in integrity.dir_entries(item.source)]
            expected = item.digest or integrity.digest_dir(item.source)
        else:
            files = [[item.sector_id, os.stat(item.source).st_size, None]]
            expected = item.digest or integrity.digest_file(item.source)
        wire, ep = self._session()
        try:
            if item.kind != "blob":
                fds = [os.open(item.source / n if item.kind == "dir" else item.source, os.O_RDONLY)
                       for n, _, _ in files]
            reply = wire.request("put", REPLY_WAIT_S, kind=item.kind, lotus_type=item.lotus_type, id=item.sector_id,
                                 size=sum(f[1] for f in files), digest=expected, files=files)
            if not reply.get("ok"):
                raise TransportError(f"rdma-write: the destination refused {item.label}: "
                                     f"{reply.get('error')}")
            io_ns = 0
            for i, (_, size, _) in enumerate(files):
                try:
                    src = item.data if item.kind == "blob" else fds[i]
                    io_ns += fx("fx_push", ep, src, size, self.timeout_ms, self.abort_after)["io_ns"]
                except (OSError, RdmabenchError) as exc:
                    raise self._failed(item, exc) from exc
            verdict = wire.recv(REPLY_WAIT_S)
        finally:
            for fd in fds:
                os.close(fd)
        if not verdict.get("ok"):
            self._drop()
            raise TransportError(f"rdma-write: {item.label}: {verdict.get('error')}")
        return self._record(item, bool(verdict["verified"]) and verdict.get("digest") == expected,
                            verdict.get("digest"), source_io_s=io_ns / 1e9)


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
        listing = wire.request("get", REPLY_WAIT_S, lotus_type=item.lotus_type, id=item.sector_id)
        if not listing.get("ok"):
            raise TransportError(f"rdma-read: the source refused {item.label}: "
                                 f"{listing.get('error')}")
        files = [(confine.file_name(n, "files"), int(s), d) for n, s, d in listing["files"]]
        if listing["kind"] != item.kind:
            self._drop()
            raise TransportError(f"rdma-read: {item.label} is a {listing['kind']} "
                                 f"at the source, not a {item.kind}")
        expected = item.digest or (files[0][2] if item.kind == "file"
                                   else integrity.combine([(n, s, d) for n, s, d in files]))
        integrity.check_free_space(item.destination.parent, sum(s for _, s, _ in files))
        verified, got, io_ns = False, None, 0
        try:
            with integrity.atomic_destination(item.destination, expected=expected) as d:
                if item.kind == "dir":
                    d.path.mkdir()
                for fname, fsize, _ in files:
                    path = d.path / fname if item.kind == "dir" else d.path
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    try:
                        io_ns += fx("fx_pull", ep, fd, fsize, self.timeout_ms, self.abort_after)["io_ns"]
                    except (OSError, RdmabenchError) as exc:
                        raise self._failed(item, exc) from exc
                    finally:
                        os.close(fd)
                d.digest = got = integrity.digest(d.path)
            verified = d.verified
        except integrity.IntegrityError:
            verified = False
        if self.wire is not None:
            self.wire.send("verdict", verified=verified, digest=got)
        return self._record(item, verified, got, dest_io_s=io_ns / 1e9)
