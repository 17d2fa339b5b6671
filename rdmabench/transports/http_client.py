"""Lotus's fetch client: GET one sector file or cache directory, land it under fetching/, then rename.

As ``storage/paths/remote.go`` and ``tarutil`` do it: the body goes to ``<dest_root>/<type>/fetching/<id>``
(a cache tar is unpacked into the directory ``fetching/<id>/``, accepting only the cache file names
Lotus knows, each under Lotus's size cap) and is renamed to ``<dest_root>/<type>/<id>`` at the end.
Unlike Lotus, what arrived is hashed as it arrives and compared with the expected digest before
the rename, and a stream that ends early (no final chunk, a short member, fewer bytes than
Content-Length) is an error: the destination then has nothing, never a partial file or a short
directory. The receive loop reads into one preallocated 1 MiB buffer (``recv_into`` with
MSG_WAITALL) and ``os.write``s from it.
"""

from __future__ import annotations

import os
import re
import socket
import tarfile
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from .. import integrity
from ..errors import RdmabenchError
from .base import TransferRecord

BUFFER = 1 << 20

# Lotus's tarutil accepts these cache file names, each up to a cap (docs/lotus.md).
_CAPS = [
    (re.compile(r"\Ap_aux\Z"), 64),
    (re.compile(r"\At_aux\Z"), 10_240),
    (re.compile(r"\Asc-02-data-tree-r-last(-\d+)?\.dat\Z"), 10_000_000),
    (re.compile(r"\Asc-02-data-layer-\d+\.dat\Z"), 65 << 30),
    (re.compile(r"\Asc-02-data-tree-c(-\d+)?\.dat\Z"), 5 << 30),
    (re.compile(r"\Asc-02-data-tree-d\.dat\Z"), 130 << 30),
]


class FetchError(RdmabenchError):
    """The fetch failed; nothing was left at the destination."""


class IncompleteTransfer(FetchError):
    """The stream ended before all the data arrived (server gone, connection reset, short tar)."""


def cache_cap(name: str) -> int:
    """Lotus's size cap for a cache file name (0 for a name it does not accept)."""
    return next((cap for pattern, cap in _CAPS if pattern.match(name)), 0)


def cache_name_allowed(name: str, size: int) -> str | None:
    """None if Lotus would accept this cache member, else why not."""
    for pattern, cap in _CAPS:
        if pattern.match(name):
            return None if size <= cap else f"{name} is {size} bytes, over Lotus's cap of {cap}"
    return f"{name!r} is not a cache file name Lotus accepts"


class _Stream:
    """A socket read through one preallocated buffer: lines for headers, bulk reads straight to a sink."""

    def __init__(self, sock: socket.socket, bufsize: int):
        self.sock = sock
        self.buf = bytearray(bufsize)
        self.mv = memoryview(self.buf)
        self.lo = self.hi = 0
        self.wire = 0

    def _recv(self, view) -> int:
        try:
            n = self.sock.recv_into(view)
        except (ConnectionResetError, BrokenPipeError) as err:
            raise IncompleteTransfer(f"connection lost: {err.strerror or err}") from None
        except socket.timeout:
            raise IncompleteTransfer("no data from the server within the timeout") from None
        self.wire += n
        return n

    def readline(self, limit: int = 65536) -> bytes:
        while True:
            i = self.buf.find(b"\n", self.lo, self.hi)
            if i >= 0:
                line = bytes(self.mv[self.lo:i + 1])
                self.lo = i + 1
                return line
            if self.hi - self.lo > limit:
                raise FetchError("malformed response: header line too long")
            if self.lo:
                n = self.hi - self.lo
                self.mv[:n] = self.mv[self.lo:self.hi]
                self.lo, self.hi = 0, n
            got = self._recv(self.mv[self.hi:])
            if not got:
                raise IncompleteTransfer("the server closed the connection in the middle of a header")
            self.hi += got

    def read_to(self, n: int, sink: Callable[[memoryview], None]) -> int:
        """Pass exactly ``n`` bytes to ``sink``; IncompleteTransfer if the stream ends first."""
        left = n
        if self.hi > self.lo:
            k = min(left, self.hi - self.lo)
            sink(self.mv[self.lo:self.lo + k])
            self.lo += k
            left -= k
        if self.lo == self.hi:
            self.lo = self.hi = 0
        size = len(self.buf)
        while left:
            want = min(left, size)
            try:
                got = self.sock.recv_into(self.mv[:want], want, socket.MSG_WAITALL)
            except (ConnectionResetError, BrokenPipeError) as err:
                raise IncompleteTransfer(f"connection lost after {n - left} of {n} bytes: {err.strerror}") from None
            except socket.timeout:
                raise IncompleteTransfer(f"timed out after {n - left} of {n} bytes") from None
            if not got:
                raise IncompleteTransfer(f"the server closed the connection after {n - left} of {n} bytes")
            self.wire += got
            sink(self.mv[:got])
            left -= got
        return n

    def read(self, n: int) -> bytes:
        out = bytearray()
        self.read_to(n, out.extend)
        return bytes(out)


class _Chunked:
    """The body of a chunked response; ``eof`` once the final zero-length chunk has been read."""

    def __init__(self, stream: _Stream):
        self.s = stream
        self.left = 0
        self.eof = False
        self.started = False

    def _next_chunk(self) -> None:
        if self.started:
            if self.s.read(2) != b"\r\n":
                raise FetchError("malformed chunked body: missing CRLF after a chunk")
        self.started = True
        line = self.s.readline().split(b";", 1)[0].strip()
        try:
            self.left = int(line, 16)
        except ValueError:
            raise FetchError(f"malformed chunked body: bad chunk size {line[:40]!r}") from None
        if self.left == 0:
            while self.s.readline() not in (b"\r\n", b"\n"):
                pass  # trailers
            self.eof = True

    def at_eof(self) -> bool:
        while not self.eof and self.left == 0:
            self._next_chunk()
        return self.eof

    def read_to(self, n: int, sink) -> None:
        while n:
            if self.at_eof():
                raise IncompleteTransfer(f"the body ended {n} bytes short")
            k = min(n, self.left)
            self.s.read_to(k, sink)
            self.left -= k
            n -= k

    def read(self, n: int) -> bytes:
        out = bytearray()
        self.read_to(n, out.extend)
        return bytes(out)


def _connect(url_base: str, timeout: float | None) -> tuple[socket.socket, str, str]:
    u = urlsplit(url_base)
    if u.scheme != "http" or not u.hostname:
        raise FetchError(f"{url_base!r} is not an http:// URL")
    port = u.port or 80
    try:
        sock = socket.create_connection((u.hostname, port), timeout=timeout)
    except OSError as err:
        raise FetchError(f"cannot connect to {u.hostname}:{port}: {err.strerror or err}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, u.netloc, u.path.rstrip("/")


def _request(sock, netloc: str, path: str, token: str) -> None:
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {netloc}\r\nAuthorization: Bearer {token}\r\n"
                  f"User-Agent: rdmabench\r\nConnection: close\r\n\r\n").encode())


def _response_head(s: _Stream) -> tuple[int, dict[str, str]]:
    status = s.readline().decode("latin-1").split(None, 2)
    if len(status) < 2 or not status[0].startswith("HTTP/"):
        raise FetchError(f"not an HTTP response: {' '.join(status)[:80]!r}")
    headers = {}
    while (line := s.readline()) not in (b"\r\n", b"\n"):
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(status[1]), headers


def fetch(url_base: str, token: str, type: str, id: str, dest_root: Path | str, *,
          expected: str | None = None, bufsize: int = BUFFER, timeout: float | None = 60.0,
          progress: Callable[[int], None] | None = None, lotus_names: bool = True,
          transport: str = "http", need: int | None = None) -> TransferRecord:
    """GET ``{url_base}/remote/{type}/{id}`` into ``<dest_root>/<type>/<id>``, as Lotus's fetch does.

    ``expected``: the digest to check before the rename (integrity.digest of the source). ``timeout``:
    seconds without data before giving up (Lotus has none; we do not hang forever). ``progress(bytes)``
    is called after every buffer. ``lotus_names``: accept only the cache names Lotus accepts. ``need``:
    bytes the destination must have free (a file's Content-Length is checked anyway) before anything is written.
    Returns a TransferRecord; raises FetchError (IncompleteTransfer, integrity.IntegrityError) with
    nothing left at the destination.
    """
    dest_root = Path(dest_root)
    typedir = dest_root / type
    if need:
        integrity.check_free_space(dest_root, need)
    final = typedir / id
    temp = typedir / "fetching" / id
    sock, netloc, prefix = _connect(url_base, timeout)
    got = 0
    try:
        with integrity.shared_temp_dir(typedir / "fetching"):  # made here, tidied when no fetch is in it
            _request(sock, netloc, f"{prefix}/remote/{type}/{id}", token)
            s = _Stream(sock, bufsize)
            status, headers = _response_head(s)
            if status != 200:
                detail = ""
                if headers.get("content-length", "0").isdigit() and 0 < int(headers["content-length"]) < 4096:
                    detail = ": " + s.read(int(headers["content-length"])).decode(errors="replace").strip()
                what = {401: "the token was refused", 404: f"the server has no {type} for {id}",
                        400: "the server refused the request"}.get(status, "request failed")
                raise FetchError(f"GET {url_base}/remote/{type}/{id}: HTTP {status}, {what}{detail}")
            ctype = headers.get("content-type", "")
            with integrity.atomic_destination(final, expected=expected, temp=temp) as dest:
                if ctype.startswith("application/x-tar"):
                    if headers.get("transfer-encoding", "").lower() != "chunked":
                        raise FetchError("a directory must come chunked (the end of the tar is otherwise unknowable)")
                    got, dest.digest = _untar(_Chunked(s), temp, lotus_names, progress)
                    kind = "dir"
                else:
                    if "content-length" not in headers:
                        raise FetchError("a file response without Content-Length")
                    integrity.check_free_space(typedir, int(headers["content-length"]))
                    got, dest.digest = _receive_file(s, int(headers["content-length"]), temp, progress)
                    kind = "file"
            return TransferRecord(transport=transport, item=f"{type}/{id}", bytes=got,
                                  verified=dest.verified, digest=dest.digest, wire_bytes=s.wire,
                                  extra={"kind": kind, "destination": str(final)})
    finally:
        sock.close()


def _writer(fd: int, h, counter: list, progress):
    write = os.write
    update = h.update

    if not progress:
        def fast(view: memoryview) -> None:
            update(view)
            n = write(fd, view)
            while n < len(view):
                n += write(fd, view[n:])
        return fast

    def with_progress(view: memoryview) -> None:
        update(view)
        n = write(fd, view)
        while n < len(view):
            n += write(fd, view[n:])
        counter[0] += len(view)
        progress(counter[0])
    return with_progress


def _receive_file(s: _Stream, length: int, path: Path, progress) -> tuple[int, str]:
    h = integrity.new_hasher()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        s.read_to(length, _writer(fd, h, [0], progress))
    finally:
        os.close(fd)
    return length, h.hexdigest()


def _untar(body: _Chunked, dirpath: Path, lotus_names: bool, progress) -> tuple[int, str]:
    os.mkdir(dirpath)
    entries: list[tuple[str, int, str]] = []
    total = [0]
    pax: dict[str, str] = {}
    while not body.at_eof():
        block = body.read(512)
        if block == bytes(512):
            break  # an end-of-archive block (Lotus never sends one; others may)
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.TarError as err:
            raise FetchError(f"bad tar header in the cache stream: {err}") from None
        size = info.size
        data_len = size + (-size % 512)
        if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME):
            raw = body.read(data_len)[:size]
            if info.type == tarfile.GNUTYPE_LONGNAME:
                pax["path"] = raw.rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif info.type == tarfile.XHDTYPE:
                pax.update(_pax_records(raw))
            continue
        name = pax.pop("path", info.name)
        if "size" in pax:
            size = int(pax.pop("size"))
            data_len = size + (-size % 512)
        pax.clear()
        if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise FetchError(f"cache stream member {name!r} is not a regular file")
        if "/" in name or name in ("", ".", "..") or name.startswith("."):
            raise FetchError(f"cache stream member {name!r} is not a plain file name")
        if lotus_names and (why := cache_name_allowed(name, size)):
            raise FetchError(f"cache stream refused: {why}")
        h = integrity.new_hasher()
        fd = os.open(dirpath / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            body.read_to(size, _writer(fd, h, total, progress))
        finally:
            os.close(fd)
        if data_len > size:
            body.read(data_len - size)
        entries.append((name, size, h.hexdigest()))
    while not body.at_eof():  # drain anything after an end-of-archive block
        body.read_to(body.left, lambda v: None)
    return sum(e[1] for e in entries), integrity.combine(entries)


def _pax_records(raw: bytes) -> dict[str, str]:
    out, i = {}, 0
    while i < len(raw):
        sp = raw.index(b" ", i)
        length = int(raw[i:sp])
        k, _, v = raw[sp + 1:i + length - 1].partition(b"=")
        out[k.decode()] = v.decode("utf-8", "surrogateescape")
        i += length
    return out
