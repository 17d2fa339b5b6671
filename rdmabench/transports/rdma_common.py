"""What both ends of the rdma transports share: the ring's defaults, the endpoint, the control wire.

The control wire is newline-delimited JSON over TCP. Each connection starts with the shared-secret
handshake (rdmabench.auth, the passive end challenging); lines are bounded (``MAX_LINE``) and a line
that is not a JSON object is an error, never a crash.
"""

from __future__ import annotations

import json
import socket

import xxhash

from .. import auth, devices
from ..engines import native as engine
from ..errors import RdmabenchError
from .base import TransportError

CHUNK = 1 << 20
INFLIGHT = 8
TIMEOUT_MS = 30000
MAX_REGISTERED = 1 << 30
MAX_LINE = 1 << 20  # a cache directory's listing is a few dozen names: far below this


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


class Wire:
    """Newline-delimited JSON over a TCP socket, each line at most MAX_LINE bytes."""

    def __init__(self, sock: socket.socket, peer: str = "the peer"):
        self.sock = sock
        self.peer = peer
        self.f = sock.makefile("rwb")

    def send(self, obj: dict) -> None:
        self.f.write(json.dumps(obj).encode() + b"\n")
        self.f.flush()

    def recv(self) -> dict:
        line = self.f.readline(MAX_LINE + 1)
        if not line:
            raise TransportError("rdma: the peer closed the control connection")
        if len(line) > MAX_LINE:
            raise TransportError(f"rdma: {self.peer} sent a control line over {MAX_LINE} bytes")
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError):
            raise TransportError(f"rdma: {self.peer} sent a control line that is not JSON") from None
        if not isinstance(msg, dict):
            raise TransportError(f"rdma: {self.peer} sent a control line that is not a JSON object")
        return msg

    def authenticate_client(self, secret: bytes) -> None:
        auth.client_handshake(self.send, self.recv, secret, self.peer)

    def authenticate_server(self, secret: bytes, timeout_s: float = auth.WAIT_S) -> None:
        self.sock.settimeout(timeout_s)
        auth.serve_handshake(self.send, self.recv, secret, self.peer)
        self.sock.settimeout(None)

    def close(self) -> None:
        for c in (self.f, self.sock):
            try:
                c.close()
            except OSError:
                pass
