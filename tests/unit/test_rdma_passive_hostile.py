"""The rdma transports' passive end under attack, on the host: everything up to opening an endpoint
(which needs RDMA; the lab's test_rdma_transport.py sends hostile requests past that point)."""

import json
import os
import socket

import pytest

from rdmabench import auth
from rdmabench.transports.rdma_common import Wire
from rdmabench.transports.rdma_server import RdmaServer


@pytest.fixture
def passive(tmp_path):
    server = RdmaServer(tmp_path / "root", "127.0.0.1", 0, "write", {"device": "nonexistent0", "gid_index": 1})
    yield server
    server.stop()


def session(server, secret=None):
    sock = socket.create_connection(("127.0.0.1", server.info["port"]), timeout=15)
    wire = Wire(sock, "passive")
    wire.authenticate_client(secret or os.environ["RDMABENCH_SECRET"].encode())
    return wire


def replies(wire):
    out = []
    while True:
        try:
            out.append(wire.recv())
        except Exception:
            return out


def test_no_secret_no_session(passive):
    s = socket.create_connection(("127.0.0.1", passive.info["port"]), timeout=15)
    f = s.makefile("rwb")
    assert json.loads(f.readline())["type"] == "auth_challenge"
    f.write(b'{"op": "hello", "mode": "write", "chunk": 4096, "inflight": 1, "qp": []}\n')
    f.flush()
    assert "must be 'auth'" in json.loads(f.readline())["message"]
    with pytest.raises(auth.AuthError, match="authentication failed"):
        session(passive, b"wrong-secret-wrong-secret")


@pytest.mark.parametrize("hello, reason", [
    ({"op": "hello", "mode": "write"}, "'chunk' is missing"),
    ({"op": "hello", "mode": "write", "chunk": 1 << 40, "inflight": 1, "qp": []}, "outside"),
    ({"op": "hello", "mode": "write", "chunk": "1M", "inflight": 1, "qp": []}, "must be an integer"),
    ({"op": "put", "type": "sealed", "id": "s-t01000-1"}, "unexpected request 'put'"),
    ({"op": "hello", "mode": "write", "chunk": 65536, "inflight": 4, "qp": []}, "nonexistent0"),  # valid: no device here
])
def test_a_bad_hello_gets_an_error_and_the_server_goes_on(passive, hello, reason):
    wire = session(passive)
    wire.send(hello)
    got = replies(wire)
    assert got and got[-1]["ok"] is False and reason in got[-1]["error"], got
    wire.close()
    session(passive).close()  # still accepting
    assert passive._thread.is_alive()


def test_garbage_and_long_lines(passive):
    for data in (b"\xff\xfe\x00\n", b"[[[[\n", b'"just a string"\n', b"x" * (2 << 20)):
        wire = session(passive)
        try:
            wire.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = replies(wire)
        assert got and got[-1]["ok"] is False, (data[:20], got)
        wire.close()
    assert passive._thread.is_alive()
