"""One file of the parallel fetch, hashed as it arrives: whole on one connection, or in pieces over N (``streams``).

``get_whole``: one GET, the body received chunk by chunk into a recycled buffer, hashed and written.

``get_pieces``: the file is cut into pieces of ``chunk`` bytes (the ``[transfer]`` chunk, 1 MiB by
default); piece k travels on connection k % N as ``Range: bytes=a-b`` (keep-alive, PIPELINE
requests outstanding on each connection, so the server never waits for the next request).
XXH3 is sequential, so the bytes must reach the hasher in file order: each connection receives
its pieces in order, each into a buffer of its own (at most WINDOW at a time), and the calling
thread takes piece 0, 1, 2, ... as each completes, hashes it, writes it at its offset
(``os.pwrite``) and frees the buffer. A connection that runs ahead waits for a free slot (TCP's
flow control then holds the server back), so at most WINDOW x N pieces, 2 x N x chunk bytes, are
held whatever the file's size, and nothing is read twice. The connection that owns the next
piece in order always has a free slot (it receives its own pieces in order), so the window never
deadlocks.

Every answer must be exactly what was asked (206, the Content-Range and the total size planned;
200 and the planned size for a whole file): a server that ignores Range, a file that changed size
or a short body is an error, raised in the calling thread; a failure anywhere cancels the whole
transfer (http_conn.Cancel) within a bounded time.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .. import integrity
from .http_client import FetchError
from .http_conn import Buffers, Pool

WINDOW = 2     # buffers per connection: one being received, one waiting for its turn at the hasher
PIPELINE = 2   # requests outstanding per connection
POLL_S = 0.1   # how often a waiting thread looks whether the transfer was cancelled


def _status(label: str, path: str, status: int, want: str) -> FetchError:
    why = {200: "the server ignored Range", 206: "a part where the whole file was asked for",
           401: "the token was refused", 404: "not found", 416: "range not satisfiable (the file shrank?)"}
    why = why.get(status, "request failed")
    return FetchError(f"{label}: GET {path} {want}: HTTP {status}, {why}")


def _write(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


def get_whole(pool: Pool, buffers: Buffers, path: str, dest: Path, size: int, label: str) -> str:
    """GET ``path`` (``size`` bytes) on one connection into the new file ``dest``; its digest."""
    conn, status, headers = pool.exchange(pool.request("GET", path))
    try:
        if status != 200:
            raise _status(label, path, status, "(whole)")
        if headers.get("content-length") != str(size):
            raise FetchError(f"{label}: the server sends {headers.get('content-length')!r} bytes, {size} were "
                             "announced (did the file change?)")
        h = integrity.new_hasher()
        buf = buffers.get()
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            off = 0
            while off < size:
                view = memoryview(buf)[:min(len(buf), size - off)]
                conn.read_into(view)
                h.update(view)
                _write(fd, view, off)
                off += len(view)
                pool.progress.add(len(view))
        finally:
            os.close(fd)
            buffers.put(buf)
    except BaseException:
        conn.close()
        raise
    pool.put(conn)
    return h.hexdigest()


def get_pieces(pool: Pool, buffers: Buffers, path: str, dest: Path, size: int, streams: int, label: str) -> str:
    """GET ``path`` (``size`` bytes) in pieces of ``buffers.chunk`` over ``streams`` connections into the new
    file ``dest``; its digest. The first failure is raised with every thread of this file finished."""
    chunk, cancel = buffers.chunk, pool.cancel
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        h = integrity.new_hasher()
        npieces = -(-size // chunk)
        if npieces == 0:
            return h.hexdigest()
        n = min(streams, npieces)
        ready: dict[int, tuple[bytearray, int, threading.Semaphore]] = {}
        cond = threading.Condition()
        threads = [threading.Thread(target=_receiver, name=f"http-piece-{label}-{c}", daemon=True,
                                    args=(pool, buffers, path, size, range(c, npieces, n), ready, cond, label))
                   for c in range(n)]
        for t in threads:
            t.start()
        try:
            for k in range(npieces):
                with cond:
                    while k not in ready:
                        cancel.check()
                        cond.wait(POLL_S)
                    buf, length, slots = ready.pop(k)
                view = memoryview(buf)[:length]
                h.update(view)
                _write(fd, view, k * chunk)
                buffers.put(buf)
                slots.release()
                pool.progress.add(length)
        except BaseException as err:
            cancel.fail(err)
        for t in threads:
            t.join()
        if cancel.error is not None:
            raise cancel.error
        return h.hexdigest()
    finally:
        os.close(fd)


def _receiver(pool, buffers, path, size, mine, ready, cond, label):
    """One connection's pieces (``mine``: c, c+n, c+2n, ...), in order, each into a buffer of its own."""
    chunk, cancel = buffers.chunk, pool.cancel
    slots = threading.Semaphore(WINDOW)

    def request(k: int) -> bytes:
        a = k * chunk
        return pool.request("GET", path, f"Range: bytes={a}-{min(a + chunk, size) - 1}\r\n")

    conn = None
    try:
        conn, status, headers = pool.exchange(b"".join(request(k) for k in mine[:PIPELINE]))
        for i, k in enumerate(mine):
            a = k * chunk
            length = min(chunk, size - a)
            want = f"bytes {a}-{a + length - 1}/{size}"
            if i:
                status, headers = conn.head()
            if status != 206:
                raise _status(label, path, status, want)
            if headers.get("content-range") != want or headers.get("content-length") != str(length):
                raise FetchError(f"{label}: asked for {want}, the server answered Content-Range "
                                 f"{headers.get('content-range')!r}, Content-Length {headers.get('content-length')!r} "
                                 "(did the file change?)")
            while not slots.acquire(timeout=POLL_S):
                cancel.check()
            buf = buffers.get()
            try:
                conn.read_into(memoryview(buf)[:length])
            except BaseException:
                buffers.put(buf)
                raise
            if i + PIPELINE < len(mine):
                conn.send(request(mine[i + PIPELINE]))
            with cond:
                ready[k] = (buf, length, slots)
                cond.notify_all()
        pool.put(conn)
    except BaseException as err:  # the calling thread raises the first failure
        if conn is not None:
            conn.close()
        cancel.fail(err)
