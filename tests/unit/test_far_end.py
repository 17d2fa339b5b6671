"""A local run (`rdmabench run` with no --peer) puts its far end in a process of its own, as perftest's
ib_write_lat does, not in a thread of the client's process (docs/write-lat-one-guest.md). The far end is
rdmabench.perf.far_end run by tests/unit/far_end_stub.py: the fake sysfs and the stand-in engine of
test_perf_protocol, so this checks the processes and the protocol, not RDMA."""

import os
import sys
from pathlib import Path

import pytest

from rdmabench.errors import RdmabenchError
from rdmabench.perf import client as client_mod
from rdmabench.perf import far_end
from rdmabench.perf.options import RunOptions

from test_perf_protocol import FakeEndpoint, fake_engine  # noqa: F401 (a fixture)

STUB = Path(__file__).with_name("far_end_stub.py")


@pytest.fixture
def stub_far_end(fake_engine, sysfs_with, monkeypatch):
    started = []

    def command(device, gid_index):
        started.append((device, gid_index))
        return [sys.executable, str(STUB), str(sysfs_with.root), str(sysfs_with.net), "--device", device,
                "--gid-index", str(gid_index)]

    monkeypatch.setattr(far_end, "command", command)
    return started


def test_a_local_runs_far_end_is_a_process_of_its_own(stub_far_end):
    result = client_mod.run_local(RunOptions(tests=["write_lat", "write_bw"], iters=100), "rxe0")
    assert stub_far_end == [("rxe0", 0)]  # one far end for the whole run
    assert [r["measured"]["test"] for r in result.rows] == ["write_lat", "write_bw"]
    assert [ep.spec["size"] for ep in FakeEndpoint.opened] == [2, 65536]  # only the client's endpoints are here
    for r in result.rows:
        cpu = r["cpu"]  # each end's per-process CPU is its own process's, not both ends' spinning loops
        assert cpu["client"]["process"]["pid"] == os.getpid()
        assert cpu["server"]["process"]["pid"] not in (None, os.getpid())
    assert "a process of its own" in result.options["peer"]


def test_the_far_end_exits_after_its_one_client(stub_far_end, monkeypatch):
    ends = []
    real_start = far_end.start
    monkeypatch.setattr(far_end, "start", lambda *a, **k: ends.append(real_start(*a, **k)) or ends[-1])
    client_mod.run_local(RunOptions(tests=["write_lat"], iters=10), "rxe0")
    assert len(ends) == 1 and ends[0].proc.returncode == 0  # it ended by itself, not killed


def test_a_far_end_that_does_not_start_says_why(fake_engine, monkeypatch):
    monkeypatch.setattr(far_end, "command", lambda device, gid: [sys.executable, "-c",
                                                                 "import sys; print('no rxe9 here', file=sys.stderr); sys.exit(3)"])
    with pytest.raises(RdmabenchError, match="far end .*did not start: no rxe9 here"):
        client_mod.run_local(RunOptions(tests=["write_lat"], iters=10), "rxe0")


def test_the_far_end_stops_when_its_parent_closes_its_stdin(stub_far_end):
    far = far_end.start("rxe0", 0)
    assert far.port > 0 and far.proc.poll() is None
    far.close()  # no client ever came: closing stdin ends it
    assert far.proc.returncode == 0
