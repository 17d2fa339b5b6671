"""The native benchmark engine (rdmabench._native.Endpoint) on the lab's soft-RoCE device.

Runs inside the lab guest. Two endpoints live in this one process, connected to each other; the
server side of each run goes in a thread while the main thread runs the client (run() releases
the GIL, so both make progress: a held GIL would show up as a timeout here).
Counts are tiny: the guest runs under emulation.
"""
import json
import os
import subprocess
import sys
import threading
import time
from array import array

import pytest

from rdmabench.engines import native
from rdmabench.errors import DeviceNotFound, VerbsError

from lab_pairs import DEVICE, GID_INDEX, IP, both, check_local_info, gil_pauses, timed


RXE_MAX_MSG = 8 * 1024 * 1024

SMALL = dict(size=4096, depth=16, cq_mod=4)
BW_TESTS = ["write_bw", "read_bw", "send_bw"]
LAT_TESTS = ["write_lat", "read_lat", "send_lat"]
_cm_port = iter(range(19700, 19800))


def pair(**opts):
    spec = dict(device=DEVICE, gid_index=GID_INDEX, **opts)
    a, b = native.open_endpoint(**spec), native.open_endpoint(**spec)
    info_a, info_b = a.local_info(), b.local_info()
    # the info travels as JSON over the control channel: it must survive that
    a.connect(json.loads(json.dumps(info_b)))
    b.connect(json.loads(json.dumps(info_a)))
    return a, b


def run_pair(test, opts=None, server_first=False, server_kw=None, **kw):
    a, b = pair(**(opts or SMALL))
    with a, b:
        return both(lambda: a.run(test, "server", **{**kw, **(server_kw or {})}),
                    lambda: b.run(test, "client", **kw), server_first=server_first)


def check_bw_record(rec, test, iters, size, qps=1):
    assert rec["test"] == test and rec["passive"] is False
    assert rec["ops"] == iters * qps
    assert rec["bytes"] == iters * qps * size
    assert rec["t_end_ns"] > rec["t_start_ns"] > 0
    assert rec["tsc_hz"] > 0
    assert isinstance(rec["completions_ns"], array) and rec["completions_ns"].typecode == "q"
    assert isinstance(rec["completions_ops"], array) and rec["completions_ops"].typecode == "Q"
    assert len(rec["completions_ns"]) == len(rec["completions_ops"]) > 0
    assert list(rec["completions_ops"]) == sorted(rec["completions_ops"])
    assert rec["completions_ops"][-1] == iters * qps
    assert list(rec["completions_ns"]) == sorted(rec["completions_ns"])
    assert rec["t_start_ns"] <= rec["completions_ns"][0] <= rec["completions_ns"][-1] <= rec["t_end_ns"]
    assert rec["samples_truncated"] is False
    assert rec["sample"] is None and len(rec["samples_ns"]) == 0


# ------------------------------------------------------------------ endpoint basics


def test_local_info_is_json_and_complete():
    with native.open_endpoint(device=DEVICE, gid_index=GID_INDEX, qps=2, **SMALL) as ep:
        check_local_info(ep)


def test_registered_memory_bounded_by_options_not_run_length():
    a, b = pair(qps=2, size=4096, depth=16, slots=8, cq_mod=4)
    with a, b:
        assert a.registered_bytes == b.registered_bytes == 2 * 8 * 4096
        a.run("write_bw", "server", iters=500)
        rec = b.run("write_bw", "client", iters=500)
        assert rec["ops"] == 1000
        assert b.registered_bytes == 2 * 8 * 4096
    with native.open_endpoint(device=DEVICE, gid_index=GID_INDEX, size=1024, depth=32) as ep:
        assert ep.slots == 32 and ep.registered_bytes == 32 * 1024


def test_bad_sizes_and_device():
    with pytest.raises(ValueError, match="size"):
        native.open_endpoint(device=DEVICE, gid_index=GID_INDEX, size=0)
    with pytest.raises(ValueError, match="exceeds the maximum message size"):
        native.open_endpoint(device=DEVICE, gid_index=GID_INDEX, size=RXE_MAX_MSG + 1, depth=1)
    with pytest.raises(DeviceNotFound, match=rf"no RDMA device named 'nosuchdev0'.*\b{DEVICE}\b"):
        native.open_endpoint(device="nosuchdev0", gid_index=GID_INDEX)


def test_close_is_idempotent_and_final():
    ep = native.open_endpoint(device=DEVICE, gid_index=GID_INDEX, **SMALL)
    ep.close()
    ep.close()
    assert ep.closed
    with pytest.raises(RuntimeError, match="closed"):
        ep.run("write_bw", "client", iters=1)


def test_run_arguments_checked():
    a, b = pair(**SMALL)
    with a, b:
        with pytest.raises(ValueError, match="exactly one"):
            b.run("write_bw", "client")
        with pytest.raises(ValueError, match="exactly one"):
            b.run("write_bw", "client", iters=5, duration_s=1.0)
        with pytest.raises(ValueError, match="unknown test"):
            b.run("atomic_bw", "client", iters=5)
        with pytest.raises(ValueError, match="role"):
            b.run("write_bw", "both", iters=5)


# ------------------------------------------------------------------ bandwidth


@pytest.mark.parametrize("test", BW_TESTS)
def test_bw_iterations(test):
    server, client = run_pair(test, iters=200)
    check_bw_record(client, test, 200, 4096)
    assert client["role"] == "client" and client["iters"] == 200
    if test == "send_bw":
        assert server["ops"] == 200 and server["bytes"] == 200 * 4096
        assert server["t_end_ns"] > server["t_start_ns"] > 0
    else:
        assert server["passive"] is True and server["ops"] == 0


@pytest.mark.parametrize("test", BW_TESTS)
def test_bw_several_qps_warmup_not_counted(test):
    server, client = run_pair(test, opts=dict(qps=3, **SMALL), iters=40, warmup=10)
    check_bw_record(client, test, 40, 4096, qps=3)
    if test == "send_bw":
        assert server["ops"] == 120


def test_bw_inline_small_messages():
    server, client = run_pair("write_bw", opts=dict(size=64, depth=16, cq_mod=4, inline_size=64),
                              iters=100, validate=True)
    check_bw_record(client, "write_bw", 100, 64)
    assert server["validated"] == 100 and server["corrupt"] == 0


@pytest.mark.parametrize("test", BW_TESTS)
def test_bw_bidirectional(test):
    a, b = pair(**SMALL)
    with a, b:
        ra, rb = both(lambda: a.run(test, "client", iters=100, bidir=True),
                      lambda: b.run(test, "client", iters=100, bidir=True))
    for rec in (ra, rb):
        check_bw_record(rec, test, 100, 4096)
        if test == "send_bw":
            assert rec["recv_ops"] == 100


@pytest.mark.parametrize("test", BW_TESTS)
def test_bw_duration_stops_on_time(test):
    a, b = pair(**SMALL)
    with a, b:
        server, rec = both(lambda: a.run(test, "server", duration_s=1.0),
                           timed(lambda: b.run(test, "client", duration_s=1.0)))
    assert 1.0 <= rec["elapsed"] < 2.0, rec["elapsed"]
    assert rec["ops"] > 0 and rec["bytes"] == rec["ops"] * 4096
    assert rec["completions_ops"][-1] == rec["ops"]
    assert 0.9e9 < rec["t_end_ns"] - rec["t_start_ns"] < 2.0e9
    if test == "send_bw":
        assert server["ops"] == rec["ops"]  # the end marker is the last message, counted


def test_write_bw_validate_duration():
    server, client = run_pair("write_bw", duration_s=1.0, validate=True)
    assert client["ops"] > 0
    assert server["ops"] == client["ops"] == server["validated"]
    assert server["corrupt"] == 0


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("test", BW_TESTS)
def test_bw_validate_passes(test):
    # slots (8) fewer than iters (100): slots are reused, so flow control is exercised
    server, client = run_pair(test, opts=dict(size=4096, depth=16, slots=8, cq_mod=4),
                              server_first=(test == "read_bw"), iters=100, validate=True)
    checker = client if test == "read_bw" else server
    assert checker["validated"] == 100
    assert checker["corrupt"] == 0 and checker["first_corrupt_seq"] == -1
    assert client["ops"] == 100


def test_read_bw_detects_corrupt_slot():
    a, b = pair(size=4096, depth=16, slots=16, cq_mod=4)
    with a, b:
        assert a.run("read_bw", "server", iters=32, validate=True)["passive"] is True  # fills its slots
        a.raw._flip_byte(0, 3, 100)
        rec = b.run("read_bw", "client", iters=32, validate=True)
    assert rec["validated"] == 32
    assert rec["corrupt"] == 2  # slot 3 is read by sequences 3 and 19
    assert rec["first_corrupt_seq"] == 3


@pytest.mark.parametrize("test", ["write_bw", "send_bw", "write_lat", "send_lat"])
def test_receiver_detects_corrupt_payload(test):
    a, b = pair(size=256, depth=16, slots=8, cq_mod=4)
    with a, b:
        b.raw._inject_corruption(37)
        server, client = both(lambda: a.run(test, "server", iters=60, validate=True),
                              lambda: b.run(test, "client", iters=60, validate=True))
    assert server["validated"] == 60
    assert server["corrupt"] == 1 and server["first_corrupt_seq"] == 37


# ------------------------------------------------------------------ latency


@pytest.mark.parametrize("test", LAT_TESTS)
@pytest.mark.parametrize("inline", [0, 64])
def test_latency(test, inline):
    opts = dict(size=64, depth=16, cq_mod=4, inline_size=inline)
    server, client = run_pair(test, opts=opts, server_first=(test == "read_lat"),
                              iters=50, warmup=5, validate=True)
    samples = client["samples_ns"]
    assert isinstance(samples, array) and samples.typecode == "d"
    assert len(samples) == 50 and min(samples) > 0
    assert client["ops"] == 50 and client["t_end_ns"] > client["t_start_ns"]
    assert client["sample"] == ("post to completion" if test == "read_lat" else "half round trip")
    assert client["corrupt"] == 0 and client["validated"] == 55
    if test == "read_lat":
        assert server["passive"] is True
    else:
        assert server["ops"] == 50 and server["corrupt"] == 0 and server["validated"] == 55


def test_latency_samples_capped():
    server, client = run_pair("send_lat", opts=dict(size=8, depth=16, cq_mod=4), iters=30, max_samples=10)
    assert len(client["samples_ns"]) == 10 and client["samples_truncated"] is True
    assert client["ops"] == 30


@pytest.mark.parametrize("test", ["write_lat", "send_lat", "read_lat"])
def test_latency_duration(test):
    a, b = pair(size=64, depth=16, cq_mod=4)
    with a, b:
        server, rec = both(lambda: a.run(test, "server", duration_s=1.0),
                           timed(lambda: b.run(test, "client", duration_s=1.0)))
    assert 1.0 <= rec["elapsed"] < 2.0
    assert len(rec["samples_ns"]) == rec["ops"] > 0
    if test != "read_lat":
        assert server["ops"] == rec["ops"]


def test_large_messages():
    server, client = run_pair("write_bw", opts=dict(size=1024 * 1024, depth=4, slots=2, cq_mod=2),
                              iters=8, validate=True)
    assert client["bytes"] == 8 * 1024 * 1024 and server["corrupt"] == 0


# ------------------------------------------------------------------ timeouts


@pytest.mark.parametrize("test", ["send_bw", "write_lat", "send_lat"])
def test_timeout_when_peer_never_posts(test):
    a, b = pair(**SMALL)
    with a, b:
        start = time.monotonic()
        with pytest.raises(VerbsError, match="ms") as info:
            a.run(test, "server" if test == "send_bw" else "client", iters=10, timeout_ms=1000)
        assert isinstance(info.value.__cause__, TimeoutError)
        assert time.monotonic() - start < 5


def test_write_bw_validate_client_waits_for_credits_with_deadline():
    # the server never checks anything: the client stops at `slots` unchecked messages
    a, b = pair(size=4096, depth=16, slots=4, cq_mod=2)
    with a, b:
        start = time.monotonic()
        with pytest.raises(VerbsError, match="credits"):
            b.run("write_bw", "client", iters=20, validate=True, timeout_ms=1000)
        assert time.monotonic() - start < 5


# ------------------------------------------------------------------ rdma_cm


def cm_pair(**spec):
    port = next(_cm_port)
    box = {}

    def listen():
        try:
            box["ep"] = native.cm_listen(IP, port, timeout_ms=20000, **spec)
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    time.sleep(0.3)
    try:
        client = native.cm_connect(IP, port, timeout_ms=20000, **spec)
    finally:
        thread.join(60)
    if "error" in box:
        raise box["error"]
    return box["ep"], client


@pytest.mark.parametrize("test", ["write_bw", "read_bw", "send_bw", "write_lat", "send_lat"])
def test_cm_connected_endpoints(test):
    server, client = cm_pair(qps=2, **SMALL)
    with server, client:
        assert server.device == client.device == DEVICE
        assert server.connected and client.connected
        assert server.registered_bytes == 2 * 16 * 4096
        lat = test.endswith("lat")
        srec, crec = both(lambda: server.run(test, "server", iters=40, validate=True),
                          lambda: client.run(test, "client", iters=40, validate=True),
                          server_first=(test == "read_bw"))
    assert crec["ops"] == (40 if lat else 80)
    checker = crec if test == "read_bw" else srec
    assert checker["corrupt"] == 0 and checker["validated"] > 0


def test_cm_listen_times_out_without_peer():
    start = time.monotonic()
    with pytest.raises(VerbsError, match="no connection request") as info:
        native.cm_listen(IP, next(_cm_port), timeout_ms=1500)
    assert isinstance(info.value.__cause__, TimeoutError)
    assert time.monotonic() - start < 6


def test_cm_connect_without_listener_fails_fast():
    start = time.monotonic()
    with pytest.raises(VerbsError):
        native.cm_connect(IP, next(_cm_port), timeout_ms=3000)
    assert time.monotonic() - start < 10


# ------------------------------------------------------------------ connection details, errors, GIL


def test_requested_mtu_is_the_path_mtu():
    spec = dict(device=DEVICE, gid_index=GID_INDEX, **SMALL)
    with native.open_endpoint(mtu=1024, **spec) as a, native.open_endpoint(**spec) as b:
        assert a.local_info()[0]["mtu"] == 1024
        a.connect(b.local_info())
        b.connect(a.local_info())  # min(own active MTU, the peer's 1024)
        assert a.mtu == b.mtu == 1024
        server, client = both(lambda: a.run("send_bw", "server", iters=20, validate=True),
                              lambda: b.run("send_bw", "client", iters=20, validate=True))
        assert server["validated"] == 20 and server["corrupt"] == 0


def test_bad_completion_names_qp_and_status():
    spec = dict(device=DEVICE, gid_index=GID_INDEX, qps=2, **SMALL)
    with native.open_endpoint(**spec) as a, native.open_endpoint(**spec) as b:
        info = a.local_info()
        info[1]["rkey"] ^= 0x5A5A00  # QP 1 writes with a key the peer never issued
        b.connect(info)
        a.connect(b.local_info())
        with pytest.raises(VerbsError, match=r"QP 1: send work request \d+ failed: .*remote") as exc:
            b.run("write_bw", "client", iters=20)
        assert type(exc.value.__cause__) is OSError


def test_gil_released_while_running():
    a, b = pair(**SMALL)
    with a, b:
        rec, _, longest = gil_pauses(lambda: b.run("write_bw", "client", duration_s=1.0))
    assert rec["ops"] > 0
    assert longest < 0.5, longest


def test_the_loops_read_the_tsc_in_the_guest_unless_told_not_to():
    # The lab's CPU lacks constant_tsc/nonstop_tsc and its kernel reads an HPET for clock_gettime;
    # the TSC's rate still holds, so the loops must be on rdtsc (timer says which, every result too).
    clock = native.clock()
    assert clock["timer"].startswith("tsc"), clock
    assert 1e8 < clock["tsc_hz"] < 1e11
    forced = subprocess.run([sys.executable, "-c", "from rdmabench.engines import native; print(native.clock()['timer'])"],
                            capture_output=True, text=True, env={**os.environ, "RDMABENCH_NO_TSC": "1"}, check=True)
    assert forced.stdout.strip() == "clock_gettime"
