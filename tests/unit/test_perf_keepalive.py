"""A run longer than the server's patience: the client says it is still running, so the far end waits for
it however long it lasts, and still drops a client that goes silent. The engine is the control-protocol
stand-in of test_perf_protocol (no RDMA here); the server's bounds are shrunk to fractions of a second."""

import contextlib
import socket
import threading
import time

import pytest

from rdmabench.errors import RdmabenchError
from rdmabench.perf import client as client_mod
from rdmabench.perf import server as server_mod
from rdmabench.perf.options import RunOptions
from rdmabench.wire import Channel, PeerGone

from test_perf_protocol import FakeEndpoint, fake_engine, start_server  # noqa: F401 (a fixture)


@pytest.fixture
def slow_client(monkeypatch):
    """The client's run lasts 1 s; the server allows 0.1 + 0.3 s of silence and asks for a beat every 0.1 s."""
    monkeypatch.setattr(server_mod, "QUIET_S", 0.3)
    monkeypatch.setattr(server_mod, "KEEPALIVE_S", 0.1)
    fast = FakeEndpoint.run

    def run(self, **kw):
        if kw["role"] == "client":
            time.sleep(1.0)
        return fast(self, **kw)

    monkeypatch.setattr(FakeEndpoint, "run", run)


def test_a_run_longer_than_the_servers_patience_completes(fake_engine, slow_client, tmp_path):
    server, thread = start_server(1, tmp_path)
    opts = RunOptions(tests=["write_bw", "send_bw"], iters=100)  # a passive far end, then an active one
    result = client_mod.Client(opts, "rxe0", "127.0.0.1", server.port, timeout_ms=100).run()
    assert thread.join(5)
    assert [r["measured"]["test"] for r in result.rows] == ["write_bw", "send_bw"]
    assert all(ep.closed for ep in FakeEndpoint.opened)


def test_a_silent_client_is_still_dropped_after_the_quiet_bound(fake_engine, slow_client, tmp_path, monkeypatch):
    monkeypatch.setattr(client_mod, "keepalive", lambda chan: contextlib.nullcontext())  # an older client
    server, thread = start_server(1, tmp_path)
    with pytest.raises(RdmabenchError):
        client_mod.Client(RunOptions(tests=["write_bw"], iters=100), "rxe0", "127.0.0.1", server.port,
                          timeout_ms=100).run()
    assert thread.join(5)
    server_end = [ep for ep in FakeEndpoint.opened][0]
    assert server_end.closed


def test_keepalive_beats_while_the_body_runs_and_stops_with_it():
    a, b = socket.socketpair()
    near, far = Channel(a, "near"), Channel(b, "far")
    try:
        with near.keepalive("running", 0.05):
            time.sleep(0.32)
        near.send("done")
        beats = 0
        while far.recv(1, ("running", "done"))["type"] == "running":
            beats += 1
        assert 4 <= beats <= 7
        b.settimeout(0.2)
        with pytest.raises(socket.timeout):
            b.recv(1)  # nothing after "done": the thread stopped with the block
    finally:
        near.close()
        far.close()


def test_recv_after_skips_beats_but_not_silence():
    a, b = socket.socketpair()
    near, far = Channel(a, "near"), Channel(b, "far")
    try:
        for _ in range(3):
            near.send("running")
        near.send("done", n=1)
        assert far.recv_after("running", 1, "done")["n"] == 1
        with pytest.raises(PeerGone, match="within 0.2 s"):
            far.recv_after("running", 0.2, "done")
    finally:
        near.close()
        far.close()


def test_a_beat_that_cannot_be_sent_ends_quietly():
    a, b = socket.socketpair()
    near = Channel(a, "near")
    b.close()
    with near.keepalive("running", 0.01):
        time.sleep(0.1)  # the beats fail: no exception reaches here, and the block still ends
    assert not [t for t in threading.enumerate() if t.name == "keepalive-near"]
    near.close()
