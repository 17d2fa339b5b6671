"""Out-of-band exchange over a plain TCP socket: newline-delimited JSON, versioned.

Every message is one JSON object on one line carrying ``"v": 1``. Used to swap
``PeerInfo`` before connecting RC QPs by hand (the path that needs no rdma_cm), and as a
control channel (``{"op": "verify", ...}``) next to the RDMA traffic.
"""

from __future__ import annotations

import json
import socket
import time

from rdmabench.errors import VerbsError

PROTOCOL_VERSION = 1
MAX_LINE = 1 << 20


class PeerUnavailable(VerbsError):
    """The peer could not be reached or refused us: nothing was exchanged, retrying is safe."""


class Channel:
    """A connected TCP socket speaking newline JSON with a per-message timeout."""

    def __init__(self, sock: socket.socket, peer: str, timeout_s: float = 10.0):
        self.sock = sock
        self.peer = peer
        self.timeout_s = timeout_s
        self._buf = b""
        sock.settimeout(timeout_s)

    def send(self, msg: dict) -> None:
        line = json.dumps({"v": PROTOCOL_VERSION, **msg}, separators=(",", ":")).encode() + b"\n"
        try:
            self.sock.sendall(line)
        except OSError as exc:
            raise VerbsError(f"sending to {self.peer} failed: {exc}") from exc

    def recv(self, timeout_s: float | None = None) -> dict:
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise VerbsError(f"no message from {self.peer} within {timeout_s:g} s")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as exc:
                raise VerbsError(f"receiving from {self.peer} failed: {exc}") from exc
            if not chunk:
                raise VerbsError(f"{self.peer} closed the connection")
            self._buf += chunk
            if len(self._buf) > MAX_LINE:
                raise VerbsError(f"{self.peer} sent a line over {MAX_LINE} bytes")
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except ValueError as exc:
            raise VerbsError(f"{self.peer} sent something that is not JSON: {line[:80]!r}") from exc
        if not isinstance(msg, dict) or msg.get("v") != PROTOCOL_VERSION:
            raise VerbsError(f"{self.peer} speaks protocol {msg.get('v') if isinstance(msg, dict) else '?'}, "
                             f"we speak v{PROTOCOL_VERSION}")
        return msg

    def request(self, msg: dict, timeout_s: float | None = None) -> dict:
        self.send(msg)
        return self.recv(timeout_s)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(host: str, port: int, timeout_s: float = 5.0) -> Channel:
    """Client side. An unreachable or refusing peer raises PeerUnavailable naming host:port."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as exc:  # refused, unreachable, timed out
        raise PeerUnavailable(f"cannot reach {host}:{port} over TCP within {timeout_s:g} s: {exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Channel(sock, f"{host}:{port}", timeout_s)


def connect_retry(host: str, port: int, wait_s: float, timeout_s: float = 5.0) -> Channel:
    """Keep trying ``connect`` until it works or ``wait_s`` is over (for a peer still booting)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return connect(host, port, min(timeout_s, max(0.1, deadline - time.monotonic())))
        except PeerUnavailable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


class Listener:
    """Server side: a listening TCP socket whose ``accept`` gives up after a timeout."""

    def __init__(self, bind_ip: str, port: int, backlog: int = 8):
        self.where = f"{bind_ip}:{port}"
        self.sock = socket.socket(socket.AF_INET6 if ":" in bind_ip else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((bind_ip, port))
            self.sock.listen(backlog)
        except OSError as exc:
            self.sock.close()
            raise VerbsError(f"cannot listen on {self.where}: {exc}") from exc
        self.port = self.sock.getsockname()[1]

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self, timeout_s: float = 30.0, msg_timeout_s: float = 10.0) -> Channel:
        self.sock.settimeout(timeout_s)
        try:
            conn, addr = self.sock.accept()
        except socket.timeout as exc:
            raise VerbsError(f"no TCP connection to {self.where} within {timeout_s:g} s") from exc
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Channel(conn, f"{addr[0]}:{addr[1]}", msg_timeout_s)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def exchange_info(chan: Channel, local, timeout_s: float | None = None):
    """Send our PeerInfo and receive theirs (both ends call this; the lines cross harmlessly)."""
    from rdmabench.verbs.resources import PeerInfo  # pyverbs only when RDMA is really involved

    chan.send({"type": "peer_info", "info": local.to_dict()})
    msg = chan.recv(timeout_s)
    if msg.get("type") != "peer_info":
        raise VerbsError(f"{chan.peer} sent {msg.get('type')!r} where connection info was expected")
    return PeerInfo.from_dict(msg.get("info") or {})
