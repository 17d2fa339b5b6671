"""The one framing of every control message rdmabench sends over TCP, and the listener that takes them.

TCP, one JSON object per line, each carrying the protocol version ``{"v": 1, ...}``. Every receive
has a deadline, so a peer that dies or stalls is an error within a bound, never a hang; a line has
a bounded length (a server reads at most MAX_REQUEST from a client). A connection opens the same
way everywhere:

    client -> server                     server -> client
                                         auth_challenge {nonce}     (rdmabench.auth: before anything else)
    auth {nonce, proof}                  auth_ok {proof} | error {message}, then it closes
    hello {service, tool}                hello {service, context, ...} | error {message}

after which the service named in the hello speaks its own messages over the same channel
(rdmabench.serve lists the services of `rdmabench serve`). ``{"type": "error", "message": ...}`` is
an error whatever the service: ``recv`` raises it as a WireError.

``Server`` is the accepting side: each new connection proves the shared secret in a thread of its
own (at most MAX_PENDING at once, each within auth.WAIT_S), says which service it wants, and is
handed to that service's handler in its own thread. Whatever a handler raises costs that
connection only; the client is told why unless it is the one who left.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from typing import Callable

from . import auth
from .errors import PeerUnavailable, RdmabenchError

VERSION = 1
MAX_LINE = 64 << 20  # raw samples travel server -> client; bounded by the options, never by the run's length
MAX_REQUEST = 1 << 20  # what a server reads from a client: setups, transfer requests, never data
MAX_PENDING = 32  # connections proving themselves at once; more are turned away
HELLO_WAIT_S = 30.0
DEFAULT_PORT = 18515  # `rdmabench serve`'s: perftest's port, so a firewall opened for perftest works for us


class WireError(RdmabenchError):
    """The control connection broke, timed out or said something unexpected."""

    peer_gone = False  # True: the peer hung up or went quiet, so there is no one to answer


class PeerGone(WireError):
    """The control connection broke or the peer stopped answering."""

    peer_gone = True


def encode(msg: dict) -> bytes:
    """One message as it travels (without the line end): JSON carrying the protocol version."""
    return json.dumps({"v": VERSION, **msg}, allow_nan=False, separators=(",", ":")).encode()


def decode(line: bytes, peer: str) -> dict:
    """A received message, checked to be a JSON object of our protocol version; WireError otherwise."""
    try:
        msg = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise WireError(f"{peer} sent something that is not an rdmabench control message") from None
    if not isinstance(msg, dict) or msg.get("v") != VERSION:
        raise WireError(f"{peer} speaks control protocol version {msg.get('v') if isinstance(msg, dict) else '?'}, "
                        f"this rdmabench speaks {VERSION}: use the same rdmabench version at both ends")
    return msg


class Channel:
    """One authenticated control connection. ``greeting`` is the server's hello (client side)."""

    def __init__(self, sock: socket.socket, peer: str, max_line: int = MAX_LINE):
        self.sock = sock
        self.peer = peer
        self.max_line = max_line
        self.greeting: dict = {}
        self._file = sock.makefile("rb")

    @classmethod
    def connect(cls, host: str, port: int, service: str, timeout: float = 10.0, wait: float = 0.0,
                secret: bytes | None = None, **hello) -> "Channel":
        """Connect, prove we hold the shared secret and open ``service``, retrying for ``wait`` seconds
        while nothing listens yet (a peer that is still starting)."""
        secret = secret if secret is not None else auth.load_secret()  # no secret: say so before any network
        deadline = time.monotonic() + wait
        while True:
            try:
                sock = socket.create_connection((host, port), timeout=timeout)
                break
            except OSError as err:
                if time.monotonic() < deadline and isinstance(err, (ConnectionRefusedError, TimeoutError)):
                    time.sleep(0.5)
                    continue
                raise PeerUnavailable(f"cannot reach rdmabench serve at {host}:{port}: {err.strerror or err} "
                                      f"(is `rdmabench serve` running there?)") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        chan = cls(sock, f"{host}:{port}")
        try:
            auth.client_handshake(chan.send_msg, lambda: chan.recv(auth.WAIT_S + timeout), secret, chan.peer)
            chan.send("hello", **{"service": service, "tool": "rdmabench", **hello})
            chan.greeting = chan.recv(HELLO_WAIT_S + timeout, "hello")
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
            auth.serve_handshake(chan.send_msg, lambda: chan.recv(auth.WAIT_S), secret, peer)
        except BaseException:
            chan.close()
            raise
        return chan

    def send_msg(self, msg: dict) -> None:
        data = encode(msg) + b"\n"
        try:
            self.sock.sendall(data)
        except OSError as err:
            raise PeerGone(f"control connection to {self.peer} lost while sending {msg.get('type')!r}: "
                           f"{err}") from None

    def send(self, kind: str, /, **fields) -> None:
        self.send_msg({"type": kind, **fields})

    @contextlib.contextmanager
    def keepalive(self, kind: str, every: float):
        """While the body runs, send ``kind`` every ``every`` seconds from a thread of its own.

        For a step of unknown length (a benchmark run of N iterations) that leaves the channel alone: the
        peer's bounded wait then measures this side's silence, not the step's length. The body must not
        use the channel; the thread has stopped when the block ends. A failed send ends the beats
        quietly: the body's own next use of the channel reports the lost peer.
        """
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every):
                try:
                    self.send(kind)
                except RdmabenchError:
                    return

        thread = threading.Thread(target=beat, name=f"keepalive-{self.peer}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def recv_after(self, kind: str, timeout: float, expect: str) -> dict:
        """The next ``expect`` message, skipping any number of ``kind`` keepalives (see keepalive); each
        wait, keepalive or not, is bounded by ``timeout``."""
        while True:
            msg = self.recv(timeout, (kind, expect))
            if msg["type"] == expect:
                return msg

    def recv(self, timeout: float, expect: str | tuple[str, ...] | None = None) -> dict:
        """The next message (its ``type`` one of ``expect`` when given); an ``error`` message raises."""
        self.sock.settimeout(timeout)
        waiting = f" (waiting for {expect!r})" if expect else ""
        try:
            line = self._file.readline(self.max_line + 1)
        except socket.timeout:
            raise PeerGone(f"no answer from {self.peer} within {timeout:g} s{waiting}") from None
        except OSError as err:
            raise PeerGone(f"control connection to {self.peer} lost: {err}") from None
        if not line:
            raise PeerGone(f"{self.peer} closed the control connection{waiting}")
        if len(line) > self.max_line:
            raise WireError(f"{self.peer} sent a message over {self.max_line} bytes")
        msg = decode(line, self.peer)
        if msg.get("type") == "error":
            raise WireError(f"{self.peer}: {msg.get('message')}")
        if expect is not None:
            wanted = (expect,) if isinstance(expect, str) else expect
            if msg.get("type") not in wanted:
                raise WireError(f"{self.peer} sent {msg.get('type')!r} where {' or '.join(wanted)} was expected")
        return msg

    def request(self, kind: str, timeout: float, expect: str | tuple[str, ...] | None = None, /, **fields) -> dict:
        self.send(kind, **fields)
        return self.recv(timeout, expect)

    def close(self) -> None:
        try:
            self._file.close()
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


Handler = Callable[[Channel, dict], None]  # (channel, the client's hello) -> None; it owns the channel's session


class Server:
    """Listen on ``bind:port``; give each authenticated connection to the handler of the service it asks for.

    ``services`` maps a name to ``(handler, greeting)``: ``greeting()`` is what the hello reply carries
    besides the service name. Each connection runs in its own thread; ``finished`` is set once
    ``max_clients`` connections that reached a handler are done.
    """

    def __init__(self, bind: str, port: int, services: dict[str, tuple[Handler, Callable[[], dict]]],
                 secret: bytes | None = None, log: Callable[[str], None] | None = None,
                 max_clients: int | None = None, name: str = "rdmabench"):
        self.services = dict(services)
        self.secret = secret if secret is not None else auth.load_secret()  # no secret, no server
        self.log = log or (lambda msg: print(f"{name}: {msg}", file=sys.stderr, flush=True))
        self.max_clients = max_clients
        self.finished = threading.Event()
        self._count = threading.Lock()
        self._done = 0
        self._stop = threading.Event()
        self._pending = threading.BoundedSemaphore(MAX_PENDING)
        try:
            self.listener = socket.create_server((bind, port))
        except OSError as err:
            raise RdmabenchError(f"cannot listen on {bind}:{port}: {err.strerror or err}") from None
        self.bind, self.port = bind, self.listener.getsockname()[1]
        self.listener.settimeout(0.5)
        self._thread = threading.Thread(target=self._accept, name=f"{name}-accept", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, addr = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            if self._stop.is_set() or not self._pending.acquire(blocking=False):
                sock.close()  # too many still proving themselves: this one is turned away
                continue
            threading.Thread(target=self._connection, args=(sock, f"{addr[0]}:{addr[1]}"), daemon=True).start()

    def _connection(self, sock: socket.socket, peer: str) -> None:
        try:
            sock.setblocking(True)
            chan = Channel.accept(sock, peer, self.secret)
        except (RdmabenchError, OSError, ValueError) as err:
            self.log(f"refused {peer}: {err}")
            return
        finally:
            self._pending.release()
        counted = False
        try:
            hello = chan.recv(HELLO_WAIT_S, "hello")
            service = hello.get("service")
            if not isinstance(service, str) or service not in self.services:
                raise WireError(f"unknown service {str(service)[:64]!r}; this server offers "
                                f"{', '.join(sorted(self.services))}")
            handler, greeting = self.services[service]
            counted = True
            chan.send("hello", service=service, **greeting())
            self.log(f"client {peer} connected ({service})")
            handler(chan, hello)
            self.log(f"client {peer} done")
        except Exception as err:  # one client, whatever it sent, never stops the server
            reason = str(err) if isinstance(err, RdmabenchError) else f"internal error: {type(err).__name__}: {err}"
            self.log(f"client {peer} dropped: {reason}")
            if not isinstance(err, OSError) and not getattr(err, "peer_gone", False):
                try:
                    chan.send("error", message=f"rdmabench serve: {reason}; closing this connection")
                except (RdmabenchError, OSError):
                    pass
        finally:
            chan.close()
            if counted:
                with self._count:
                    self._done += 1
                    if self.max_clients is not None and self._done >= self.max_clients:
                        self.finished.set()

    def close(self) -> None:
        self._stop.set()
        try:
            self.listener.close()
        except OSError:
            pass
        self._thread.join(2)
