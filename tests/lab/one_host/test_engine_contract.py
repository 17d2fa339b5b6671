"""The engine contract, tested once over both engines: rdmabench.engines.native (C) and
rdmabench.engines.python (pyverbs) open, connect and run the same way and return the same record.

Runs inside the lab guest. Two endpoints live in this one process, connected to each other: the
server side of each run in a thread, the client here (the native loops release the GIL, the python
ones yield it while they spin, so both make progress). Mixed pairs (one end native, the other
python) prove the two speak one protocol and one payload pattern. Counts are tiny: the guest runs
under emulation. What only one engine has (the native engine's arrays, GIL release and clock) is in
test_native_engine.py.
"""
import json
import threading
import time

import pytest

from rdmabench.engines import native
from rdmabench.engines import python as pyeng
from rdmabench.errors import DeviceNotFound, VerbsError

from lab_pairs import DEVICE, GID_INDEX, IP, both, check_local_info, timed

RXE_MAX_MSG = 8 * 1024 * 1024
SMALL = dict(size=4096, depth=16, cq_mod=4)
LAT = dict(size=64, depth=16, cq_mod=4)
TIMEOUT = dict(timeout_ms=30000)
ITERS = 40
BW_TESTS = ["write_bw", "read_bw", "send_bw"]
LAT_TESTS = ["write_lat", "read_lat", "send_lat"]
ENGINES = ["native", "python"]
MIXED = [("native", "python"), ("python", "native")]
_cm_port = iter(range(19700, 19900))


def _engine(name):
    if name == "native":
        try:
            native.clock()
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"the native engine (rdmabench._native) is not built ({exc}): `make install` builds it",
                        pytrace=False)
        return native
    return pyeng


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


def spec(**opts):
    return dict(device=DEVICE, gid_index=GID_INDEX, **(opts or SMALL))


def pair(server="native", client="native", **opts):
    """(server endpoint, client endpoint), connected with info that went through JSON."""
    s = _engine(server).open_endpoint(**spec(**opts))
    try:
        cl = _engine(client).open_endpoint(**spec(**opts))
    except BaseException:
        s.close()
        raise
    info_s, info_c = s.local_info(), cl.local_info()
    s.connect(json.loads(json.dumps(info_c)))
    cl.connect(json.loads(json.dumps(info_s)))
    return s, cl


def run_pair(test, server="native", client=None, opts=None, server_first=False, hook=None, **kw):
    s, cl = pair(server, client or server, **(opts or SMALL))
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
    assert rec["tsc_hz"] > 0
    assert len(rec["completions_ns"]) == len(rec["completions_ops"]) > 0
    assert list(rec["completions_ops"]) == sorted(rec["completions_ops"])
    assert rec["completions_ops"][-1] == iters * qps
    assert list(rec["completions_ns"]) == sorted(rec["completions_ns"])
    assert rec["t_start_ns"] <= rec["completions_ns"][0] <= rec["completions_ns"][-1] <= rec["t_end_ns"]
    assert rec["samples_truncated"] is False
    assert rec["sample"] is None and len(rec["samples_ns"]) == 0


# ------------------------------------------------------------------ endpoint basics


def test_local_info_is_json_and_complete(engine):
    with _engine(engine).open_endpoint(**spec(qps=2, **SMALL)) as ep:
        check_local_info(ep)
        assert ep.registered_bytes == 2 * 16 * 4096


def test_registered_memory_bounded_by_options_not_run_length(engine):
    a, b = pair(engine, engine, qps=2, size=4096, depth=16, slots=8, cq_mod=4)
    with a, b:
        assert a.registered_bytes == b.registered_bytes == 2 * 8 * 4096
        a.run("write_bw", "server", iters=100)
        rec = b.run("write_bw", "client", iters=100, **TIMEOUT)
        assert rec["ops"] == 200
        assert b.registered_bytes == 2 * 8 * 4096
    with _engine(engine).open_endpoint(**spec(size=1024, depth=32)) as ep:
        assert ep.slots == 32 and ep.registered_bytes == 32 * 1024


def test_bad_sizes_and_device(engine):
    eng = _engine(engine)
    with pytest.raises(ValueError, match="size"):
        eng.open_endpoint(**spec(size=0))
    with pytest.raises(ValueError, match="exceeds the maximum message size"):
        eng.open_endpoint(**spec(size=RXE_MAX_MSG + 1, depth=1))
    with pytest.raises(DeviceNotFound, match=rf"'nosuchdev0'.*\b{DEVICE}\b"):  # names the real ones
        eng.open_endpoint(device="nosuchdev0", gid_index=GID_INDEX)


def test_close_is_idempotent_and_final(engine):
    ep = _engine(engine).open_endpoint(**spec())
    ep.close()
    ep.close()
    assert ep.closed
    with pytest.raises(RuntimeError, match="closed"):
        ep.run("write_bw", "client", iters=1)


def test_run_and_connect_arguments_checked(engine):
    with _engine(engine).open_endpoint(**spec()) as ep:
        with pytest.raises(RuntimeError, match="not connected"):
            ep.run("write_bw", "client", iters=1)
        with pytest.raises(ValueError, match="remote describes 0 QPs"):
            ep.connect([])
    a, b = pair(engine, engine)
    with a, b:
        with pytest.raises(ValueError, match="exactly one"):
            b.run("write_bw", "client")
        with pytest.raises(ValueError, match="exactly one"):
            b.run("write_bw", "client", iters=5, duration_s=1.0)
        with pytest.raises(ValueError, match="unknown test"):
            b.run("ud_send_bw", "client", iters=5)
        # atomic_bw is a test of the native engine's, on 8-byte endpoints: each engine says why it will not run it
        with pytest.raises(ValueError, match="8 bytes" if engine == "native" else "native engine's"):
            b.run("atomic_bw", "client", iters=5)
        with pytest.raises(ValueError, match="role"):
            b.run("write_bw", "both", iters=5)
        with pytest.raises(RuntimeError, match="already connected"):
            b.connect(a.local_info())
    assert a.closed and b.closed


# ------------------------------------------------------------------ bandwidth


@pytest.mark.parametrize("test", BW_TESTS)
def test_bw_iterations(engine, test):
    server, client = run_pair(test, engine, iters=ITERS)
    check_bw(client, test, ITERS, 4096)
    assert client["role"] == "client" and client["iters"] == ITERS
    if test == "send_bw":
        assert server["ops"] == ITERS and server["bytes"] == ITERS * 4096
        assert server["t_end_ns"] > server["t_start_ns"] > 0
    else:
        assert server["passive"] is True and server["ops"] == 0


@pytest.mark.parametrize("test", BW_TESTS)
def test_bw_validate_several_qps_warmup_not_counted(engine, test):
    server, client = run_pair(test, engine, opts=dict(qps=3, **SMALL), server_first=test == "read_bw",
                              iters=ITERS, warmup=5, validate=True)
    check_bw(client, test, ITERS, 4096, qps=3)
    checker = client if test == "read_bw" else server
    assert checker["validated"] == 3 * (ITERS + 5)
    assert checker["corrupt"] == 0 and checker["first_corrupt_seq"] == -1
    if test == "send_bw":
        assert server["ops"] == 3 * ITERS


def test_bw_inline_small_messages(engine):
    server, client = run_pair("write_bw", engine, opts=dict(size=64, depth=16, cq_mod=4, inline_size=64),
                              iters=ITERS, validate=True)
    check_bw(client, "write_bw", ITERS, 64)
    assert server["validated"] == ITERS and server["corrupt"] == 0


@pytest.mark.parametrize("test", BW_TESTS)
def test_bw_bidirectional(engine, test):
    a, b = pair(engine, engine)
    with a, b:
        ra, rb = both(lambda: a.run(test, "client", iters=ITERS, bidir=True, **TIMEOUT),
                      lambda: b.run(test, "client", iters=ITERS, bidir=True, **TIMEOUT))
    for rec in (ra, rb):
        check_bw(rec, test, ITERS, 4096)
        if test == "send_bw":
            assert rec["recv_ops"] == ITERS


@pytest.mark.parametrize("test", BW_TESTS)
def test_bw_duration_stops_on_time(engine, test):
    a, b = pair(engine, engine)
    with a, b:
        server, rec = both(lambda: a.run(test, "server", duration_s=1.0, **TIMEOUT),
                           timed(lambda: b.run(test, "client", duration_s=1.0, **TIMEOUT)))
    assert 1.0 <= rec["elapsed"] < 2.0, rec["elapsed"]
    assert rec["ops"] > 0 and rec["bytes"] == rec["ops"] * 4096
    assert rec["completions_ops"][-1] == rec["ops"]
    assert 0.9e9 < rec["t_end_ns"] - rec["t_start_ns"] < 2.0e9
    if test == "send_bw":
        assert server["ops"] == rec["ops"]  # the end marker is the last message, counted


@pytest.mark.parametrize("test", ["write_bw", "send_bw"])
def test_bw_duration_validated_to_the_end_marker(engine, test):
    server, client = run_pair(test, engine, duration_s=0.5, validate=True)
    assert client["ops"] > 0
    assert server["ops"] == client["ops"] == server["validated"]
    assert server["corrupt"] == 0


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("test", BW_TESTS)
def test_bw_validate_reuses_slots(engine, test):
    # slots (8) fewer than the messages: slots are reused, so flow control is exercised
    server, client = run_pair(test, engine, opts=dict(size=4096, depth=16, slots=8, cq_mod=4),
                              server_first=(test == "read_bw"), iters=2 * ITERS, validate=True)
    checker = client if test == "read_bw" else server
    assert checker["validated"] == 2 * ITERS
    assert checker["corrupt"] == 0 and checker["first_corrupt_seq"] == -1
    assert client["ops"] == 2 * ITERS


@pytest.mark.parametrize("server,client", [(e, e) for e in ENGINES] + MIXED)
def test_read_bw_detects_corrupt_slot(server, client):
    s, cl = pair(server, client, size=4096, depth=16, slots=16, cq_mod=4)
    with s, cl:
        assert s.run("read_bw", "server", iters=32, validate=True)["passive"] is True  # fills its slots
        s.raw._flip_byte(0, 3, 100)
        rec = cl.run("read_bw", "client", iters=32, validate=True, **TIMEOUT)
    assert rec["validated"] == 32
    assert rec["corrupt"] == 2  # slot 3 is read by sequences 3 and 19
    assert rec["first_corrupt_seq"] == 3


@pytest.mark.parametrize("test", ["write_bw", "send_bw", "write_lat", "send_lat"])
@pytest.mark.parametrize("server,client", [(e, e) for e in ENGINES] + MIXED)
def test_receiver_detects_corrupt_payload(server, client, test):
    srv, cli = run_pair(test, server, client, opts=dict(size=256, depth=16, slots=8, cq_mod=4),
                        iters=ITERS, validate=True, hook=lambda s, c: c.raw._inject_corruption(17))
    assert srv["validated"] == ITERS
    assert srv["corrupt"] == 1 and srv["first_corrupt_seq"] == 17


# ------------------------------------------------------------------ latency


@pytest.mark.parametrize("test", LAT_TESTS)
@pytest.mark.parametrize("inline", [0, 64])
def test_latency(engine, test, inline):
    server, client = run_pair(test, engine, opts=dict(LAT, inline_size=inline), server_first=(test == "read_lat"),
                              iters=30, warmup=3, validate=True)
    samples = client["samples_ns"]
    assert len(samples) == 30 and min(samples) > 0
    assert client["ops"] == 30 and client["bytes"] == 30 * 64 and client["t_end_ns"] > client["t_start_ns"]
    assert client["sample"] == ("post to completion" if test == "read_lat" else "half round trip")
    assert client["corrupt"] == 0 and client["validated"] == 33
    if test == "read_lat":
        assert server["passive"] is True
    else:
        assert server["ops"] == 30 and server["corrupt"] == 0 and server["validated"] == 33


def test_latency_samples_capped(engine):
    server, client = run_pair("send_lat", engine, opts=dict(size=8, depth=16, cq_mod=4), iters=30, max_samples=10)
    assert len(client["samples_ns"]) == 10 and client["samples_truncated"] is True
    assert client["ops"] == 30


@pytest.mark.parametrize("test", LAT_TESTS)
def test_latency_duration(engine, test):
    a, b = pair(engine, engine, **LAT)
    with a, b:
        server, rec = both(lambda: a.run(test, "server", duration_s=1.0, **TIMEOUT),
                           timed(lambda: b.run(test, "client", duration_s=1.0, **TIMEOUT)))
    assert 1.0 <= rec["elapsed"] < 2.0
    assert len(rec["samples_ns"]) == rec["ops"] > 0
    if test != "read_lat":
        assert server["ops"] == rec["ops"]


def test_large_messages(engine):
    server, client = run_pair("write_bw", engine, opts=dict(size=1024 * 1024, depth=4, slots=2, cq_mod=2),
                              iters=8, validate=True)
    assert client["bytes"] == 8 * 1024 * 1024 and server["corrupt"] == 0 and server["validated"] == 8


# ------------------------------------------------------------------ timeouts and failures


def _timed_out(engine, info):
    """Both engines raise VerbsError; the native one keeps the TimeoutError it mapped on __cause__."""
    if engine == "native":
        assert isinstance(info.value.__cause__, TimeoutError)


@pytest.mark.parametrize("test", ["send_bw", "write_lat", "send_lat"])
def test_timeout_when_peer_never_posts(engine, test):
    a, b = pair(engine, engine)
    with a, b:
        start = time.monotonic()
        with pytest.raises(VerbsError, match="ms") as info:
            a.run(test, "server" if test == "send_bw" else "client", iters=10, timeout_ms=1000)
        _timed_out(engine, info)
        assert time.monotonic() - start < 5


def test_write_bw_validate_client_waits_for_credits_with_deadline(engine):
    # the server never checks anything: the client stops at `slots` unchecked messages
    a, b = pair(engine, engine, size=4096, depth=16, slots=4, cq_mod=2)
    with a, b:
        start = time.monotonic()
        with pytest.raises(VerbsError, match="credits") as info:
            b.run("write_bw", "client", iters=20, validate=True, timeout_ms=1000)
        _timed_out(engine, info)
        assert time.monotonic() - start < 5


def test_bad_completion_names_qp_and_status(engine):
    eng = _engine(engine)
    with eng.open_endpoint(**spec(qps=2, **SMALL)) as a, eng.open_endpoint(**spec(qps=2, **SMALL)) as b:
        info = a.local_info()
        info[1]["rkey"] ^= 0x5A5A00  # QP 1 writes with a key the peer never issued
        b.connect(info)
        a.connect(b.local_info())
        # the status as each engine's library spells it: "remote access error" (C), "REM_ACCESS_ERR" (pyverbs)
        with pytest.raises(VerbsError, match=r"QP 1: send work request \d+ failed: .*(?i:rem)") as exc:
            b.run("write_bw", "client", iters=20, **TIMEOUT)
        if engine == "native":
            assert type(exc.value.__cause__) is OSError


# ------------------------------------------------------------------ connection details


def test_requested_mtu_is_the_path_mtu(engine):
    eng = _engine(engine)
    with eng.open_endpoint(mtu=1024, **spec()) as a, eng.open_endpoint(**spec()) as b:
        assert a.local_info()[0]["mtu"] == 1024
        a.connect(b.local_info())
        b.connect(a.local_info())  # min(own active MTU, the peer's 1024)
        assert a.mtu == b.mtu == 1024
        server, client = both(lambda: a.run("send_bw", "server", iters=20, validate=True, **TIMEOUT),
                              lambda: b.run("send_bw", "client", iters=20, validate=True, **TIMEOUT))
        assert server["validated"] == 20 and server["corrupt"] == 0


@pytest.mark.parametrize("server,client", [(e, e) for e in ENGINES] + MIXED)
@pytest.mark.parametrize("peer_says", [4, None])
def test_read_depth_is_the_smaller_of_ours_and_the_peers(server, client, peer_says):
    """A reader keeps no more READs in flight than the peer's info says it answers (mixed NICs: rxe
    answers 128, a ConnectX 16); info without the field (an older rdmabench) leaves our own cap."""
    s = _engine(server).open_endpoint(**spec())
    with s, _engine(client).open_endpoint(**spec()) as cl:
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


def test_send_bw_warmup_not_counted_when_the_receiver_starts_late(engine):
    """The receiver starts a second late: by then the sender's warm-up has completed (receives are
    posted at connect) and measured messages wait behind it, so the receiver's warm-up phase polls
    both kinds in one batch. It must still count exactly the measured ones (it once counted from
    where its warm-up phase happened to stop: 119 of 120)."""
    s, cl = pair(engine, engine, qps=3, **SMALL)
    kw = dict(iters=40, warmup=10, **TIMEOUT)

    def late_server():
        time.sleep(1.0)
        return s.run("send_bw", "server", **kw)

    with s, cl:
        srv, cli = both(late_server, lambda: cl.run("send_bw", "client", **kw))
    assert cli["ops"] == 120 and srv["ops"] == 120


# ------------------------------------------------------------------ mixed pairs: one protocol


@pytest.mark.parametrize("test", ["write_bw", "read_bw", "send_bw", "write_lat", "read_lat", "send_lat"])
@pytest.mark.parametrize("server,client", MIXED)
def test_mixed_pairs_validate(server, client, test):
    lat = test.endswith("lat")
    srv, cli = run_pair(test, server, client, opts=LAT if lat else dict(qps=2, **SMALL),
                        server_first=test.startswith("read"), iters=ITERS, validate=True)
    qps = 1 if lat else 2
    assert cli["ops"] == qps * ITERS
    checker = cli if test.startswith("read") or test == "write_lat" else srv
    assert checker["validated"] >= qps * ITERS
    assert srv.get("corrupt", 0) == 0 and cli["corrupt"] == 0


# ------------------------------------------------------------------ rdma_cm


def cm_pair(server_engine, client_engine, **opts):
    port = next(_cm_port)
    box = {}

    def listen():
        try:
            box["ep"] = _engine(server_engine).cm_listen(IP, port, timeout_ms=30000, **opts)
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    cl = None
    try:
        for _ in range(50):  # the listener may not be bound yet
            try:
                cl = _engine(client_engine).cm_connect(IP, port, timeout_ms=30000, **opts)
                break
            except VerbsError as exc:
                if "reject" not in str(exc).lower() and "refused" not in str(exc).lower():
                    raise
                thread.join(0.2)
    finally:
        thread.join(60)
    if "error" in box:
        if cl:
            cl.close()
        raise box["error"]
    assert cl is not None, "cm_connect never reached the listener"
    return box["ep"], cl


@pytest.mark.parametrize("test", ["write_bw", "read_bw", "send_bw", "write_lat", "send_lat"])
@pytest.mark.parametrize("server,client", [(e, e) for e in ENGINES] + MIXED)
def test_cm_connected_endpoints(server, client, test):
    s, cl = cm_pair(server, client, qps=2, **SMALL)
    with s, cl:
        assert s.device == cl.device == DEVICE
        assert s.connected and cl.connected
        assert s.registered_bytes == 2 * 16 * 4096
        lat = test.endswith("lat")
        kw = dict(iters=ITERS, validate=True, **TIMEOUT)
        srec, crec = both(lambda: s.run(test, "server", **kw), lambda: cl.run(test, "client", **kw),
                          server_first=(test == "read_bw"))
    assert crec["ops"] == (ITERS if lat else 2 * ITERS)
    checker = crec if test == "read_bw" else srec
    assert checker["corrupt"] == 0 and checker["validated"] > 0


# The failure paths of rdma_cm are checked on the native engine only: the python engine's failed
# cm_connect leaves a CMID that pyverbs closes a second time (EBADF), and its timed-out cm_listen
# closes the event channel (ep.close()) before the listener on it; the lab process then crashed
# later, in the next rdma_cm user (test_verbs_resources).
def test_cm_listen_times_out_without_peer():
    start = time.monotonic()
    with pytest.raises(VerbsError, match="connection request") as info:
        native.cm_listen(IP, next(_cm_port), timeout_ms=1500)
    assert isinstance(info.value.__cause__, TimeoutError)
    assert time.monotonic() - start < 6


def test_cm_connect_without_listener_fails_fast():
    start = time.monotonic()
    with pytest.raises(VerbsError):
        native.cm_connect(IP, next(_cm_port), timeout_ms=3000)
    assert time.monotonic() - start < 10
