"""One file over N TCP connections, hashed as it arrives: the http transport's ``streams``.

The file is cut into pieces of ``chunk`` bytes (the ``[transfer]`` chunk, 1 MiB by default);
piece k travels on connection k % N as ``Range: bytes=a-b`` (HTTP/1.1 keep-alive, PIPELINE
requests outstanding on each connection, so the server never waits for the next request).
XXH3 is sequential, so the bytes must reach the hasher in file order: each connection receives
its pieces in order into its own pool of WINDOW buffers, and the calling thread takes piece
0, 1, 2, ... as each completes, hashes it, writes it at its offset (``os.pwrite``) and hands the
buffer back. A connection that runs ahead waits for a free buffer (TCP's flow control then holds
the server back), so at most WINDOW x N pieces, 2 x N x chunk bytes, are held whatever the
file's size, and nothing is read twice. The connection that owns the next piece in order always
has a free buffer (it receives its own pieces in order), so the window never deadlocks.

Every response must be 206 with exactly the Content-Range asked for and the total size planned:
a server that ignores Range, a file that changed size or a short body is an error, raised in
the calling thread; a failure anywhere cancels the whole transfer (``Cancel``) within a bounded time.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from pathlib import Path
from typing import Callable

from .. import integrity
from .http_client import FetchError, IncompleteTransfer, _connect, _response_head, _Stream

WINDOW = 2     # buffers per connection: one being received, one waiting for its turn at the hasher
PIPELINE = 2   # requests outstanding per connection
HEADER_BUFFER = 64 << 10  # what a header read may take in; bodies go straight into the piece buffers
POLL_S = 0.1   # how often a waiting thread looks whether the transfer was cancelled


class Cancelled(FetchError):
    """This part stopped because another part of the same transfer failed."""


class Cancel:
    """One transfer's fate, shared by its threads: the first failure is kept and every socket shut,
    so that threads blocked in recv return at once and the others stop at their next check."""

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


def read_into(s: _Stream, view: memoryview) -> None:
    """Fill ``view`` from the stream: what its buffer already holds, then straight from the socket."""
    n, got = len(view), 0
    if s.hi > s.lo:
        got = min(n, s.hi - s.lo)
        view[:got] = s.mv[s.lo:s.lo + got]
        s.lo += got
    if s.lo == s.hi:
        s.lo = s.hi = 0
    while got < n:
        try:
            r = s.sock.recv_into(view[got:], n - got, socket.MSG_WAITALL)
        except (ConnectionResetError, BrokenPipeError) as err:
            raise IncompleteTransfer(f"connection lost after {got} of {n} bytes of a piece: {err.strerror}") from None
        except socket.timeout:
            raise IncompleteTransfer(f"no data from the server within the timeout ({got} of {n} bytes of a piece)") from None
        if not r:
            raise IncompleteTransfer(f"the server closed the connection after {got} of {n} bytes of a piece")
        s.wire += r
        got += r


def fetch_file(url_base: str, path: str, token: str, dest: Path, size: int, *, streams: int, chunk: int,
               timeout: float | None, cancel: Cancel, progress: Progress, label: str) -> str:
    """GET ``path`` (size ``size``) over ``streams`` connections into the new file ``dest``; its digest.

    ``label`` names the file in errors. Raises the first failure (FetchError and kin) with every
    connection closed and every thread of this file finished; ``dest`` is the caller's to remove.
    """
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        h = integrity.new_hasher()
        npieces = -(-size // chunk)
        if npieces == 0:
            return h.hexdigest()
        n = min(streams, npieces)
        ready: dict[int, tuple[bytearray, int, queue.Queue]] = {}
        cond = threading.Condition()
        threads = [threading.Thread(target=_receiver, name=f"http-piece-{label}-{c}", daemon=True,
                                    args=(url_base, path, token, size, chunk, c, n, npieces, timeout, cancel, progress,
                                          ready, cond, label))
                   for c in range(n)]
        for t in threads:
            t.start()
        try:
            for k in range(npieces):
                with cond:
                    while k not in ready:
                        cancel.check()
                        cond.wait(POLL_S)
                    buf, length, pool = ready.pop(k)
                view = memoryview(buf)[:length]
                h.update(view)
                off, done = k * chunk, 0
                while done < length:
                    done += os.pwrite(fd, view[done:], off + done)
                pool.put(buf)
                progress.add(length)
        except BaseException as err:
            cancel.fail(err)
        for t in threads:
            t.join()
        if cancel.error is not None:
            raise cancel.error
        return h.hexdigest()
    finally:
        os.close(fd)


def _receiver(url_base, path, token, size, chunk, c, n, npieces, timeout, cancel, progress, ready, cond, label):
    """Connection ``c`` of ``n``: pieces c, c+n, c+2n, ... in order, each into a buffer of its pool."""
    try:
        sock, netloc, prefix = _connect(url_base, timeout)
        try:
            cancel.watch(sock)
            _pieces(sock, netloc, prefix + path, token, size, chunk, range(c, npieces, n), cancel, progress,
                    ready, cond, label)
        finally:
            cancel.unwatch(sock)
            sock.close()
    except BaseException as err:  # the caller's thread raises the first failure
        cancel.fail(err)


def _pieces(sock, netloc, path, token, size, chunk, mine, cancel, progress, ready, cond, label):
    pool: queue.Queue = queue.Queue()
    for _ in range(min(WINDOW, len(mine))):
        pool.put(bytearray(chunk))
    head = f"GET {path} HTTP/1.1\r\nHost: {netloc}\r\nAuthorization: Bearer {token}\r\nUser-Agent: rdmabench\r\n"

    def request(k: int) -> bytes:
        a = k * chunk
        return f"{head}Range: bytes={a}-{min(a + chunk, size) - 1}\r\n\r\n".encode()

    sock.sendall(b"".join(request(k) for k in mine[:PIPELINE]))
    s = _Stream(sock, HEADER_BUFFER)
    for i, k in enumerate(mine):
        a = k * chunk
        length = min(chunk, size - a)
        status, headers = _response_head(s)
        if status != 206:
            why = "the server ignored Range" if status == 200 else {
                401: "the token was refused", 404: "not found", 416: "range not satisfiable (the file shrank?)"
            }.get(status, "request failed")
            raise FetchError(f"{label}: GET {path} bytes {a}-{a + length - 1}: HTTP {status}, {why}")
        want = f"bytes {a}-{a + length - 1}/{size}"
        if headers.get("content-range") != want or headers.get("content-length") != str(length):
            raise FetchError(f"{label}: asked for {want}, the server answered Content-Range "
                             f"{headers.get('content-range')!r}, Content-Length {headers.get('content-length')!r} "
                             "(did the file change?)")
        while True:
            try:
                buf = pool.get(timeout=POLL_S)
                break
            except queue.Empty:
                cancel.check()
        read_into(s, memoryview(buf)[:length])
        if i + PIPELINE < len(mine):
            sock.sendall(request(mine[i + PIPELINE]))
        with cond:
            ready[k] = (buf, length, pool)
            cond.notify_all()
    progress.add_wire(s.wire)
