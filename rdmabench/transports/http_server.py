"""Lotus's fetch endpoint, faithfully: ``GET /remote/{type}/{id}`` over one TCP stream per transfer.

As ``storage/paths/http_handler.go`` serves it (see docs/lotus.md):
- ``Authorization: Bearer <token>`` required, else 401 (compared in constant time);
- ``type`` in unsealed|sealed|cache|update|update-cache|piece and ``id`` of the form
  ``s-t0<miner>-<n>``; anything else (``..``, percent-encoding, extra slashes) is 400; a
  sector that is not there is 404. Paths are never decoded, and the resolved path must lie
  under the storage root, so nothing outside it is ever opened;
- a file: ``application/octet-stream``, Content-Length, single Range; body by sendfile(2). We also answer
  HEAD; Lotus does not (its gorilla/mux route is ``Methods("GET")``: a HEAD is 405), and its client never sends one;
- a directory (cache): ``application/x-tar``, chunked, an uncompressed tar of the top-level
  regular files sorted by name, copied 1 MiB at a time (each 1 MiB is one chunk, sent by
  sendfile), and no end-of-archive blocks (Lotus never writes them; ``end_blocks=True`` adds
  them). Range on a directory is refused with 500, as Lotus does.

Beyond Lotus (rdmabench's extension, http_files.py; Lotus's client never asks for it): a directory
item's listing, ``GET /remote/{type}/{id}/``, and its top-level files one by one,
``GET /remote/{type}/{id}/{name}``, under the same token and confinement, for the parallel fetch.

``serve(root, bind, port, token)`` starts it in background threads and returns a handle with
``.url`` and ``.stop()``. The address to listen on must be given: there is no default.
``python -m rdmabench.transports.http_server --root R --bind ADDR --port P --token T`` runs it
in the foreground (it prints ``listening on http://ADDR:PORT`` when ready).
"""

from __future__ import annotations

import argparse
import hmac
import os
import re
import socket
import sys
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..errors import RdmabenchError
from . import http_files

TYPES = ("unsealed", "sealed", "cache", "update", "update-cache", "piece")
SECTOR_ID = re.compile(r"\As-t0[0-9]{1,20}-[0-9]{1,20}\Z")
COPY_BUFFER = 1 << 20
IDLE_TIMEOUT_S = 60.0  # a peer that connects and sends no request in this long is dropped
_RANGE = re.compile(r"\Abytes=(\d*)-(\d*)\Z")


class ServerError(RdmabenchError):
    pass


def tar_header(name: str, size: int, mtime: int) -> bytes:
    """One tar member header (PAX when a size needs it, as Go's archive/tar does for > 8 GiB)."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, 0o644, mtime, tarfile.REGTYPE
    return info.tobuf(format=tarfile.PAX_FORMAT)


class _Handler(BaseHTTPRequestHandler):
    """Lotus's answers: a file (Range, sendfile) and a directory (chunked tar); subclass it through serve(handler=)."""

    protocol_version = "HTTP/1.1"
    server_version = "rdmabench-lotus-fetch"
    server: "_Server"

    def setup(self):
        super().setup()
        # as Go's net package does for every TCP connection (Lotus's server is Go's): without it a small answer on a
        # kept-alive connection waits for the client's delayed ACK of the header (Nagle), 40 ms a request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self):
        # a peer has idle_timeout seconds to send (the rest of) its next request, else its connection is closed and its
        # thread freed; an answer, once started, is sent without a timeout, as Lotus's is (_serve clears it)
        self.connection.settimeout(self.server.idle_timeout)
        super().handle_one_request()

    def log_message(self, fmt, *args):  # quiet unless asked
        if self.server.verbose:
            super().log_message(fmt, *args)

    def do_GET(self):
        self._serve(head=False)

    def do_HEAD(self):
        self._serve(head=True)

    def _error(self, code: int, text: str) -> None:
        body = (text + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self) -> bool:
        got = (self.headers.get("Authorization") or "").encode()
        return hmac.compare_digest(got, b"Bearer " + self.server.token.encode())

    def _serve(self, head: bool) -> None:
        self.connection.settimeout(None)
        if not self._authorized():
            return self._error(401, "unauthorized")
        raw = self.path.split("?", 1)[0]
        parts = raw.split("/")
        if len(parts) < 2 or parts[1] != "remote":
            return self._error(404, "not found")
        if len(parts) not in (4, 5) or parts[2] not in TYPES or not SECTOR_ID.match(parts[3]):
            return self._error(400, "bad request: expected /remote/{type}/s-t0<miner>-<number>")
        root = self.server.root_real
        target = os.path.realpath(os.path.join(root, parts[2], parts[3]))
        if not target.startswith(root + os.sep):  # a symlink pointing out of the root
            return self._error(400, "bad request: outside the storage root")
        if len(parts) == 5:  # rdmabench's extension: a directory's listing or one of its files
            return http_files.answer(self, target, parts[4], head)
        try:
            st = os.stat(target)
        except FileNotFoundError:
            return self._error(404, f"sector {parts[3]} has no {parts[2]} here")
        if os.path.isdir(target):
            return self._send_dir(target, head)
        return self._send_file(target, st.st_size, head)

    # ---- a file: sendfile, Content-Length, Range ------------------------------------------------------

    def _send_file(self, path: str, size: int, head: bool) -> None:
        with open(path, "rb") as f:
            self._send_open(f, size, head)

    def _send_open(self, f, size: int, head: bool) -> None:
        """Answer with the open file ``f`` of ``size`` bytes: a single Range honoured, the body by sendfile."""
        start, count, partial = 0, size, False
        rng = self.headers.get("Range")
        if rng:
            m = _RANGE.match(rng.strip())
            if m and (m.group(1) or m.group(2)):
                a, b = m.group(1), m.group(2)
                if a:
                    start = int(a)
                    end = min(int(b), size - 1) if b else size - 1
                else:
                    start, end = max(0, size - int(b)), size - 1
                if start >= size or end < start:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                count, partial = end - start + 1, True
            # anything else (multiple ranges, garbage): ignored, the whole file is sent (RFC 9110 allows it)
        self.send_response(206 if partial else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(count))
        self.send_header("Accept-Ranges", "bytes")
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{start + count - 1}/{size}")
        self.end_headers()
        if head:
            return
        limit = self.server.abort_after
        n = count if limit is None else min(count, limit)
        self.connection.sendfile(f, start, n) if n else None
        if n < count:
            self._abort()

    # ---- a directory: chunked tar, 1 MiB chunks by sendfile --------------------------------------------

    def _send_dir(self, path: str, head: bool) -> None:
        if self.headers.get("Range"):
            return self._error(500, "range not supported on a directory")
        entries = self._tar_members(path)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if head:  # no body at all, not even the last chunk: the next response on this connection follows at once
            return
        sock = self.connection
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        budget = self.server.abort_after  # fault injection: body bytes before a hard close
        try:
            for name in entries:
                with open(os.path.join(path, name), "rb") as f:
                    st = os.fstat(f.fileno())
                    hdr = tar_header(name, st.st_size, int(st.st_mtime))
                    if budget is not None and budget < len(hdr):
                        return self._abort()
                    sock.sendall(b"%x\r\n%s\r\n" % (len(hdr), hdr))
                    budget = None if budget is None else budget - len(hdr)
                    off = 0
                    while off < st.st_size:
                        n = min(COPY_BUFFER, st.st_size - off)
                        if budget is not None and budget < n:
                            sock.sendall(b"%x\r\n" % n)
                            if budget:
                                sock.sendfile(f, off, budget)
                            return self._abort()
                        sock.sendall(b"%x\r\n" % n)
                        sent = sock.sendfile(f, off, n)
                        if sent != n:
                            return self._abort()  # the file shrank under us: never send a short member
                        sock.sendall(b"\r\n")
                        off += n
                        budget = None if budget is None else budget - n
                    pad = -st.st_size % 512
                    if pad:
                        sock.sendall(b"%x\r\n%s\r\n" % (pad, bytes(pad)))
            if self.server.end_blocks:
                sock.sendall(b"400\r\n" + bytes(1024) + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        finally:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
            except OSError:
                pass

    def _tar_members(self, path: str) -> list[str]:
        """The names a directory's tar carries, in order: its top-level regular files, sorted (os.ReadDir's order).
        A subclass may narrow them (Curio sends only the cache names it knows)."""
        names = []
        with os.scandir(path) as it:
            for e in it:
                if e.is_file(follow_symlinks=False):
                    names.append(e.name)
        return sorted(names)

    def _abort(self) -> None:
        """Drop the connection mid-body, as a crashed or killed server would."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


FetchHandler = _Handler  # the name a subclass given to serve(handler=) derives from


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr, root: Path, token: str, *, end_blocks=False, abort_after=None, verbose=False,
                 idle_timeout=IDLE_TIMEOUT_S, handler=None):
        self.idle_timeout = idle_timeout
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.root_real = os.path.realpath(root)
        self.token = token
        self.end_blocks = end_blocks
        self.abort_after = abort_after
        self.verbose = verbose
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__(addr, handler or _Handler)

    def process_request_thread(self, request, client_address):
        with self._lock:
            self._conns.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._conns.discard(request)

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up in the middle of an answer is its own affair: one line when verbose, never a
        traceback on the server's output (a worker killed mid-fetch did print one). Anything else is a defect
        of ours and keeps socketserver's traceback."""
        err = sys.exc_info()[1]
        if isinstance(err, (ConnectionError, TimeoutError)):
            if self.verbose:
                print(f"rdmabench http: {client_address[0]}:{client_address[1]} went away: {err}", file=sys.stderr)
            return
        super().handle_error(request, client_address)

    def close_all(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def http_url(bind: str, port: int, path: str = "") -> str:
    """The URL of a server listening on bind:port (an IPv6 address in brackets)."""
    host = f"[{bind}]" if ":" in bind else bind
    return f"http://{host}:{port}{path}"


def stop_server(server, thread: threading.Thread, close_connections=None) -> None:
    """Stop a socketserver running in `thread`: idempotent, open connections closed too if asked."""
    if thread.is_alive():
        server.shutdown()
        thread.join()
    if close_connections:
        close_connections()
    server.server_close()


@dataclass
class ServerHandle:
    """A running server: ``url`` to give clients, ``stop()`` to end it (idempotent)."""

    bind: str
    port: int
    root: Path
    _server: _Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        return http_url(self.bind, self.port)

    def stop(self) -> None:
        stop_server(self._server, self._thread, self._server.close_all)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def serve(root: Path | str, bind: str, port: int, token: str, *, end_blocks: bool = False,
          abort_after: int | None = None, verbose: bool = False, idle_timeout: float = IDLE_TIMEOUT_S,
          handler: type | None = None) -> ServerHandle:
    """Serve ``root`` (a Lotus storage path: sealed/, cache/, ...) on ``bind``:``port`` (0: any free port).

    ``bind`` is required: a caller who wants every interface must say 0.0.0.0 or :: explicitly.
    ``abort_after`` (fault injection for tests) closes each connection after that many body bytes.
    ``idle_timeout``: seconds a connection may wait for its next request (kept alive, or silent from the start).
    ``handler``: a subclass of this module's request handler answering in its stead (a test's stand-in for a
    real Lotus or Curio reuses the file and tar answers and changes the routes and the authentication).
    """
    if not bind:
        raise ServerError("the http server needs an address to listen on (e.g. 127.0.0.1, or the storage "
                          "network's address); it never picks 0.0.0.0 by itself")
    if not token:
        raise ServerError("the http server needs a token (Lotus's fetch is always authenticated)")
    root = Path(root)
    if not root.is_dir():
        raise ServerError(f"storage root {root} is not a directory")
    try:
        server = _Server((bind, port), root, token, end_blocks=end_blocks, abort_after=abort_after, verbose=verbose,
                         idle_timeout=idle_timeout, handler=handler)
    except OSError as err:
        raise ServerError(f"cannot listen on {bind}:{port}: {err.strerror}") from None
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"http-serve-{server.server_address[1]}", daemon=True)
    thread.start()
    return ServerHandle(bind, server.server_address[1], root, server, thread)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rdmabench.transports.http_server", description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--token", required=True)
    p.add_argument("--end-blocks", action="store_true")
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args(argv)
    handle = serve(a.root, a.bind, a.port, a.token, end_blocks=a.end_blocks, verbose=a.verbose)
    print(f"listening on {handle.url}", flush=True)
    try:
        handle._thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
