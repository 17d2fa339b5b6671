"""The rdma transports' passive end: mode "write" receives into its root, mode "read" serves from it.

A session is one control channel (rdmabench.wire: authenticated before anything reaches us) asking
for service "rdma-write" or "rdma-read". ``RdmaServer.session`` serves one; `rdmabench serve`
registers a standing passive end per mode as services of its own, and ``listen`` gives a passive
end a listener of its own (the runner's ends on a worker, one-host runs). Every request is checked
field by field (``wirecheck``) and every item path confined under the root, symlinks included
(``confine``). A bad request is answered with ``{"ok": false, "error": ...}`` and that session ends.

It only moves what is in its root: what is there to move is the runner's business (``transfer.hosts``:
``generate`` on the host that holds the data).
"""

from __future__ import annotations

import threading
from pathlib import Path

import psutil

from .. import confine, integrity
from ..errors import RdmabenchError
from ..wire import Channel, Server
from ..wirecheck import BadMessage, Bool, Dict, Int, ListOf, Opt, Str, fields
from ..workloads.item import KINDS
from .base import TransportError
from .rdma_common import (MAX_FILES, REPLY_WAIT_S, TIMEOUT_MS, close_all, fx, item_digest, open_endpoint, open_files,
                          reread)

MAX_BLOB = 512 << 20  # a C1 output is ~40 MB; a blob is held in memory, so it is bounded
MAX_SESSIONS = 32


class FileEntry:
    """One file of a put: ``[name, size, digest-or-null]``."""

    def check(self, v, name):
        if not isinstance(v, list) or len(v) != 3:
            raise BadMessage(f"field {name!r} must be [name, size, digest]")
        Str(max_len=255).check(v[0], f"{name}[0]")
        return [v[0], Int(0, 1 << 50).check(v[1], f"{name}[1]"), Opt(Str(max_len=128)).check(v[2], f"{name}[2]")]


ITEM = {"lotus_type": Str(max_len=32), "id": Str(max_len=64), "parallel": Opt(Int(1, 64))}
DIGESTS = ListOf(Str(max_len=32), MAX_FILES)
REQUESTS = {
    "open": {"chunk": Int(4096, 64 << 20), "inflight": Int(1, 1024), "streams": Opt(Int(1, 64)),
             "verify": Opt(Str(choices=("stream", "reread"))), "direct": Opt(Bool()), "qp": ListOf(Dict(), 64)},
    "put": {**ITEM, "kind": Str(choices=KINDS), "size": Int(0, 1 << 50), "digest": Opt(Str(max_len=128)),
            "files": ListOf(FileEntry(), MAX_FILES)},
    "get": ITEM,
    "sent": {"digests": DIGESTS},
    "verdict": {"verified": Bool(), "digest": Opt(Str(max_len=128))},
    "bye": {},
}


def request(msg: dict, *kinds: str) -> dict:
    """``msg`` checked as one of ``kinds``; BadMessage naming the field otherwise."""
    kind = msg.get("type")
    if kind not in kinds:
        raise BadMessage(f"unexpected request {str(kind)[:64]!r} here (expected {' or '.join(kinds)})")
    return fields({k: v for k, v in msg.items() if k not in ("v", "type")}, REQUESTS[kind], kind) | {"type": kind}


class RdmaServer:
    """A passive end: mode "write" receives into ``root``, mode "read" serves from ``root``."""

    def __init__(self, root: Path | str, mode: str, options: dict | None = None, keep: bool = True):
        """``keep``: record what each session moved (and hold received blobs) for ``stop()`` to report;
        a standing end that serves for days (`rdmabench serve`'s) keeps nothing."""
        if mode not in ("write", "read"):
            raise TransportError(f"rdma: mode must be write or read, not {mode!r}")
        self.root, self.mode, self.options = Path(root), mode, dict(options or {})
        self.service = f"rdma-{mode}"
        self.keep = keep
        self.timeout_ms = int(self.options.get("timeout_ms", TIMEOUT_MS))
        self.abort_after = int(self.options.get("passive_abort_after", -1))  # test hook
        self.corrupt_at = int(self.options.get("passive_corrupt_at", -1))  # test hook: as a source, flip a byte of chunk N
        self.received: list[dict] = []
        self.served: list[dict] = []
        self.errors: list[str] = []
        self.blobs: dict[str, bytes] = {}
        self.info: dict = {}
        self._lock = threading.Lock()
        self._sessions: list[threading.Thread] = []
        self._slots = threading.BoundedSemaphore(MAX_SESSIONS)
        self._listener: Server | None = None

    def listen(self, bind: str, port: int = 0, secret: bytes | None = None) -> "RdmaServer":
        """Take sessions on a listener of this end's own; ``info`` says how to reach it."""
        self._listener = Server(bind, port, {self.service: (self.session, dict)}, secret=secret,
                                log=lambda msg: None, name=self.service)
        self.info = {"host": bind, "port": self._listener.port, "service": self.service}
        return self

    def session(self, chan: Channel, hello: dict | None = None) -> None:
        """Serve one authenticated control channel until it says bye, fails or goes away."""
        if not self._slots.acquire(blocking=False):
            raise TransportError(f"rdma: {MAX_SESSIONS} sessions are open at this end already")
        ep = None
        with self._lock:
            self._sessions = [s for s in self._sessions if s.is_alive()] + [threading.current_thread()]
        try:
            opened = request(chan.recv(REPLY_WAIT_S), "open")
            streams = opened.get("streams") or 1
            if len(opened["qp"]) != streams:
                raise BadMessage(f"field 'qp' must list {streams} QPs, one per stream, not {len(opened['qp'])}")
            ep = open_endpoint(self.options, opened["chunk"], opened["inflight"], streams)
            chan.send_msg({"ok": True, "qp": ep.local_info()})
            ep.connect(opened["qp"])
            mode = {"verify": opened.get("verify") or "stream", "direct": bool(opened.get("direct"))}
            kinds = ("put", "bye") if self.mode == "write" else ("get", "bye")
            while True:
                msg = request(chan.recv(REPLY_WAIT_S), *kinds)
                if msg["type"] == "bye":
                    return
                getattr(self, {"put": "_receive", "get": "_serve"}[msg["type"]])(chan, ep, msg, mode)
        except Exception as exc:  # one session's failure never stops the server
            if not getattr(exc, "peer_gone", False):
                with self._lock:
                    self.errors.append(f"{chan.peer}: {type(exc).__name__}: {exc}")
                try:
                    chan.send_msg({"ok": False, "fatal": True, "error": f"passive end: {exc}"})
                except (OSError, RdmabenchError):
                    pass
        finally:
            if ep is not None:
                ep.close()
            self._slots.release()

    def _receive(self, chan: Channel, ep, msg: dict, mode: dict) -> None:
        name = f"{msg['lotus_type']}/{msg['id']}"
        size, parallel = msg["size"], msg.get("parallel") or 1
        files = [(confine.file_name(n, "files") if msg["kind"] == "dir" else n, s) for n, s, _ in msg["files"]]
        if msg["kind"] != "dir" and len(files) != 1:
            raise BadMessage(f"a {msg['kind']} item has exactly one entry in 'files', not {len(files)}")
        if sum(s for _, s in files) != size:
            raise BadMessage("field 'size' is not the sum of the files' sizes")
        if msg["kind"] == "blob":
            confine.lotus_type(msg["lotus_type"], "lotus_type")
            confine.sector_id(msg["id"], "id")
            if size > min(MAX_BLOB, psutil.virtual_memory().available // 2):
                raise BadMessage(f"a blob of {size} bytes is more than this end holds in memory "
                                 f"(at most {MAX_BLOB} and half the available memory)")
            buf = bytearray(size)
            chan.send_msg({"ok": True})
            got = self._fx_or_fail(chan, "fx_recv", ep, [(buf, size)], parallel)["digests"]
            sent = request(chan.recv(REPLY_WAIT_S), "sent")["digests"]
            verified = got == sent and (msg.get("digest") is None or got[0] == msg["digest"])
            if verified and self.keep:
                self.blobs[name] = bytes(buf)
            self._verdict(chan, name, size, verified, got[0])
            return
        final = confine.item_path(self.root, msg["lotus_type"], msg["id"])
        try:
            integrity.check_free_space(final.parent, size)
        except (RdmabenchError, OSError) as exc:
            chan.send_msg({"ok": False, "error": str(exc)})
            return
        got, verified = None, False
        try:
            with integrity.atomic_destination(final) as d:
                if msg["kind"] == "dir":
                    d.path.mkdir()
                paths = [d.path / n for n, _ in files] if msg["kind"] == "dir" else [d.path]
                try:
                    fds = open_files(paths, write=True, direct=mode["direct"])
                except (RdmabenchError, OSError) as exc:
                    chan.send_msg({"ok": False, "error": str(exc)})
                    return
                try:
                    chan.send_msg({"ok": True})
                    landed = self._fx_or_fail(chan, "fx_recv", ep, list(zip(fds, (s for _, s in files))),
                                              parallel)["digests"]
                finally:
                    close_all(fds)
                sent = request(chan.recv(REPLY_WAIT_S), "sent")["digests"]
                d.digest = got = item_digest(msg["kind"], files, landed)
                check = reread(paths) if mode["verify"] == "reread" else landed
                if check != sent or (msg.get("digest") is not None and got != msg["digest"]):
                    raise integrity.IntegrityError(f"{name}: what landed does not match what the source sent")
            verified = True
        except integrity.IntegrityError:
            verified = False
        self._verdict(chan, name, size, verified, got)

    def _verdict(self, chan: Channel, name: str, size: int, verified: bool, got: str | None) -> None:
        entry = {"item": name, "bytes": size, "verified": bool(verified), "digest": got}
        with self._lock:
            if self.keep:
                self.received.append(entry)
        chan.send_msg({"ok": True, **entry})

    def _fx_or_fail(self, chan: Channel, fn: str, ep, files: list, parallel: int) -> dict:
        """Run one chunk loop; on failure tell the active end why and end the session."""
        try:
            return fx(fn, ep, files, self.timeout_ms, parallel, self.abort_after, self.corrupt_at)
        except (OSError, RdmabenchError) as exc:
            try:
                chan.send_msg({"ok": False, "fatal": True, "error": f"passive end: {exc}"})
            except (OSError, RdmabenchError):
                pass
            raise

    def _serve(self, chan: Channel, ep, msg: dict, mode: dict) -> None:
        try:
            path = confine.item_path(self.root, msg["lotus_type"], msg["id"])
            if path.is_dir():
                kind = "dir"
                files = [(n, s, confine.under(path, confine.file_name(n), field="files")) for n, s in integrity.dir_entries(path)]
            elif path.is_file():
                kind, files = "file", [(path.name, path.stat().st_size, path)]
            else:
                raise TransportError(f"rdma: {msg['lotus_type']}/{msg['id']} does not exist on the source")
            if len(files) > MAX_FILES:
                raise TransportError(f"rdma: {msg['lotus_type']}/{msg['id']} has {len(files)} files; at most {MAX_FILES}")
            fds = open_files([p for _, _, p in files], write=False, direct=mode["direct"])
        except (RdmabenchError, OSError) as exc:
            chan.send_msg({"ok": False, "error": str(exc)})
            return
        try:
            chan.send_msg({"ok": True, "kind": kind, "files": [[n, s] for n, s, _ in files]})
            result = self._fx_or_fail(chan, "fx_serve", ep, [(fd, s) for fd, (_, s, _) in zip(fds, files)],
                                      msg.get("parallel") or 1)
        finally:
            close_all(fds)
        chan.send("sent", digests=result["digests"])
        verdict = request(chan.recv(REPLY_WAIT_S), "verdict")
        with self._lock:
            if self.keep:
                self.served.append({"item": f"{msg['lotus_type']}/{msg['id']}", "bytes": sum(s for _, s, _ in files),
                                    "verified": bool(verdict.get("verified")), "digest": verdict.get("digest")})

    def stop(self) -> dict:
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            sessions = list(self._sessions)
        for t in sessions:
            if t is not threading.current_thread():
                t.join(max(5.0, self.timeout_ms / 1000 + 2))
        out = {"received": list(self.received)} if self.mode == "write" else {"served": list(self.served)}
        if self.errors:
            out["errors"] = list(self.errors)
        return out
