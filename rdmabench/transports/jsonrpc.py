"""The C1 -> C2 hand-off as Lotus does it: the C1 output, base64 inside a JSON-RPC 2.0 POST.

Lotus's worker returns the C1 output to the miner (``ReturnSealCommit1``) and the miner calls the
C2 worker's ``Filecoin.SealCommit2`` at ``POST /rpc/v0`` with ``params: [SectorRef, Commit1Out]``;
``Commit1Out`` is ``[]byte``, so go-jsonrpc carries it as a base64 string (4/3 of the payload,
plus the envelope). go-jsonrpc caps a request at 100 MiB; so does this server.

``serve_rpc(bind, port, token)`` runs a small real JSON-RPC server that parses the request,
decodes the base64, checks the payload is a JSON object (parsing it is C2's work), and answers with a 1,920-byte "proof"
(the size of a real one: the payload's digest repeated), base64 too. It reports the XXH3-128 of what it decoded in the
``X-Rdmabench-Digest`` response header, which the client compares with its own.
``send_c1(url, token, payload, ...)`` makes one such call and returns a TransferRecord whose
``bytes`` is the payload and ``wire_bytes`` everything sent and received over the socket.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from .. import integrity
from ..errors import RdmabenchError
from .base import TransferRecord
from .http_server import http_url, stop_server

METHOD = "Filecoin.SealCommit2"
MAX_REQUEST = 100 << 20  # go-jsonrpc's default request size cap
PROOF_BYTES = 1920


class RpcError(RdmabenchError):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_RpcServer"

    def log_message(self, fmt, *args):
        pass

    def _reply(self, code: int, obj: dict, headers: dict | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _rpc_error(self, code: int, rpc_id, err: int, msg: str) -> None:
        self._reply(code, {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": err, "message": msg}})

    def do_POST(self):
        got = (self.headers.get("Authorization") or "").encode()
        if not hmac.compare_digest(got, b"Bearer " + self.server.token.encode()):
            self.close_connection = True
            return self._rpc_error(401, None, -32001, "unauthorized")
        if self.path != "/rpc/v0":
            self.close_connection = True
            return self._rpc_error(404, None, -32601, "not found")
        length = int(self.headers.get("Content-Length") or -1)
        if not 0 <= length <= MAX_REQUEST:
            self.close_connection = True
            return self._rpc_error(413, None, -32600, f"request size must be 0..{MAX_REQUEST}")
        raw = self.rfile.read(length)
        try:
            req = json.loads(raw)
            rpc_id = req.get("id")
            if req.get("jsonrpc") != "2.0" or req.get("method") != METHOD:
                return self._rpc_error(200, rpc_id, -32601, f"method not found: {req.get('method')!r}")
            ref, c1_b64 = req["params"]
            payload = base64.b64decode(c1_b64, validate=True)
            if not (payload.startswith(b"{") and payload.rstrip().endswith(b"}")):
                raise ValueError("the C1 output is not a JSON object")  # parsing it is C2's work, not the hand-off's
        except (ValueError, KeyError, TypeError, binascii.Error) as err:
            return self._rpc_error(200, None, -32602, f"invalid params: {err}")
        digest = integrity.new_hasher()
        digest.update(payload)
        with self.server.lock:
            self.server.received.append({"sector": ref, "bytes": len(payload), "digest": digest.hexdigest()})
        proof = base64.b64encode(bytes.fromhex(digest.hexdigest()) * (PROOF_BYTES // 16)).decode()  # size, not content
        self._reply(200, {"jsonrpc": "2.0", "id": rpc_id, "result": proof},
                    {"X-Rdmabench-Digest": digest.hexdigest()})


class _RpcServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, token):
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.token = token
        self.received: list[dict] = []
        self.lock = threading.Lock()
        super().__init__(addr, _Handler)


@dataclass
class RpcHandle:
    bind: str
    port: int
    _server: _RpcServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        return http_url(self.bind, self.port, "/rpc/v0")

    @property
    def received(self) -> list[dict]:
        return list(self._server.received)

    def stop(self) -> None:
        stop_server(self._server, self._thread)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def serve_rpc(bind: str, port: int, token: str) -> RpcHandle:
    """The C2 side: a JSON-RPC server on ``bind``:``port`` (required address; port 0 picks one)."""
    if not bind:
        raise RpcError("the JSON-RPC server needs an address to listen on; it never picks 0.0.0.0 by itself")
    try:
        server = _RpcServer((bind, port), token)
    except OSError as err:
        raise RpcError(f"cannot listen on {bind}:{port}: {err.strerror}") from None
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                              name=f"jsonrpc-{server.server_address[1]}")
    thread.start()
    return RpcHandle(bind, server.server_address[1], server, thread)


def _recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(1 << 16):
        chunks.append(data)
    return b"".join(chunks)


def send_c1(url: str, token: str, payload: bytes, *, miner: int = 1000, number: int = 1, proof_type: int = 8,
            timeout: float | None = 120.0, item: str | None = None) -> TransferRecord:
    """POST one ``Filecoin.SealCommit2`` carrying ``payload`` (the C1 output) to ``url`` (…/rpc/v0).

    The caller times it (transfer.measure: from the base64 encoding to the parsed reply). ``verified`` is True when the
    server's digest of what it decoded equals ours. Raises RpcError on any failure.
    """
    u = urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise RpcError(f"{url!r} is not an http:// URL")
    ref = json.dumps({"ID": {"Miner": miner, "Number": number}, "ProofType": proof_type}, separators=(",", ":"))
    b64 = base64.b64encode(payload)
    body = b"".join([b'{"jsonrpc":"2.0","method":"', METHOD.encode(), b'","params":[', ref.encode(), b',"',
                     b64, b'"],"id":1}'])
    head = (f"POST {u.path or '/rpc/v0'} HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    try:
        with socket.create_connection((u.hostname, u.port or 80), timeout=timeout) as sock:
            sock.sendall(head)
            sock.sendall(body)
            raw = _recv_all(sock)
    except OSError as err:
        raise RpcError(f"POST {url}: {err.strerror or err}") from None
    header, _, reply = raw.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    try:
        answer = json.loads(reply)
    except ValueError:
        raise RpcError(f"POST {url}: HTTP {status}, the reply is not JSON") from None
    if status != 200 or "error" in answer:
        msg = answer.get("error", {}).get("message") if isinstance(answer, dict) else None
        raise RpcError(f"POST {url}: HTTP {status}: {msg or 'failed'}")
    h = integrity.new_hasher()
    h.update(payload)
    ours = h.hexdigest()
    proof = base64.b64decode(answer["result"])
    return TransferRecord(
        transport="http", item=item or f"c1/s-t0{miner}-{number}", bytes=len(payload),
        verified=headers.get("x-rdmabench-digest") == ours, digest=ours,
        wire_bytes=len(head) + len(body) + len(raw),
        extra={"kind": "blob", "request_bytes": len(head) + len(body), "base64_bytes": len(b64),
               "response_bytes": len(raw), "proof_bytes": len(proof)})
