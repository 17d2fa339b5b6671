"""What both ends of the rdma transports share: the ring's defaults, the endpoint, the chunk loops,
opening and re-reading the files.

Their control messages travel on rdmabench.wire's channel (authenticated, bounded lines).
"""

from __future__ import annotations

import os
from pathlib import Path

import xxhash

from .. import devices, integrity
from ..engines import native as engine
from ..errors import RdmabenchError
from .base import TransportError

CHUNK = 1 << 20
INFLIGHT = 16  # chunks in flight per stream (config.TRANSFER_DEFAULTS says the same)
STREAMS = 1
PARALLEL = 1
MAX_FILES = 512  # files of one item, all open at once during its transfer (a 64 GiB cache holds ~30)
TIMEOUT_MS = 30000
MAX_REGISTERED = 1 << 30
REPLY_WAIT_S = 600.0  # for a reply or the next request: the other end may be digesting a whole sector


def default_device(options: dict) -> tuple[str, int]:
    """(device, gid_index): the options', else the only RDMA device here and its recommended GID."""
    device, gid = options.get("device"), options.get("gid_index")
    if not device:
        try:
            device = devices.choose(None).name
        except RdmabenchError as err:
            raise TransportError(f"rdma: {err}") from None
    if gid is None:
        dev = devices.require(device)
        gid = next((p.recommended_gid_index for p in dev.ports if p.recommended_gid_index is not None), None)
        if gid is None:
            raise TransportError(f"rdma: {device} has no usable GID; give options 'gid_index'")
    return device, int(gid)


def open_endpoint(options: dict, chunk: int, inflight: int, streams: int = STREAMS) -> engine.Endpoint:
    """The ring: ``streams`` QPs, each with ``inflight`` slots of ``chunk`` bytes."""
    if not all(isinstance(v, int) and v > 0 for v in (chunk, inflight, streams)) or chunk % 4096 \
            or chunk * inflight * streams > MAX_REGISTERED:
        raise TransportError(f"rdma: chunk {chunk} x inflight {inflight} x streams {streams} is not a usable ring "
                             f"(chunk a multiple of 4096; at most {MAX_REGISTERED} bytes registered)")
    device, gid = default_device(options)
    try:
        return engine.open_endpoint(device=device, gid_index=gid, qps=streams, size=chunk, slots=inflight,
                                    depth=2 * inflight + 8)
    except RdmabenchError as exc:
        raise TransportError(f"rdma: cannot open {device}: {exc}") from exc


def fx(name: str, ep, files: list, timeout_ms: int, parallel: int = PARALLEL, abort_after: int = -1,
       corrupt_at: int = -1) -> dict:
    """One of native/filexfer.c's chunk loops over ``files`` [(fd or buffer, size)], the GIL released
    while it runs; its result carries each file's XXH3-128 digest of the bytes as they passed."""
    from rdmabench import _native
    return getattr(_native, name)(ep.raw, files, timeout_ms, parallel, abort_after, corrupt_at)


def digest_impl() -> str:
    """Which XXH3-128 build the C pipeline digests with here ("xxh3-128 (avx2)" or "(sse2)")."""
    from rdmabench import _native
    return _native.digest_impl()


def open_files(paths: list[Path], write: bool, direct: bool) -> list[int]:
    """File descriptors for a transfer (all or none): read-only, or created for writing; O_DIRECT if asked,
    and a clear error when the file system refuses it (ramfs, and tmpfs before Linux 6.6, do)."""
    fds: list[int] = []
    try:
        for p in paths:
            try:
                fds.append(integrity.open_file(p, write, direct))
            except integrity.DirectIORefused as err:
                raise TransportError(f"rdma: direct = true, but {err}; set direct = false or use a disk file "
                                     "system") from None
    except BaseException:
        close_all(fds)
        raise
    return fds


def close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def reread(paths: list[Path]) -> list[str]:
    """verify = "reread": each landed file flushed, its cached pages dropped, then digested from the disk."""
    out = []
    for p in paths:
        integrity.drop_cached_pages(p)
        out.append(integrity.digest_file(p))
    return out


def item_digest(kind: str, files: list[tuple[str, int]], digests: list[str]) -> str:
    """The item's digest (integrity.digest's definition) from its files' stream digests."""
    if kind == "dir":
        return integrity.combine([(n, s, d) for (n, s), d in zip(files, digests)])
    return digests[0]


def blob_digest(data) -> str:
    return xxhash.xxh3_128(data).hexdigest()
