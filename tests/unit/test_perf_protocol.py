"""serve <-> run over real TCP sockets on loopback. The RDMA engine is replaced by a
stand-in that returns fixed raw records: this tests the control protocol, the
result rows and the server's survival, not RDMA (the lab tests do that)."""

import json
import socket
import threading
import types

import pytest

from rdmabench.errors import RdmabenchError
from rdmabench.perf import client as client_mod
from rdmabench.perf import engine
from rdmabench.wire import Channel, WireError
from rdmabench.perf.options import RunOptions
from rdmabench.errors import PeerUnavailable
from rdmabench.serve import Daemon

MAPPED = "0000:0000:0000:0000:0000:ffff:7f00:0001"


class FakeEndpoint:
    opened = []
    outstanding_reads = 16  # the real engines query QP 0

    def __init__(self, **spec):
        self.spec, self.closed, self.remote = spec, False, None
        FakeEndpoint.opened.append(self)

    @property
    def registered_bytes(self):  # the real engines' rule: qps x slots (0 -> depth) x size
        return self.spec["qps"] * (self.spec["slots"] or self.spec["depth"]) * self.spec["size"]

    def local_info(self):
        return [{"qpn": 7 + i, "psn": 0, "gid": "00" * 16, "lid": 0, "addr": 4096, "rkey": 1, "size": self.spec["size"]}
                for i in range(self.spec["qps"])]

    def connect(self, remote):
        assert len(remote) == self.spec["qps"]
        self.remote = remote

    def run(self, test, role, iters, duration_s, warmup, bidir, validate, max_samples, timeout_ms, interval_s=1.0,
            on_window=None):
        size = self.spec["size"]
        receiver = (role == "client") == test.startswith("read")  # who checks payloads, as the real engine
        if test.endswith("_lat"):
            return {"test": test, "role": role, "ops": iters, "bytes": iters * size, "samples_ns": [1000.0 + i for i in range(iters)],
                    "sample": "half round trip", "t_start_ns": 0, "t_end_ns": 1e6}
        return {"test": test, "role": role, "ops": iters, "bytes": iters * size, "t_start_ns": 0.0, "t_end_ns": 1e9,
                "completions_ns": [1e9 * (i + 1) / 10 for i in range(10)],
                "completions_ops": [iters * (i + 1) // 10 for i in range(10)],
                "validated": iters if validate and receiver else 0, "corrupt": 0}

    def close(self):
        self.closed = True


@pytest.fixture
def fake_engine(monkeypatch, sysfs_with):
    sysfs_with("rxe0", gids=[(MAPPED, "RoCE v2", "lo")])
    mod = types.SimpleNamespace(open_endpoint=lambda **spec: FakeEndpoint(**spec))
    monkeypatch.setattr(engine, "module", lambda name: mod)
    FakeEndpoint.opened = []
    return mod


def start_server(clients, tmp_path):
    """`rdmabench serve` in-process; the second value's join(t) waits for ``clients`` clients to be done."""
    server = Daemon("127.0.0.1", 0, "rxe0", None, root=tmp_path / "serve", max_clients=clients, log=lambda m: None)
    return server, types.SimpleNamespace(join=server.server.finished.wait)


def test_one_result_holds_both_ends(fake_engine, tmp_path):
    server, thread = start_server(1, tmp_path)
    opts = RunOptions(tests=["write_bw", "send_bw", "write_lat"], iters=100, validate=True)
    result = client_mod.Client(opts, "rxe0", "127.0.0.1", server.port).run()
    thread.join(5)
    assert [tuple(r["measured"].values()) for r in result.rows] == [("write_bw", 65536), ("send_bw", 65536),
                                                                     ("write_lat", 2)]
    bw = result.rows[0]
    assert bw["metric"] == "bw_avg_MiBps" and bw["value"] == pytest.approx(100 * 65536 / 2**20)
    assert bw["bytes"] == 100 * 65536 and bw["seconds"] > 0 and bw["higher_is_better"]
    assert {"client", "server", "per_gb"} <= set(bw["cpu"]) and "busy_cores" in bw["cpu"]["server"]["system"]
    d = bw["detail"]
    assert d["validated"] == 100 and d["corrupt"] == 0
    assert d["registered_bytes"] == 128 * 65536  # validating: a buffer per message in flight
    assert "outstanding_reads" not in d  # only read tests say how many READs were in flight
    lat = result.rows[2]
    assert lat["metric"] == "lat_p50_us" and lat["unit"] == "µs" and not lat["higher_is_better"]
    assert lat["value"] == pytest.approx(1.049) and len(lat["detail"]["samples_us"]) == 100
    assert result.peer_context["device"]["name"] == "rxe0"
    assert result.options["tests"] == ["write_bw", "send_bw", "write_lat"]
    assert all(ep.closed for ep in FakeEndpoint.opened)  # every endpoint released, both ends
    json.dumps(result.to_dict(), allow_nan=False)


def test_server_survives_a_client_that_dies_mid_test(fake_engine, tmp_path):
    server, thread = start_server(2, tmp_path)
    chan = Channel.connect("127.0.0.1", server.port, "verbs", timeout=5)
    setup = client_mod.Client(RunOptions(tests=["write_bw"]), "rxe0", "127.0.0.1", server.port)._setup("write_bw", 4096)
    chan.send("setup", **setup)
    chan.recv(5, "ready")
    chan.close()  # dies before connecting its QPs
    result = client_mod.Client(RunOptions(tests=["read_bw"], iters=10), "rxe0", "127.0.0.1", server.port).run()
    thread.join(5)
    r = result.rows[0]
    assert r["measured"]["test"] == "read_bw" and r["detail"]["outstanding_reads"] == 16
    assert all(ep.closed for ep in FakeEndpoint.opened)


def test_unreachable_peer_and_wrong_version_are_clear(fake_engine):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(PeerUnavailable, match="cannot reach rdmabench serve at 127.0.0.1"):
        client_mod.Client(RunOptions(tests=["write_bw"]), "rxe0", "127.0.0.1", port, wait=0).run()

    listener = socket.create_server(("127.0.0.1", 0))

    def old_server():  # a server of another protocol version: its first line is the client's first answer
        conn, _ = listener.accept()
        conn.sendall(b'{"v": 0, "type": "hello"}\n')
        conn.recv(1000)
        conn.close()

    threading.Thread(target=old_server, daemon=True).start()
    with pytest.raises(WireError, match="version 0.*speaks 1"):
        client_mod.Client(RunOptions(tests=["write_bw"]), "rxe0", "127.0.0.1", listener.getsockname()[1]).run()
    listener.close()


def test_size_above_device_maximum_is_refused_before_connecting(fake_engine, monkeypatch):
    from rdmabench import devices

    real = devices.describe

    def with_max(name, root=None):
        dev = real(name, root) if root else real(name)
        dev.ports[0].max_msg_sz = 8 << 20
        return dev

    monkeypatch.setattr(devices, "describe", with_max)
    monkeypatch.setattr(devices, "require", with_max)
    with pytest.raises(RdmabenchError, match="above rxe0's maximum message size 8388608"):
        client_mod.Client(RunOptions(tests=["write_bw"], sizes=[16 << 20]), "rxe0", "127.0.0.1", 1)
