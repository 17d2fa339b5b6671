"""What the parallel fetch's threads share: keep-alive connections, piece buffers, progress, and one fate.

``Pool`` keeps idle HTTP/1.1 connections to the server and hands them out again, as Go's
http.Transport (Lotus's client) reuses its connections: a directory of many files costs at most
parallel x streams connections, not one per file or per request. A connection goes back to the
pool only after its last response was read to the end and the server did not say
``Connection: close``; a request that finds a reused connection closed by the server before any
byte of the answer came is sent again once on a new connection.

``Buffers`` recycles the chunk-sized buffers bodies are received into (no page faults on
fresh memory for every piece); how many are in use at once is bounded by their users.

``Cancel`` is one transfer's fate: the first failure is kept and every connection shut, so
threads blocked in recv return at once and the others stop at their next check.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable
from urllib.parse import urlsplit

from .http_client import FetchError, IncompleteTransfer, _connect, _response_head, _Stream

HEADER_BUFFER = 64 << 10  # what a header read may take in; bodies go straight into chunk buffers


class Cancelled(FetchError):
    """This part stopped because another part of the same transfer failed."""


class Cancel:
    def __init__(self):
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self.error: BaseException | None = None

    def fail(self, err: BaseException) -> None:
        with self._lock:
            if self.error is not None:
                return
            self.error = err
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def check(self) -> None:
        if self.error is not None:
            raise Cancelled("cancelled: another part of this transfer failed")

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.add(sock)
        self.check()

    def unwatch(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.discard(sock)


class Progress:
    """Bytes delivered so far across threads, passed to the caller's ``progress(total)``; and wire bytes."""

    def __init__(self, progress: Callable[[int], None] | None):
        self._fn = progress
        self._lock = threading.Lock()
        self.total = 0
        self.wire = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.total += n
            if self._fn:
                self._fn(self.total)

    def add_wire(self, n: int) -> None:
        with self._lock:
            self.wire += n


class Buffers:
    """Chunk-sized bytearrays, recycled."""

    def __init__(self, chunk: int):
        self.chunk = chunk
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def get(self) -> bytearray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return bytearray(self.chunk)

    def put(self, buf: bytearray) -> None:
        with self._lock:
            self._free.append(buf)


class Conn:
    """One keep-alive connection: raw requests out, response heads and exact bodies in."""

    def __init__(self, pool: "Pool"):
        self.sock = _connect(pool.url_base, pool.timeout)[0]
        self.s = _Stream(self.sock, HEADER_BUFFER)
        self.pool = pool
        self.reused = False
        self.keep = True
        try:
            pool.cancel.watch(self.sock)
        except BaseException:
            self.sock.close()
            raise

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (ConnectionResetError, BrokenPipeError) as err:
            raise IncompleteTransfer(f"connection lost while sending a request: {err.strerror}") from None
        except socket.timeout:
            raise IncompleteTransfer("the server took no request within the timeout") from None

    def head(self) -> tuple[int, dict[str, str]]:
        status, headers = _response_head(self.s)
        if headers.get("connection", "").lower() == "close":
            self.keep = False
        return status, headers

    def read_into(self, view: memoryview) -> None:
        """Fill ``view`` from the body: what the header buffer already holds, then straight from the socket."""
        s, n, got = self.s, len(view), 0
        if s.hi > s.lo:
            got = min(n, s.hi - s.lo)
            view[:got] = s.mv[s.lo:s.lo + got]
            s.lo += got
        if s.lo == s.hi:
            s.lo = s.hi = 0
        while got < n:
            try:
                r = self.sock.recv_into(view[got:], n - got, socket.MSG_WAITALL)
            except (ConnectionResetError, BrokenPipeError) as err:
                raise IncompleteTransfer(f"connection lost after {got} of {n} bytes: {err.strerror}") from None
            except socket.timeout:
                raise IncompleteTransfer(f"no data from the server within the timeout ({got} of {n} bytes)") from None
            if not r:
                raise IncompleteTransfer(f"the server closed the connection after {got} of {n} bytes")
            s.wire += r
            got += r

    def close(self) -> None:
        self.pool.cancel.unwatch(self.sock)
        self.pool.progress.add_wire(self.s.wire)
        self.s.wire = 0
        self.sock.close()


class Pool:
    def __init__(self, url_base: str, token: str, timeout: float | None, cancel: Cancel, progress: Progress):
        self.url_base, self.token, self.timeout = url_base, token, timeout
        self.cancel, self.progress = cancel, progress
        self._idle: list[Conn] = []
        self._lock = threading.Lock()
        u = urlsplit(url_base)
        self._netloc, self._prefix = u.netloc, u.path.rstrip("/")

    def request(self, method: str, path: str, extra: str = "") -> bytes:
        """One keep-alive request for ``path`` (under the server's URL), ``extra`` header lines included."""
        return (f"{method} {self._prefix}{path} HTTP/1.1\r\nHost: {self._netloc}\r\n"
                f"Authorization: Bearer {self.token}\r\nUser-Agent: rdmabench\r\n{extra}\r\n").encode()

    def get(self) -> Conn:
        with self._lock:
            if self._idle:
                conn = self._idle.pop()
                conn.reused = True
                return conn
        return Conn(self)

    def put(self, conn: Conn) -> None:
        """Back to the pool if it can serve another request; closed otherwise."""
        if conn.keep and self.cancel.error is None:
            with self._lock:
                self._idle.append(conn)
        else:
            conn.close()

    def exchange(self, data: bytes) -> tuple[Conn, int, dict[str, str]]:
        """Send ``data`` (one or more requests) on a connection and read the first answer's head. A reused
        connection the server closed while it was idle is replaced once, if nothing of an answer came."""
        conn = self.get()
        try:
            wire = conn.s.wire
            try:
                conn.send(data)
                return (conn, *conn.head())
            except IncompleteTransfer:
                if not conn.reused or conn.s.wire != wire or self.cancel.error is not None:
                    raise
            conn.close()
            conn = Conn(self)
            conn.send(data)
            return (conn, *conn.head())
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
