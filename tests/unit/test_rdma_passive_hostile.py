"""The rdma transports' passive end under attack, on the host: everything up to opening an endpoint
(which needs RDMA; the lab's test_rdma_transport.py sends hostile requests past that point)."""

import json
import os
import socket

import pytest

from rdmabench.transports.rdma_server import RdmaServer
from rdmabench.wire import Channel, WireError


@pytest.fixture
def passive(tmp_path):
    server = RdmaServer(tmp_path / "root", "write", {"device": "nonexistent0", "gid_index": 1}).listen("127.0.0.1")
    yield server
    server.stop()


def session(server, secret=None, service="rdma-write"):
    return Channel.connect("127.0.0.1", server.info["port"], service, timeout=15,
                           secret=secret or os.environ["RDMABENCH_SECRET"].encode())


def replies(chan):
    out = []
    while True:
        try:
            out.append(chan.recv(15))
        except Exception:
            return out


def test_no_secret_no_session(passive):
    s = socket.create_connection(("127.0.0.1", passive.info["port"]), timeout=15)
    f = s.makefile("rwb")
    assert json.loads(f.readline())["type"] == "auth_challenge"
    f.write(b'{"v": 1, "type": "open", "chunk": 4096, "inflight": 1, "qp": []}\n')
    f.flush()
    assert "must be 'auth'" in json.loads(f.readline())["message"]
    with pytest.raises(WireError, match="authentication failed"):
        session(passive, b"wrong-secret-wrong-secret")


def test_only_its_own_mode_is_offered(passive):
    with pytest.raises(WireError, match="unknown service 'rdma-read'; this server offers rdma-write"):
        session(passive, service="rdma-read")
    session(passive).close()


@pytest.mark.parametrize("opened, reason", [
    ({"type": "open"}, "'chunk' is missing"),
    ({"type": "open", "chunk": 1 << 40, "inflight": 1, "qp": []}, "outside"),
    ({"type": "open", "chunk": "1M", "inflight": 1, "qp": []}, "must be an integer"),
    ({"type": "open", "chunk": 65536, "inflight": 4, "qp": [], "mode": "read"}, "unknown field 'mode'"),
    ({"type": "put", "lotus_type": "sealed", "id": "s-t01000-1"}, "unexpected request 'put'"),
    ({"type": "open", "chunk": 65536, "inflight": 4, "streams": 2, "qp": [{}]}, "must list 2 QPs, one per stream"),
    ({"type": "open", "chunk": 65536, "inflight": 4, "streams": 65, "qp": [{}]}, "'open.streams' is 65, outside 1..64"),
    ({"type": "open", "chunk": 65536, "inflight": 4, "verify": "never", "qp": [{}]}, "'open.verify' is 'never'"),
    ({"type": "open", "chunk": 65536, "inflight": 4, "qp": [{}]}, "nonexistent0"),  # valid: no device here
])
def test_a_bad_opening_gets_an_error_and_the_server_goes_on(passive, opened, reason):
    chan = session(passive)
    chan.send_msg(opened)
    got = replies(chan)
    assert got and got[-1]["ok"] is False and reason in got[-1]["error"], got
    chan.close()
    session(passive).close()  # still accepting
    assert passive._listener._thread.is_alive()


def test_garbage_and_long_lines(passive):
    for data in (b"\xff\xfe\x00\n", b"[[[[\n", b'"just a string"\n', b'{"v": 2, "type": "open"}\n', b"x" * (2 << 20)):
        chan = session(passive)
        try:
            chan.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = replies(chan)
        assert got and got[-1]["ok"] is False, (data[:20], got)
        chan.close()
    assert passive._listener._thread.is_alive()
