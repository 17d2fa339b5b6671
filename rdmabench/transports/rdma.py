"""The ``rdma-write`` (push) and ``rdma-read`` (pull) transports: files and cache directories moved
disk to disk through a bounded ring of registered buffers, on the native engine.

Two connections join the ends:
- control: one TCP connection to the passive end (``PassiveEnd.info`` = {"host", "port", "mode"}),
  newline-delimited JSON: the hello (chunk size, chunks in flight, and each side's QP info, i.e.
  the out-of-band exchange that connects the endpoints), then per item its file names, sizes and
  digests, and the receiver's verdict.
- data: one RC QP (``rdmabench._native.Endpoint``, qps=1) whose registered memory is ``chunk`` x
  ``inflight`` bytes (options ``chunk``, default 1 MiB, and ``inflight``, default 8) on each end,
  whatever the file size. The chunk loops run in C with the GIL released (native/filexfer.c):
  push = pread, RDMA WRITE_WITH_IMM into the receiver's slot, pwrite, credit back; pull = request,
  pread into a slot, "ready", RDMA READ, pwrite, next request.

rdma-write: the passive end is the destination (``start_passive`` on the host that receives;
``active_side`` "source"). It writes under a temporary name (integrity.atomic_destination), digests
what it wrote, renames only a verified item into ``<root>/<type>/<id>``, and answers the verdict on
the control connection before the source's ``move`` returns: the record's ``verified`` is the
receiver's. A blob (the C1 output) is received into memory and its XXH3-128 checked.
rdma-read: the passive end is the source; the destination drives, verifies and renames itself.
A cache directory is its top-level files in name order, into a temporary directory renamed when
every file is in.

A failure mid-transfer (either end) sends ABORT on the QP, the other end's loop stops at once, the
temporary is removed, the session is closed (the next ``move`` opens a new one); sources are only
ever read.

Two hosts: ``python -m rdmabench.transports.rdma serve --bind IP --root DIR --mode write|read
--port N`` runs a passive end until killed; in read mode it also answers a "generate" request
(a sector shape written with workloads.sector.generate into its root), so a pull needs nothing
prepared on that host. Options (``ctx.options``): device, gid_index (default: the only device and
its recommended GID), chunk, inflight, timeout_ms (no progress for that long fails; 30000).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import xxhash

from .. import devices, integrity
from ..engines import native as engine
from ..errors import RdmabenchError
from .base import (LOTUS_TYPES, Capabilities, Context, Item, PassiveEnd, TransferRecord, Transport,
                   TransportError, register)

__all__ = ["RdmaWrite", "RdmaRead", "RdmaServer", "serve", "default_device"]

CHUNK = 1 << 20
INFLIGHT = 8
TIMEOUT_MS = 30000
_ID = re.compile(r"^s-t0\d+-\d+$")
_MAX_REGISTERED = 1 << 30


def default_device(options: dict) -> tuple[str, int]:
    """(device, gid_index): the options', else the only RDMA device here and its recommended GID."""
    device, gid = options.get("device"), options.get("gid_index")
    if not device:
        names = devices.device_names()
        if len(names) != 1:
            raise TransportError(f"rdma: say which RDMA device to use (options 'device'); found: "
                                 f"{', '.join(names) or 'none'}")
        device = names[0]
    if gid is None:
        dev = devices.require(device)
        gid = next((p.recommended_gid_index for p in dev.ports if p.recommended_gid_index is not None), None)
        if gid is None:
            raise TransportError(f"rdma: {device} has no usable GID; give options 'gid_index'")
    return device, int(gid)


def _open_endpoint(options: dict, chunk: int, inflight: int) -> engine.Endpoint:
    if chunk <= 0 or inflight <= 0 or chunk * inflight > _MAX_REGISTERED:
        raise TransportError(f"rdma: chunk {chunk} x inflight {inflight} is not a usable ring")
    device, gid = default_device(options)
    try:
        return engine.open_endpoint(device=device, gid_index=gid, qps=1, size=chunk, slots=inflight,
                                    depth=2 * inflight + 8)
    except RdmabenchError as exc:
        raise TransportError(f"rdma: cannot open {device}: {exc}") from exc


def _fx(name: str, ep, io, size: int, timeout_ms: int, abort_after: int = -1) -> dict:
    from rdmabench import _native
    return getattr(_native, name)(ep.raw, io, size, timeout_ms, abort_after)


class _Wire:
    """Newline-delimited JSON over a TCP socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.f = sock.makefile("rwb")

    def send(self, obj: dict) -> None:
        self.f.write(json.dumps(obj).encode() + b"\n")
        self.f.flush()

    def recv(self) -> dict:
        line = self.f.readline()
        if not line:
            raise TransportError("rdma: the peer closed the control connection")
        return json.loads(line)

    def close(self) -> None:
        for c in (self.f, self.sock):
            try:
                c.close()
            except OSError:
                pass


def _safe_name(name: str) -> str:
    if not name or "/" in name or name in (".", "..") or name.startswith(".") or "\0" in name:
        raise TransportError(f"rdma: refusing file name {name!r}")
    return name


def _item_path(root: Path, lotus_type: str, sector_id: str) -> Path:
    if lotus_type not in LOTUS_TYPES or not _ID.match(sector_id):
        raise TransportError(f"rdma: bad item {lotus_type}/{sector_id}")
    return Path(root) / lotus_type / sector_id


def _blob_digest(data) -> str:
    return xxhash.xxh3_128(data).hexdigest()


# ---- the passive end -----------------------------------------------------------------------------

class RdmaServer:
    """A passive end: mode "write" receives into ``root``, mode "read" serves from ``root``."""

    def __init__(self, root: Path | str, bind: str, port: int, mode: str, options: dict | None = None):
        if mode not in ("write", "read"):
            raise TransportError(f"rdma: mode must be write or read, not {mode!r}")
        self.root, self.mode, self.options = Path(root), mode, dict(options or {})
        self.timeout_ms = int(self.options.get("timeout_ms", TIMEOUT_MS))
        self.abort_after = int(self.options.get("passive_abort_after", -1))  # test hook
        self.received: list[dict] = []
        self.served: list[dict] = []
        self.errors: list[str] = []
        self.blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sessions: list[threading.Thread] = []
        self._sock = socket.create_server((bind, port))
        self._sock.settimeout(0.2)
        self.info = {"host": bind, "port": self._sock.getsockname()[1], "mode": mode}
        self._thread = threading.Thread(target=self._accept, name="rdma-passive", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setblocking(True)
            t = threading.Thread(target=self._session, args=(conn,), daemon=True)
            self._sessions.append(t)
            t.start()

    def _session(self, conn: socket.socket) -> None:
        wire, ep = _Wire(conn), None
        try:
            hello = wire.recv()
            if hello.get("mode") != self.mode:
                wire.send({"ok": False, "error": f"this end serves rdma-{self.mode}, not {hello.get('mode')}"})
                return
            ep = _open_endpoint(self.options, int(hello["chunk"]), int(hello["inflight"]))
            wire.send({"ok": True, "qp": ep.local_info()})
            ep.connect(hello["qp"])
            while True:
                msg = wire.recv()
                op = msg.get("op")
                if op == "bye":
                    return
                if op == "put" and self.mode == "write":
                    self._receive(wire, ep, msg)
                elif op == "get" and self.mode == "read":
                    self._serve(wire, ep, msg)
                elif op == "generate" and self.mode == "read":
                    self._generate(wire, msg)
                else:
                    wire.send({"ok": False, "error": f"unknown request {op!r} for rdma-{self.mode}"})
        except Exception as exc:  # one session's failure never stops the server
            if not isinstance(exc, TransportError) or "closed the control" not in str(exc):
                with self._lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            if ep is not None:
                ep.close()
            wire.close()

    def _receive(self, wire: _Wire, ep, msg: dict) -> None:
        name = f"{msg['type']}/{msg['id']}"
        size = int(msg["size"])
        if msg["kind"] == "blob":
            buf = bytearray(size)
            wire.send({"ok": True})
            self._fx_or_fail(wire, "fx_recv", ep, buf, size)
            got = _blob_digest(buf)
            verified = msg.get("digest") is not None and got == msg["digest"]
            if verified:
                self.blobs[name] = bytes(buf)
            self._verdict(wire, name, size, verified, got)
            return
        try:
            final = _item_path(self.root, msg["type"], msg["id"])
            files = [(_safe_name(n), int(s)) for n, s, _ in msg["files"]]
            integrity.check_free_space(final.parent, size)
        except (RdmabenchError, OSError) as exc:
            wire.send({"ok": False, "error": str(exc)})
            return
        got, verified = None, False
        try:
            with integrity.atomic_destination(final, expected=msg.get("digest")) as d:
                if msg["kind"] == "dir":
                    d.path.mkdir()
                first = True
                for fname, fsize in files:
                    path = d.path / fname if msg["kind"] == "dir" else d.path
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    try:
                        if first:
                            wire.send({"ok": True})
                            first = False
                        self._fx_or_fail(wire, "fx_recv", ep, fd, fsize)
                    finally:
                        os.close(fd)
                if first:
                    wire.send({"ok": True})  # an empty directory
                d.digest = got = integrity.digest(d.path)
            verified = d.verified
        except integrity.IntegrityError:
            verified = False
        self._verdict(wire, name, size, verified, got)

    def _verdict(self, wire: _Wire, name: str, size: int, verified: bool, got: str | None) -> None:
        entry = {"item": name, "bytes": size, "verified": bool(verified), "digest": got}
        with self._lock:
            self.received.append(entry)
        wire.send({"ok": True, **entry})

    def _fx_or_fail(self, wire: _Wire, fn: str, ep, io, size: int) -> None:
        """Run one chunk loop; on failure tell the active end why and end the session."""
        try:
            _fx(fn, ep, io, size, self.timeout_ms, self.abort_after)
        except (OSError, RdmabenchError) as exc:
            try:
                wire.send({"ok": False, "fatal": True, "error": f"passive end: {exc}"})
            except OSError:
                pass
            raise

    def _serve(self, wire: _Wire, ep, msg: dict) -> None:
        try:
            path = _item_path(self.root, msg["type"], msg["id"])
            if path.is_dir():
                kind = "dir"
                files = [(n, s, path / n) for n, s in integrity.dir_entries(path)]
            elif path.is_file():
                kind, files = "file", [(path.name, path.stat().st_size, path)]
            else:
                raise TransportError(f"rdma: {msg['type']}/{msg['id']} does not exist on the source")
            listing = [[n, s, integrity.digest_file(p)] for n, s, p in files]
            fds = [os.open(p, os.O_RDONLY) for _, _, p in files]
        except (RdmabenchError, OSError) as exc:
            wire.send({"ok": False, "error": str(exc)})
            return
        try:
            wire.send({"ok": True, "kind": kind, "files": listing})
            for fd, (_, size, _) in zip(fds, files):
                self._fx_or_fail(wire, "fx_serve", ep, fd, size)
        finally:
            for fd in fds:
                os.close(fd)
        verdict = wire.recv()
        with self._lock:
            self.served.append({"item": f"{msg['type']}/{msg['id']}", "bytes": sum(s for _, s, _ in files),
                                "verified": bool(verdict.get("verified")), "digest": verdict.get("digest")})

    def _generate(self, wire: _Wire, msg: dict) -> None:
        from ..workloads import sector
        try:
            gen = sector.generate(sector.shape(msg["sector_size"], msg["stage"], scale=msg.get("scale", 1),
                                               miner=int(msg.get("miner", 1000)),
                                               number=int(msg.get("number", 1))), self.root)
        except (RdmabenchError, OSError, ValueError) as exc:
            wire.send({"ok": False, "error": str(exc)})
            return
        wire.send({"ok": True, "sector_id": gen.shape.sector_id, "sealed_digest": gen.sealed_digest,
                   "cache_digest": gen.cache_digest, "sealed_bytes": gen.shape.sealed_bytes,
                   "cache_bytes": gen.shape.cache_bytes})

    def stop(self) -> dict:
        self._stop.set()
        self._sock.close()
        self._thread.join(5)
        for t in self._sessions:
            t.join(max(5.0, self.timeout_ms / 1000 + 2))
        out = {"received": list(self.received)} if self.mode == "write" else {"served": list(self.served)}
        if self.errors:
            out["errors"] = list(self.errors)
        return out


def serve(root: Path | str, bind: str, port: int, mode: str, options: dict | None = None) -> RdmaServer:
    return RdmaServer(root, bind, port, mode, options)


# ---- the active end ------------------------------------------------------------------------------

class _RdmaTransport(Transport):
    mode = ""

    def __init__(self):
        self.ctx: Context | None = None
        self._server: RdmaServer | None = None
        self._peer: tuple[str, int] | None = None
        self.wire: _Wire | None = None
        self.ep = None

    @classmethod
    def start_passive(cls, ctx: Context, kind: str) -> PassiveEnd:
        root = ctx.work_root if cls.mode == "write" else ctx.storage_root
        server = RdmaServer(root, ctx.bind, ctx.port, cls.mode, ctx.options)
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
                                      ctx.bind, 0, self.mode, o)
            self._peer = (self._server.info["host"], self._server.info["port"])
        self._connect()

    def _connect(self) -> None:
        sock = socket.create_connection(self._peer, timeout=self.timeout_ms / 1000)
        sock.settimeout(None)
        self.wire = _Wire(sock)
        try:
            self.ep = _open_endpoint(self.ctx.options, self.chunk, self.inflight)
            self.wire.send({"op": "hello", "mode": self.mode, "chunk": self.chunk, "inflight": self.inflight,
                            "qp": self.ep.local_info()})
            reply = self.wire.recv()
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
            self.wire.sock.settimeout(2)
            reply = self.wire.recv()
            if not reply.get("ok"):
                reason = f"; {reply.get('error')}"
        except Exception:
            pass
        self._drop()
        return TransportError(f"rdma-{self.mode}: {item.lotus_type}/{item.sector_id} failed: {exc}{reason}")

    def _record(self, item: Item, seconds: float, verified: bool, digest: str | None, **extra) -> TransferRecord:
        return TransferRecord(transport=self.name, item=f"{item.lotus_type}/{item.sector_id}", bytes=item.size,
                              seconds=seconds, verified=verified, digest=digest, wire_bytes=item.size,
                              extra={"chunk": self.chunk, "inflight": self.inflight,
                                     "registered_bytes": self.registered_bytes, **extra})

    def teardown(self) -> None:
        if self.wire is not None:
            try:
                self.wire.send({"op": "bye"})
            except OSError:
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
    capabilities = Capabilities(kinds=frozenset({"file", "dir", "blob"}), push=True, pull=False)

    @classmethod
    def active_side(cls, kind: str) -> str:
        return "source"

    def move(self, item: Item) -> TransferRecord:
        fds: list[int] = []
        if item.kind == "blob":
            if item.data is None:
                raise TransportError(f"rdma-write: blob {item.lotus_type}/{item.sector_id} has no data")
            files = [[item.sector_id, len(item.data), None]]
            expected = item.digest or _blob_digest(item.data)
        elif item.kind == "dir":
            files = [[n, s, None] for n, s in integrity.dir_entries(item.source)]
            expected = item.digest or integrity.digest_dir(item.source)
        else:
            files = [[item.sector_id, os.stat(item.source).st_size, None]]
            expected = item.digest or integrity.digest_file(item.source)
        wire, ep = self._session()
        t0 = time.perf_counter()
        try:
            if item.kind != "blob":
                fds = [os.open(item.source / n if item.kind == "dir" else item.source, os.O_RDONLY)
                       for n, _, _ in files]
            wire.send({"op": "put", "kind": item.kind, "type": item.lotus_type, "id": item.sector_id,
                       "size": sum(f[1] for f in files), "digest": expected, "files": files})
            reply = wire.recv()
            if not reply.get("ok"):
                raise TransportError(f"rdma-write: the destination refused {item.lotus_type}/{item.sector_id}: "
                                     f"{reply.get('error')}")
            io_ns = 0
            for i, (_, size, _) in enumerate(files):
                try:
                    src = item.data if item.kind == "blob" else fds[i]
                    io_ns += _fx("fx_push", ep, src, size, self.timeout_ms, self.abort_after)["io_ns"]
                except (OSError, RdmabenchError) as exc:
                    raise self._failed(item, exc) from exc
            verdict = wire.recv()
        finally:
            for fd in fds:
                os.close(fd)
        seconds = time.perf_counter() - t0
        if not verdict.get("ok"):
            self._drop()
            raise TransportError(f"rdma-write: {item.lotus_type}/{item.sector_id}: {verdict.get('error')}")
        return self._record(item, seconds, bool(verdict["verified"]) and verdict.get("digest") == expected,
                            verdict.get("digest"), source_io_s=io_ns / 1e9)


@register
class RdmaRead(_RdmaTransport):
    """Pull: the destination RDMA READs chunks the source staged in its ring, then verifies."""

    name = "rdma-read"
    mode = "read"
    capabilities = Capabilities(kinds=frozenset({"file", "dir"}), push=False, pull=True)

    def generate(self, sector_size: str | int, stage: str, scale="1", miner: int = 1000, number: int = 1) -> dict:
        """Ask the source end to write a sector shape into its root (workloads.sector.generate)."""
        wire, _ = self._session()
        wire.send({"op": "generate", "sector_size": sector_size, "stage": stage, "scale": str(scale),
                   "miner": miner, "number": number})
        reply = wire.recv()
        if not reply.get("ok"):
            raise TransportError(f"rdma-read: the source could not generate the sector: {reply.get('error')}")
        return reply

    def move(self, item: Item) -> TransferRecord:
        if item.destination is None or item.kind not in ("file", "dir"):
            raise TransportError(f"rdma-read: {item.lotus_type}/{item.sector_id} needs a file or directory "
                                 "destination")
        integrity.check_free_space(item.destination.parent, item.size)
        wire, ep = self._session()
        t0 = time.perf_counter()
        wire.send({"op": "get", "type": item.lotus_type, "id": item.sector_id})
        listing = wire.recv()
        if not listing.get("ok"):
            raise TransportError(f"rdma-read: the source refused {item.lotus_type}/{item.sector_id}: "
                                 f"{listing.get('error')}")
        files = [(_safe_name(n), int(s), d) for n, s, d in listing["files"]]
        if listing["kind"] != item.kind:
            self._drop()
            raise TransportError(f"rdma-read: {item.lotus_type}/{item.sector_id} is a {listing['kind']} "
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
                        io_ns += _fx("fx_pull", ep, fd, fsize, self.timeout_ms, self.abort_after)["io_ns"]
                    except (OSError, RdmabenchError) as exc:
                        raise self._failed(item, exc) from exc
                    finally:
                        os.close(fd)
                d.digest = got = integrity.digest(d.path)
            verified = d.verified
        except integrity.IntegrityError:
            verified = False
        seconds = time.perf_counter() - t0
        if self.wire is not None:
            self.wire.send({"op": "verdict", "verified": verified, "digest": got})
        return self._record(item, seconds, verified, got, dest_io_s=io_ns / 1e9)


# ---- the serve command ---------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rdmabench.transports.rdma")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run a passive end until killed")
    s.add_argument("--bind", required=True)
    s.add_argument("--port", type=int, default=7600)
    s.add_argument("--root", required=True, type=Path)
    s.add_argument("--mode", required=True, choices=("write", "read"))
    s.add_argument("--device")
    s.add_argument("--gid-index", type=int)
    s.add_argument("--timeout-ms", type=int, default=TIMEOUT_MS)
    args = ap.parse_args(argv)
    options = {"timeout_ms": args.timeout_ms}
    if args.device:
        options["device"] = args.device
    if args.gid_index is not None:
        options["gid_index"] = args.gid_index
    args.root.mkdir(parents=True, exist_ok=True)
    server = RdmaServer(args.root, args.bind, args.port, args.mode, options)
    print(f"rdma-{args.mode} passive end on {args.bind}:{server.info['port']}, root {args.root}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    print(json.dumps(server.stop()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
