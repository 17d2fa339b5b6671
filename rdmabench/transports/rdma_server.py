"""The rdma transports' passive end: mode "write" receives into its root, mode "read" serves from it.

Each control connection must first prove it holds the shared secret (rdmabench.auth); only then is
an endpoint opened. Every request is checked field by field (``wirecheck``) and every item path
confined under the root, symlinks included (``confine``). A bad request is answered with
``{"ok": false, "error": ...}`` and that session ends; the server goes on accepting.

Two hosts: ``python -m rdmabench.transports.rdma serve --bind IP --root DIR --mode write|read
--port N`` runs one until killed. It only moves what is in its root: what is there to move is the
runner's business (``transfer.hosts``: ``generate`` on the host that holds the data).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import psutil

from .. import auth, confine, integrity
from ..errors import RdmabenchError
from ..wirecheck import BadMessage, Bool, Dict, Int, ListOf, Opt, Str, fields
from ..workloads.item import KINDS
from .base import TransportError
from .rdma_common import TIMEOUT_MS, Wire, blob_digest, fx, open_endpoint

MAX_BLOB = 512 << 20  # a C1 output is ~40 MB; a blob is held in memory, so it is bounded
MAX_SESSIONS = 32


class FileEntry:
    """One file of a put: ``[name, size, digest-or-null]``."""

    def check(self, v, name):
        if not isinstance(v, list) or len(v) != 3:
            raise BadMessage(f"field {name!r} must be [name, size, digest]")
        Str(max_len=255).check(v[0], f"{name}[0]")
        return [v[0], Int(0, 1 << 50).check(v[1], f"{name}[1]"), Opt(Str(max_len=128)).check(v[2], f"{name}[2]")]


ITEM = {"type": Str(max_len=32), "id": Str(max_len=64)}
REQUESTS = {
    "hello": {"mode": Str(choices=("write", "read")), "chunk": Int(4096, 64 << 20), "inflight": Int(1, 1024),
              "qp": ListOf(Dict(), 64)},
    "put": {**ITEM, "kind": Str(choices=KINDS), "size": Int(0, 1 << 50), "digest": Opt(Str(max_len=128)),
            "files": ListOf(FileEntry(), 100_000)},
    "get": ITEM,
    "verdict": {"verified": Bool(), "digest": Opt(Str(max_len=128))},
    "bye": {},
}


def request(msg: dict, *ops: str) -> dict:
    """``msg`` checked as one of ``ops``; BadMessage naming the field otherwise."""
    op = msg.get("op")
    if op not in ops:
        raise BadMessage(f"unexpected request {str(op)[:64]!r} here (expected {' or '.join(ops)})")
    return fields({k: v for k, v in msg.items() if k != "op"}, REQUESTS[op], op) | {"op": op}


class RdmaServer:
    """A passive end: mode "write" receives into ``root``, mode "read" serves from ``root``."""

    def __init__(self, root: Path | str, bind: str, port: int, mode: str, options: dict | None = None,
                 secret: bytes | None = None):
        if mode not in ("write", "read"):
            raise TransportError(f"rdma: mode must be write or read, not {mode!r}")
        self.secret = secret if secret is not None else auth.load_secret()
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
        self._slots = threading.BoundedSemaphore(MAX_SESSIONS)
        self._sock = socket.create_server((bind, port))
        self._sock.settimeout(0.2)
        self.info = {"host": bind, "port": self._sock.getsockname()[1], "mode": mode}
        self._thread = threading.Thread(target=self._accept, name="rdma-passive", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                conn.close()  # too many sessions open at once: this one is turned away
                continue
            conn.setblocking(True)
            t = threading.Thread(target=self._session, args=(conn, f"{addr[0]}:{addr[1]}"), daemon=True)
            self._sessions = [s for s in self._sessions if s.is_alive()] + [t]
            t.start()

    def _session(self, conn: socket.socket, peer: str) -> None:
        wire, ep = Wire(conn, peer), None
        try:
            wire.authenticate_server(self.secret)
            hello = request(wire.recv(), "hello")
            if hello["mode"] != self.mode:
                wire.send({"ok": False, "error": f"this end serves rdma-{self.mode}, not {hello['mode']}"})
                return
            ep = open_endpoint(self.options, hello["chunk"], hello["inflight"])
            wire.send({"ok": True, "qp": ep.local_info()})
            ep.connect(hello["qp"])
            ops = ("put", "bye") if self.mode == "write" else ("get", "bye")
            while True:
                msg = request(wire.recv(), *ops)
                if msg["op"] == "bye":
                    return
                getattr(self, {"put": "_receive", "get": "_serve"}[msg["op"]])(wire, ep, msg)
        except Exception as exc:  # one session's failure never stops the server
            if not isinstance(exc, TransportError) or "closed the control" not in str(exc):
                with self._lock:
                    self.errors.append(f"{peer}: {type(exc).__name__}: {exc}")
                try:
                    wire.send({"ok": False, "fatal": True, "error": f"passive end: {exc}"})
                except (OSError, ValueError):
                    pass
        finally:
            if ep is not None:
                ep.close()
            wire.close()
            self._slots.release()

    def _receive(self, wire: Wire, ep, msg: dict) -> None:
        name = f"{msg['type']}/{msg['id']}"
        size = msg["size"]
        if msg["kind"] == "blob":
            confine.lotus_type(msg["type"], "type")
            confine.sector_id(msg["id"], "id")
            if size > min(MAX_BLOB, psutil.virtual_memory().available // 2):
                raise BadMessage(f"a blob of {size} bytes is more than this end holds in memory "
                                 f"(at most {MAX_BLOB} and half the available memory)")
            buf = bytearray(size)
            wire.send({"ok": True})
            self._fx_or_fail(wire, "fx_recv", ep, buf, size)
            got = blob_digest(buf)
            verified = msg.get("digest") is not None and got == msg["digest"]
            if verified:
                self.blobs[name] = bytes(buf)
            self._verdict(wire, name, size, verified, got)
            return
        final = confine.item_path(self.root, msg["type"], msg["id"])
        files = [(confine.file_name(n, "files"), s) for n, s, _ in msg["files"]]
        if msg["kind"] == "file" and len(files) != 1:
            raise BadMessage(f"a file item has exactly one entry in 'files', not {len(files)}")
        try:
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
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
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

    def _verdict(self, wire: Wire, name: str, size: int, verified: bool, got: str | None) -> None:
        entry = {"item": name, "bytes": size, "verified": bool(verified), "digest": got}
        with self._lock:
            self.received.append(entry)
        wire.send({"ok": True, **entry})

    def _fx_or_fail(self, wire: Wire, fn: str, ep, io, size: int) -> None:
        """Run one chunk loop; on failure tell the active end why and end the session."""
        try:
            fx(fn, ep, io, size, self.timeout_ms, self.abort_after)
        except (OSError, RdmabenchError) as exc:
            try:
                wire.send({"ok": False, "fatal": True, "error": f"passive end: {exc}"})
            except OSError:
                pass
            raise

    def _serve(self, wire: Wire, ep, msg: dict) -> None:
        try:
            path = confine.item_path(self.root, msg["type"], msg["id"])
            if path.is_dir():
                kind = "dir"
                files = [(n, s, confine.under(path, confine.file_name(n), field="files")) for n, s in integrity.dir_entries(path)]
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
        verdict = request(wire.recv(), "verdict")
        with self._lock:
            self.served.append({"item": f"{msg['type']}/{msg['id']}", "bytes": sum(s for _, s, _ in files),
                                "verified": bool(verdict.get("verified")), "digest": verdict.get("digest")})

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rdmabench.transports.rdma",
                                 description="The rdma transports' passive end. Peers must hold the shared secret "
                                             f"({auth.ENV_SECRET}, {auth.ENV_SECRET_FILE} or {auth.DEFAULT_FILE}).")
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
    try:
        server = RdmaServer(args.root, args.bind, args.port, args.mode, options)
    except RdmabenchError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    print(f"rdma-{args.mode} passive end on {args.bind}:{server.info['port']}, root {args.root}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    print(json.dumps(server.stop()), flush=True)
    return 0
