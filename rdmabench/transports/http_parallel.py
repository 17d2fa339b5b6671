"""The parallel fetch: a cache directory's files at once (``parallel``), one file over several
connections (``streams``). An rdmabench extension: Lotus itself fetches a cache directory as one
tar stream over one TCP connection (http_client.fetch, used whenever parallel = 1 and streams = 1).

``parallel = P`` plays Lotus's ParallelFetchLimit (a per-process semaphore, one slot per file
transfer: 10 on the miner, 5 on a worker; docs/lotus.md) inside one directory: P worker
threads each take the next file (biggest first, so the longest transfers start first), GET it
on a connection of their own and hash it as it arrives; at most P files are in flight and the
rest wait their turn, as behind the semaphore. ``streams = S`` moves each file bigger than one
chunk over S connections with Range requests, hashed in order in the stream (http_pieces).
Connections are kept alive and reused from file to file (http_conn.Pool, as Go's client, Lotus's,
reuses them): at most P x S are ever open, however many files the directory has.

The routes (http_files, served by our http_server; a Lotus server does not have them):
``HEAD /remote/{type}/{id}`` says file or directory (and a file's size); a directory's listing
is ``GET /remote/{type}/{id}/`` (names checked as the tar path checks them, Lotus's caps
included), its files ``GET /remote/{type}/{id}/{name}``. Every file must arrive with the size the
listing gave. The directory's digest is composed from the per-file digests (integrity.combine),
so nothing is read twice. Everything lands in ``<type>/fetching/<id>`` and is renamed into place
only when the whole item verified (integrity.atomic_destination): the first failure (a short
piece, a dead server, a changed file, a digest mismatch) cancels every other part, shuts its
connections, joins its threads and leaves nothing at the destination.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable

from .. import integrity
from . import http_files
from .base import TransferRecord
from .http_client import FetchError, cache_name_allowed
from .http_conn import Buffers, Cancel, Pool, Progress
from .http_pieces import get_pieces, get_whole

PROTOCOL = "rdmabench-parallel"  # extra["protocol"] of a record this module made; Lotus's own fetch is "lotus"
MAX_LISTING = 16 << 20
MAX_FILES = 100_000


def fetch(url_base: str, token: str, type: str, id: str, dest_root: Path | str, *, expected: str | None = None,
          streams: int = 1, parallel: int = 1, chunk: int = 1 << 20, timeout: float | None = 60.0,
          progress: Callable[[int], None] | None = None, lotus_names: bool = True, transport: str = "http",
          need: int | None = None) -> TransferRecord:
    """GET the item ``{type}/{id}`` into ``<dest_root>/<type>/<id>`` with ``parallel`` files and ``streams``
    connections per file at once. Arguments as http_client.fetch's; ``chunk``: bytes per Range piece (and
    per receive into a buffer). Raises FetchError (IncompleteTransfer, integrity.IntegrityError) with
    nothing left at the destination."""
    if streams < 1 or parallel < 1 or chunk < 1:
        raise ValueError("streams, parallel and chunk must be at least 1")
    dest_root = Path(dest_root)
    typedir = dest_root / type
    if need:
        integrity.check_free_space(dest_root, need)
    final, temp = typedir / id, typedir / "fetching" / id
    item = f"/remote/{type}/{id}"
    cancel, prog = Cancel(), Progress(progress)
    pool, buffers = Pool(url_base, token, timeout, cancel, prog), Buffers(chunk)
    try:
        with integrity.shared_temp_dir(typedir / "fetching"):  # made here, tidied when no fetch is in it
            is_dir, files = _what(pool, item, type, id, lotus_names)
            total = sum(f["size"] for f in files)
            integrity.check_free_space(typedir, total)
            with integrity.atomic_destination(final, expected=expected, temp=temp) as dest:
                if is_dir:
                    os.mkdir(temp)
                    dest.digest = integrity.combine(_fetch_all(files, temp, parallel, pool, buffers, item, streams))
                else:
                    dest.digest = _fetch_one(files[0], temp, pool, buffers, item, streams)
            pool.close()
            return TransferRecord(transport=transport, item=f"{type}/{id}", bytes=total, verified=dest.verified,
                                  digest=dest.digest, wire_bytes=prog.wire,
                                  extra={"kind": "dir" if is_dir else "file", "destination": str(final),
                                         "protocol": PROTOCOL, "streams": streams, "parallel": parallel, "chunk": chunk,
                                         "files": len(files) if is_dir else 1})
    finally:
        pool.close()


def _what(pool: Pool, item: str, type: str, id: str, lotus_names: bool) -> tuple[bool, list[dict]]:
    """(is it a directory, its files as {name, size}; a file item is one file named None)."""
    conn, status, headers = pool.exchange(pool.request("HEAD", item))
    pool.put(conn)
    if status != 200:
        what = {401: "the token was refused", 404: f"the server has no {type} for {id}",
                400: "the server refused the request"}.get(status, "request failed")
        raise FetchError(f"{pool.url_base}{item}: HTTP {status}, {what}")
    if headers.get("content-type", "").startswith("application/x-tar"):
        return True, _listing(pool, item, lotus_names)
    if headers.get("content-length", "").isdigit():
        return False, [{"name": None, "size": int(headers["content-length"])}]
    raise FetchError(f"HEAD {pool.url_base}{item}: a file response without Content-Length")


def _fetch_all(files: list[dict], temp: Path, parallel: int, *args) -> list[tuple[str, int, str]]:
    """Every file of the listing into ``temp``, ``parallel`` at a time; (name, size, digest) of each."""
    cancel: Cancel = args[0].cancel
    todo = sorted(files, key=lambda f: (-f["size"], f["name"]))
    lock = threading.Lock()
    entries: list[tuple[str, int, str]] = []

    def worker():
        try:
            while True:
                cancel.check()
                with lock:
                    if not todo:
                        return
                    f = todo.pop(0)
                digest = _fetch_one(f, temp / f["name"], *args)
                with lock:
                    entries.append((f["name"], f["size"], digest))
        except BaseException as err:
            cancel.fail(err)

    threads = [threading.Thread(target=worker, name=f"http-parallel-{i}", daemon=True)
               for i in range(min(parallel, len(files)))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException as err:  # Ctrl-C here: stop the others before the temporary is removed
        cancel.fail(err)
        for t in threads:
            t.join()
    if cancel.error is not None:
        raise cancel.error
    return entries


def _fetch_one(f: dict, dest: Path, pool: Pool, buffers: Buffers, item: str, streams: int) -> str:
    """One file (the item itself when ``f["name"]`` is None) into ``dest``; its digest."""
    path = item if f["name"] is None else f"{item}/{f['name']}"
    label = f["name"] or item
    if streams > 1 and f["size"] > buffers.chunk:
        return get_pieces(pool, buffers, path, dest, f["size"], streams, label)
    return get_whole(pool, buffers, path, dest, f["size"], label)


def _listing(pool: Pool, item: str, lotus_names: bool) -> list[dict]:
    """The directory's files as the server lists them, every name and size checked."""
    conn, status, headers = pool.exchange(pool.request("GET", item + "/"))
    try:
        if status != 200 or not headers.get("content-type", "").startswith("application/json"):
            raise FetchError(f"GET {pool.url_base}{item}/: HTTP {status}: this server does not list a directory's "
                             "files (rdmabench's extension: a Lotus server fetches a directory only as one tar "
                             "stream; use parallel = 1 and streams = 1 with it)")
        n = headers.get("content-length", "")
        if not n.isdigit() or int(n) > MAX_LISTING:
            raise FetchError(f"GET {pool.url_base}{item}/: a listing needs a Content-Length of at most {MAX_LISTING}")
        body = bytearray(int(n))
        conn.read_into(memoryview(body))
    except BaseException:
        conn.close()
        raise
    pool.put(conn)
    bad = FetchError(f"GET {pool.url_base}{item}/: not a listing of files (name, size)")
    try:
        files = json.loads(body)["files"]
    except (ValueError, KeyError, TypeError):
        raise bad from None
    if not isinstance(files, list) or len(files) > MAX_FILES:
        raise bad
    out = []
    for f in files:
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or type(f.get("size")) is not int \
                or f["size"] < 0:
            raise bad
        out.append({"name": f["name"], "size": f["size"]})
    seen = set()
    for f in out:
        if not http_files.plain_name(f["name"]) or f["name"] in seen:
            raise FetchError(f"the listing of {item} names {f['name'][:80]!r}: not a plain file name, or twice")
        seen.add(f["name"])
        if lotus_names and (why := cache_name_allowed(f["name"], f["size"])):
            raise FetchError(f"the listing of {item} refused: {why}")
    return out
