"""The pyverbs reference engine (rdmabench.engines.python) on the lab's soft-RoCE device.

Runs inside the lab guest. Two endpoints live in this one process: the server side of each run in a
thread, the client here (the engine yields the GIL while it spins, so both make progress). Where the
native engine is built, mixed pairs (one end native, the other python) prove the two speak the same
protocol and the same payload pattern. Counts are tiny: the guest runs under emulation.
"""
import json
import threading

import pytest

from rdmabench.engines import python as pyeng
from rdmabench.errors import DeviceNotFound, VerbsError

from lab_pairs import DEVICE, GID_INDEX, IP, both, check_local_info



try:
    from rdmabench.engines import native
    native._load()
except Exception:  # noqa: BLE001 - the mixed tests say why they cannot run
    native = None

SMALL = dict(size=4096, depth=16, cq_mod=4)
TIMEOUT = dict(timeout_ms=30000)
ITERS = 40
BW_TESTS = ["write_bw", "read_bw", "send_bw"]
LAT_TESTS = ["write_lat", "read_lat", "send_lat"]
_cm_port = iter(range(19800, 19900))


def _engine(name):
    if name == "native":
        if native is None:
            pytest.fail("the native engine (rdmabench._native) is not built: `make install` builds it", pytrace=False)
        return native
    return pyeng


def pair(server="python", client="python", **opts):
    """(server endpoint, client endpoint), connected with info that went through JSON."""
    spec = dict(device=DEVICE, gid_index=GID_INDEX, **(opts or SMALL))
    s = _engine(server).open_endpoint(**spec)
    try:
        cl = _engine(client).open_endpoint(**spec)
    except BaseException:
        s.close()
        raise
    info_s, info_c = s.local_info(), cl.local_info()
    s.connect(json.loads(json.dumps(info_c)))
    cl.connect(json.loads(json.dumps(info_s)))
    return s, cl


def run_pair(test, server="python", client="python", opts=None, server_first=False, hook=None, **kw):
    s, cl = pair(server, client, **(opts or SMALL))
    with s, cl:
        if hook:
            hook(s, cl)
        kw = {**TIMEOUT, **kw}
        return both(lambda: s.run(test, "server", **kw), lambda: cl.run(test, "client", **kw),
                    server_first=server_first)


def check_bw(rec, test, iters, size, qps=1):
    assert rec["test"] == test and rec["passive"] is False
    assert rec["ops"] == iters * qps
    assert rec["bytes"] == iters * qps * size
    assert rec["t_end_ns"] > rec["t_start_ns"] > 0
    assert len(rec["completions_ns"]) == len(rec["completions_ops"]) > 0
    assert list(rec["completions_ops"]) == sorted(rec["completions_ops"])
    assert rec["completions_ops"][-1] == iters * qps
    assert list(rec["completions_ns"]) == sorted(rec["completions_ns"])
    assert rec["sample"] is None and len(rec["samples_ns"]) == 0
    assert rec["samples_truncated"] is False


# ------------------------------------------------------------------ basics


def test_pattern_is_the_native_one():
    # reference values printed by native/common.c's pattern_seed and fill_pattern, compiled alone
    assert pyeng.pattern_seed(0, 0) == 0xE220A8397B1DCDAF
    assert pyeng.pattern(13, pyeng.pattern_seed(1, 5)).hex() == "d92f30c28f4d62c80f41631a6f"


def test_local_info_is_json_and_complete():
    with pyeng.open_endpoint(device=DEVICE, gid_index=GID_INDEX, qps=2, **SMALL) as ep:
        check_local_info(ep)
        assert ep.registered_bytes == 2 * 16 * 4096


def test_errors():
    with pytest.raises(DeviceNotFound):
        pyeng.open_endpoint(device="nosuchdev0", gid_index=GID_INDEX)
    with pytest.raises(ValueError):
        pyeng.open_endpoint(device=DEVICE, gid_index=GID_INDEX, size=0)
    with pytest.raises(ValueError, match="maximum message size"):
        pyeng.open_endpoint(device=DEVICE, gid_index=GID_INDEX, size=(1 << 31) + 1, depth=1)
    with pyeng.open_endpoint(device=DEVICE, gid_index=GID_INDEX, **SMALL) as ep:
        with pytest.raises(RuntimeError, match="not connected"):
            ep.run("write_bw", "client", iters=1)
        with pytest.raises(ValueError):
            ep.connect([])
    s, cl = pair()
    with s, cl:
        with pytest.raises(ValueError):
            cl.run("write_bw", "client", iters=1, duration_s=1.0)
        with pytest.raises(ValueError):
            cl.run("nosuch", "client", iters=1)
        # no server loop answers: a bounded wait, then VerbsError
        with pytest.raises(VerbsError, match="no reply|no progress"):
            cl.run("write_lat", "client", iters=5, timeout_ms=1500)
    assert s.closed and cl.closed


# ------------------------------------------------------------------ every test type


@pytest.mark.parametrize("test", BW_TESTS)
def test_bw_counts(test):
    srv, cli = run_pair(test, iters=ITERS)
    check_bw(cli, test, ITERS, 4096)
    if test == "send_bw":
        assert srv["ops"] == ITERS and srv["bytes"] == ITERS * 4096
    else:
        assert srv["passive"] is True


@pytest.mark.parametrize("test", BW_TESTS)
def test_bw_validate_two_qps_with_warmup(test):
    opts = dict(qps=2, **SMALL)
    srv, cli = run_pair(test, opts=opts, server_first=test == "read_bw", iters=ITERS, warmup=5, validate=True)
    check_bw(cli, test, ITERS, 4096, qps=2)
    rec = srv if test != "read_bw" else cli
    assert rec["validated"] == 2 * (ITERS + 5) and rec["corrupt"] == 0 and rec["first_corrupt_seq"] == -1


@pytest.mark.parametrize("test", ["write_bw", "send_bw"])
def test_bw_duration_end_marker(test):
    srv, cli = run_pair(test, duration_s=0.5, validate=True)
    assert cli["ops"] > 0 and srv["corrupt"] == 0
    assert srv["validated"] == cli["ops"]


def test_bidir_send_bw():
    srv, cli = run_pair("send_bw", iters=ITERS, bidir=True)
    assert cli["ops"] == srv["ops"] == ITERS
    assert cli["recv_ops"] == srv["recv_ops"] == ITERS


@pytest.mark.parametrize("test", LAT_TESTS)
def test_latency_validated(test):
    opts = dict(size=64, depth=16, cq_mod=4)
    srv, cli = run_pair(test, opts=opts, server_first=test == "read_lat", iters=30, warmup=3, validate=True)
    assert cli["ops"] == 30 and cli["bytes"] == 30 * 64
    assert len(cli["samples_ns"]) == 30 and min(cli["samples_ns"]) > 0
    assert cli["sample"] == ("post to completion" if test == "read_lat" else "half round trip")
    checked = cli["validated"] + (srv.get("validated") or 0)
    assert checked >= 33 and cli["corrupt"] == 0 and (srv.get("corrupt") or 0) == 0
    if test != "read_lat":
        assert srv["ops"] == 30


def test_write_lat_duration():
    srv, cli = run_pair("write_lat", opts=dict(size=8, depth=16, cq_mod=4), duration_s=0.5)
    assert cli["ops"] > 0 and len(cli["samples_ns"]) == cli["ops"]


# ------------------------------------------------------------------ corruption is seen


def test_corrupt_write_is_detected():
    srv, cli = run_pair("write_bw", iters=ITERS, validate=True, hook=lambda s, c: c.raw._inject_corruption(7))
    assert srv["corrupt"] == 1 and srv["first_corrupt_seq"] == 7


def test_corrupt_send_lat_is_detected():
    srv, cli = run_pair("send_lat", opts=dict(size=64, depth=16, cq_mod=4), iters=20, validate=True,
                        hook=lambda s, c: c.raw._inject_corruption(4))
    assert srv["corrupt"] == 1 and srv["first_corrupt_seq"] == 4


def test_corrupt_read_source_is_detected():
    s, cl = pair()
    with s, cl:
        assert s.run("read_bw", "server", iters=ITERS, validate=True)["passive"] is True
        s.raw._flip_byte(0, 3, 100)  # slot 3 is read by messages 3, 19, 35
        rec = cl.run("read_bw", "client", iters=ITERS, validate=True, **TIMEOUT)
    assert rec["corrupt"] == 3 and rec["first_corrupt_seq"] == 3


# ------------------------------------------------------------------ rdma_cm


def _cm_pair(server_engine, client_engine, **spec):
    port = next(_cm_port)
    box = {}

    def listen():
        try:
            box["ep"] = _engine(server_engine).cm_listen(IP, port, timeout_ms=30000, **spec)
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    try:
        cl = None
        for _ in range(50):  # the listener may not be bound yet
            try:
                cl = _engine(client_engine).cm_connect(IP, port, timeout_ms=30000, **spec)
                break
            except VerbsError as exc:
                if "reject" not in str(exc).lower() and "refused" not in str(exc).lower():
                    raise
                t.join(0.2)
    finally:
        t.join(60)
    if "error" in box:
        if cl:
            cl.close()
        raise box["error"]
    assert cl is not None, "cm_connect never reached the listener"
    return box["ep"], cl


@pytest.mark.parametrize("server_engine,client_engine", [("python", "python"), ("native", "python"),
                                                         ("python", "native")])
def test_cm_pair(server_engine, client_engine):
    s, cl = _cm_pair(server_engine, client_engine, qps=2, **SMALL)
    with s, cl:
        assert s.device == cl.device == DEVICE
        kw = dict(iters=ITERS, validate=True, **TIMEOUT)
        srv, cli = both(lambda: s.run("write_bw", "server", **kw), lambda: cl.run("write_bw", "client", **kw))
        check_bw(cli, "write_bw", ITERS, 4096, qps=2)
        assert srv["validated"] == 2 * ITERS and srv["corrupt"] == 0
        kw = dict(iters=20, validate=True, **TIMEOUT)
        srv, cli = both(lambda: s.run("send_lat", "server", **kw), lambda: cl.run("send_lat", "client", **kw))
        assert cli["ops"] == 20 and srv["corrupt"] == 0 and cli["corrupt"] == 0


# ------------------------------------------------------------------ mixed with the native engine


@pytest.mark.parametrize("test", ["write_bw", "send_bw", "read_bw"])
def test_mixed_python_client_native_server(test):
    srv, cli = run_pair(test, server="native", client="python", opts=dict(qps=2, **SMALL),
                        server_first=test == "read_bw", iters=ITERS, validate=True)
    check_bw(cli, test, ITERS, 4096, qps=2)
    rec = srv if test != "read_bw" else cli
    assert rec["validated"] == 2 * ITERS and rec["corrupt"] == 0


@pytest.mark.parametrize("test", ["write_bw", "write_lat", "send_lat"])
def test_mixed_native_client_python_server(test):
    lat = test.endswith("lat")
    opts = dict(size=64, depth=16, cq_mod=4) if lat else SMALL
    srv, cli = run_pair(test, server="python", client="native", opts=opts, iters=ITERS, validate=True)
    assert cli["ops"] == ITERS and srv["ops"] == ITERS
    assert srv["corrupt"] == 0 and cli["corrupt"] == 0
    assert srv["validated"] >= ITERS


def test_mixed_corruption_is_detected_by_python():
    srv, cli = run_pair("write_bw", server="python", client="native", iters=ITERS, validate=True,
                        hook=lambda s, c: c.raw._inject_corruption(9))
    assert srv["corrupt"] == 1 and srv["first_corrupt_seq"] == 9


# ------------------------------------------------------------------ READ depth across the OOB exchange


@pytest.mark.parametrize("server_engine,client_engine", [("native", "native"), ("python", "python"),
                                                         ("python", "native"), ("native", "python")])
@pytest.mark.parametrize("peer_says", [4, None])
def test_read_depth_is_the_smaller_of_ours_and_the_peers(server_engine, client_engine, peer_says):
    """A reader keeps no more READs in flight than the peer's info says it answers (mixed NICs: rxe
    answers 128, a ConnectX 16); info without the field (an older rdmabench) leaves our own cap."""
    spec = dict(device=DEVICE, gid_index=GID_INDEX, **SMALL)
    s = _engine(server_engine).open_endpoint(**spec)
    with s, _engine(client_engine).open_endpoint(**spec) as cl:
        own = cl.outstanding_reads
        assert 1 <= own <= 255
        info = json.loads(json.dumps(s.local_info()))
        for qp in info:
            if peer_says is None:
                del qp["rd_atomic"]
            else:
                qp["rd_atomic"] = peer_says
        s.connect(json.loads(json.dumps(cl.local_info())))
        cl.connect(info)
        assert cl.outstanding_reads == (min(own, peer_says) if peer_says else own)
        kw = dict(iters=ITERS, validate=True, **TIMEOUT)
        srv, cli = both(lambda: s.run("read_bw", "server", **kw), lambda: cl.run("read_bw", "client", **kw),
                        server_first=True)
        assert cli["validated"] == ITERS and cli["corrupt"] == 0


# ------------------------------------------------------------------ warm-up accounting


@pytest.mark.parametrize("engine", ["native", "python"])
def test_send_bw_warmup_not_counted_when_the_receiver_starts_late(engine):
    """The receiver starts a second late: by then the sender's warm-up has completed (receives are
    posted at connect) and measured messages wait behind it, so the receiver's warm-up phase polls
    both kinds in one batch. It must still count exactly the measured ones (it once counted from
    where its warm-up phase happened to stop: 119 of 120)."""
    import time

    s, cl = pair(engine, engine, qps=3, **SMALL)
    kw = dict(iters=40, warmup=10, **TIMEOUT)

    def late_server():
        time.sleep(1.0)
        return s.run("send_bw", "server", **kw)

    with s, cl:
        srv, cli = both(late_server, lambda: cl.run("send_bw", "client", **kw))
    assert cli["ops"] == 120 and srv["ops"] == 120
