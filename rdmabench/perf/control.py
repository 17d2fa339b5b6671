"""The control channel between `rdmabench serve` and `rdmabench run`.

TCP, one JSON object per line, each carrying the protocol version:
    {"v": 1, "type": "hello", ...}
Every receive has a deadline, so a peer that dies or stalls is an error within
a bound, never a hang. Message types, in order:

    client -> server                     server -> client
                                         auth_challenge {nonce}     (rdmabench.auth: before anything else)
    auth {nonce, proof}                  auth_ok {proof} | error {message}, then it closes
    hello {tool}                         hello {context}
    setup {test, size, qps, ...}         ready {info} | error {message}
    connect {info}                       connected
    go                                   started (then runs its loop, if it has one)
    done                                 result {raw, cpu}
    teardown                             closed
    bye
"""

from __future__ import annotations

import json
import socket
import time

from .. import auth
from ..errors import RdmabenchError

VERSION = 1
DEFAULT_PORT = 18515  # perftest's port: a firewall opened for perftest works for us
MAX_LINE = 64 << 20  # raw samples travel here (server -> client); bounded by the options, never by the run's length
MAX_REQUEST = 1 << 20  # what a server reads from a client: setups, transfer requests, never data


class ControlError(RdmabenchError):
    """The control connection broke, timed out or said something unexpected."""

    peer_gone = False  # True: the peer hung up or went quiet, so there is no one to answer


class PeerGone(ControlError):
    """The control connection broke or the peer stopped answering."""

    peer_gone = True


class Channel:
    def __init__(self, sock: socket.socket, peer: str, max_line: int = MAX_LINE):
        self.sock = sock
        self.peer = peer
        self.max_line = max_line
        self._file = sock.makefile("rb")

    @classmethod
    def connect(cls, host: str, port: int, timeout: float, wait: float = 0.0, secret: bytes | None = None) -> "Channel":
        """Connect and prove we hold the shared secret, retrying for `wait` seconds while nothing listens yet
        (a peer that is still starting)."""
        secret = secret if secret is not None else auth.load_secret()  # no secret: say so before any network
        deadline = time.monotonic() + wait
        while True:
            try:
                sock = socket.create_connection((host, port), timeout=timeout)
                break
            except OSError as err:
                if time.monotonic() < deadline and isinstance(err, ConnectionRefusedError):
                    time.sleep(0.5)
                    continue
                raise ControlError(f"cannot reach rdmabench serve at {host}:{port}: "
                                   f"{err.strerror or err} (is `rdmabench serve` running there?)") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        chan = cls(sock, f"{host}:{port}")
        try:
            auth.client_handshake(chan._send_dict, lambda: chan.recv(auth.WAIT_S + 5), secret, chan.peer)
        except BaseException:
            chan.close()
            raise
        return chan

    @classmethod
    def accept(cls, sock: socket.socket, peer: str, secret: bytes) -> "Channel":
        """The server's side of a new connection: its proof is checked before anything it says is read as
        a request. AuthError (the peer told why, the socket closed) if it has no proof."""
        chan = cls(sock, peer, max_line=MAX_REQUEST)
        try:
            auth.serve_handshake(chan._send_dict, lambda: chan.recv(auth.WAIT_S), secret, peer)
        except BaseException:
            chan.close()
            raise
        return chan

    def _send_dict(self, msg: dict) -> None:
        self.send(msg["type"], **{k: v for k, v in msg.items() if k != "type"})

    def send(self, kind: str, **fields) -> None:
        data = json.dumps({"v": VERSION, "type": kind, **fields}, allow_nan=False).encode() + b"\n"
        try:
            self.sock.sendall(data)
        except OSError as err:
            raise PeerGone(f"control connection to {self.peer} lost while sending {kind!r}: {err}") from None

    def recv(self, timeout: float, expect: str | tuple[str, ...] | None = None) -> dict:
        self.sock.settimeout(timeout)
        try:
            line = self._file.readline(self.max_line + 1)
        except socket.timeout:
            raise PeerGone(f"no answer from {self.peer} within {timeout:g} s"
                               + (f" (waiting for {expect!r})" if expect else "")) from None
        except OSError as err:
            raise PeerGone(f"control connection to {self.peer} lost: {err}") from None
        if not line:
            raise PeerGone(f"{self.peer} closed the control connection"
                               + (f" (waiting for {expect!r})" if expect else ""))
        if len(line) > self.max_line:
            raise ControlError(f"{self.peer} sent a message over {self.max_line} bytes")
        try:
            msg = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise ControlError(f"{self.peer} sent something that is not an rdmabench control message") from None
        if not isinstance(msg, dict) or msg.get("v") != VERSION:
            raise ControlError(f"{self.peer} speaks control protocol version {msg.get('v') if isinstance(msg, dict) else '?'}"
                               f", this rdmabench speaks {VERSION}: use the same rdmabench version at both ends")
        if msg.get("type") == "error":
            raise ControlError(f"{self.peer}: {msg.get('message')}")
        if expect is not None:
            wanted = (expect,) if isinstance(expect, str) else expect
            if msg.get("type") not in wanted:
                raise ControlError(f"{self.peer} sent {msg.get('type')!r} where {' or '.join(wanted)} was expected")
        return msg

    def close(self) -> None:
        try:
            self._file.close()
            self.sock.close()
        except OSError:
            pass
