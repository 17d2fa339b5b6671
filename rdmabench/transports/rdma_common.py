"""What both ends of the rdma transports share: the ring's defaults, the endpoint, the chunk loops.

Their control messages travel on rdmabench.wire's channel (authenticated, bounded lines).
"""

from __future__ import annotations

import xxhash

from .. import devices
from ..engines import native as engine
from ..errors import RdmabenchError
from .base import TransportError

CHUNK = 1 << 20
INFLIGHT = 8
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


def open_endpoint(options: dict, chunk: int, inflight: int) -> engine.Endpoint:
    if not isinstance(chunk, int) or not isinstance(inflight, int) or chunk <= 0 or inflight <= 0 \
            or chunk * inflight > MAX_REGISTERED:
        raise TransportError(f"rdma: chunk {chunk} x inflight {inflight} is not a usable ring "
                             f"(at most {MAX_REGISTERED} bytes registered)")
    device, gid = default_device(options)
    try:
        return engine.open_endpoint(device=device, gid_index=gid, qps=1, size=chunk, slots=inflight,
                                    depth=2 * inflight + 8)
    except RdmabenchError as exc:
        raise TransportError(f"rdma: cannot open {device}: {exc}") from exc


def fx(name: str, ep, io, size: int, timeout_ms: int, abort_after: int = -1) -> dict:
    """One of native/filexfer.c's chunk loops, the GIL released while it runs."""
    from rdmabench import _native
    return getattr(_native, name)(ep.raw, io, size, timeout_ms, abort_after)


def blob_digest(data) -> str:
    return xxhash.xxh3_128(data).hexdigest()
