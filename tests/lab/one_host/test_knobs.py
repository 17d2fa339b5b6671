"""RoCE production knobs on the lab's device: the traffic class and SL held by the QPs (both connection
paths), NUMA placement recorded (the guest's device has no NUMA information) and --cpu pinning, huge pages
with and without a reservation, and the atomic tests' two operations verified (and a disagreeing counter
caught)."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rdmabench import devices, placement
from rdmabench.engines import native
from rdmabench.perf.client import run_local
from rdmabench.perf.options import RunOptions

from lab_pairs import DEVICE, pair

HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")


def rdmabench(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "rdmabench.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def cm_pair(ip, port, **opts):
    box = {}

    def listen():
        try:
            box["server"] = native.cm_listen(ip, port, timeout_ms=20000, **opts)
        except BaseException as err:  # reported below
            box["error"] = err

    t = threading.Thread(target=listen)
    t.start()
    try:
        client = native.cm_connect(ip, port, timeout_ms=20000, **opts)
    finally:
        t.join(30)
    if "error" in box:
        raise box["error"]
    return box["server"], client


# ---- traffic class and service level on the QPs

# rxe keeps no service level in its address vectors (soft-RoCE has no VLAN priority to put it in): its QPs
# report SL 0 whatever was set. Any other device must report the SL it was given.
HELD_SL = 0 if devices.describe(DEVICE).driver == "rdma_rxe" else 3


def test_tclass_and_sl_are_on_every_qp_out_of_band():
    a, b = pair(size=4096, depth=16, cq_mod=4, qps=2, tclass=106, sl=3)
    with a, b:
        for ep in (a, b):
            k = ep.knobs()
            assert (k["tclass"], k["sl"], k["qp_traffic_class"], k["qp_sl"]) == (106, 3, 106, HELD_SL), k
        b.run("write_bw", "server", iters=20)
        assert a.run("write_bw", "client", iters=20)["ops"] == 40  # the class changes nothing the loop sees
    a, b = pair(size=4096, depth=16, cq_mod=4)
    with a, b:
        assert (a.knobs()["qp_traffic_class"], a.knobs()["qp_sl"]) == (0, 0)


def test_tclass_over_rdma_cm_is_the_routes(lab_env):
    server, client = cm_pair(lab_env["ip"], 18631, size=4096, depth=16, cq_mod=4, tclass=106)
    with server, client:
        assert client.knobs()["qp_traffic_class"] == 106
        # the passive side's QP takes its address vector from the connection request's path
        assert server.knobs()["qp_traffic_class"] == 106
        server.run("write_bw", "server", iters=20)
        assert client.run("write_bw", "client", iters=20)["ops"] == 20


def test_run_records_tclass_sl_and_placement(lab_env, tmp_path):
    out = tmp_path / "r.json"
    done = rdmabench("run", "-t", "write_bw", "-n", "20", "--tclass", "106", "--sl", "3", "-o", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert (result["options"]["tclass"], result["options"]["sl"]) == (106, 3)
    (row,) = result["rows"]
    d = row["detail"]
    assert (d["tclass"], d["sl"]) == (106, 3)
    for side in ("client", "server"):
        assert (d["qp"][side]["qp_traffic_class"], d["qp"][side]["qp_sl"]) == (106, HELD_SL), side
    assert ("SL" in " ".join(d.get("qp_notes", []))) == (HELD_SL != 3)  # a QP that does not hold the SL is said
    # the guest's rxe device has no NUMA node: nothing placed, and the result says so at both ends
    node = placement.nic_node(lab_env["device"])
    assert result["options"]["placement"]["nic_numa_node"] == node
    if node is None:
        for side in ("client", "server"):
            assert d["placement"][side]["mode"] == "nic" and d["placement"][side]["cpus"] is None, side
            assert placement.NO_INFO in d["placement"][side]["note"], side
    assert "tclass 106" in done.stdout and "sl 3" in done.stdout


def test_cpu_pins_the_measuring_thread(lab_env):
    seen = []
    options = RunOptions(tests=["write_bw"], iters=20, cpu="0")
    result = run_local(options, lab_env["device"], progress=lambda msg: seen.append(os.sched_getaffinity(0)))
    assert seen == [{0}]  # the thread that runs the C loop, while it runs
    assert os.sched_getaffinity(0) != {0} or os.cpu_count() == 1  # given back afterwards
    client = result.rows[0]["detail"]["placement"]["client"]
    assert client["mode"] == "cpus" and client["cpus"] == [0]
    if client["memory_node"] is not None:  # the kernel knows cpu0's node: the buffer is placed and read back there
        assert client["memory_node_measured"] == client["memory_node"]
    off = run_local(RunOptions(tests=["write_bw"], iters=20, numa=False), lab_env["device"])
    assert off.rows[0]["detail"]["placement"]["client"]["mode"] == "off"
    assert off.rows[0]["detail"]["placement"]["server"]["mode"] == "off"


# ---- huge pages

@pytest.fixture
def hugepages_reserve():
    if os.geteuid() != 0:
        pytest.fail("the lab runs as root: this test sets /proc/sys/vm/nr_hugepages")
    before = HUGEPAGES.read_text().strip()

    def reserve(n):
        HUGEPAGES.write_text(f"{n}\n")
        return int(HUGEPAGES.read_text())

    yield reserve
    HUGEPAGES.write_text(before + "\n")


def test_hugepages_without_a_reservation_says_how(tmp_path, hugepages_reserve):
    assert hugepages_reserve(0) == 0
    done = rdmabench("run", "-t", "write_bw", "-n", "20", "--hugepages", "-o", str(tmp_path / "r.json"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "huge pages" in done.stderr and "echo" in done.stderr and "/proc/sys/vm/nr_hugepages" in done.stderr
    assert "Traceback" not in done.stderr


def test_hugepages_with_a_reservation(tmp_path, hugepages_reserve):
    assert hugepages_reserve(64) == 64
    out = tmp_path / "r.json"
    done = rdmabench("run", "-t", "write_bw", "-n", "20", "--hugepages", "--validate", "-o", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    d = json.loads(out.read_text())["rows"][0]["detail"]
    assert d["hugepages"] is True and d["corrupt"] == 0
    assert d["qp"]["client"]["hugepages"] is True and d["qp"]["server"]["hugepages"] is True


# ---- atomics

@pytest.mark.parametrize("op", ["fetch_add", "cmp_swap"])
def test_atomic_bw_checks_every_reply_and_the_counter(op):
    depth_cap = devices.describe(DEVICE).max_qp_rd_atom
    a, b = pair(size=8, depth=64, cq_mod=8, qps=2)
    with a, b:
        assert a.knobs()["atomic_cap"] in ("hca", "glob")
        assert b.run("atomic_bw", "server", iters=200, atomic=op)["passive"] is True
        r = a.run("atomic_bw", "client", iters=200, warmup=10, atomic=op)
        assert r["atomic"] == op and r["ops"] == 400 and r["bytes"] == 400 * 8
        assert r["validated"] == 2 * 210 and r["corrupt"] == 0 and r["first_corrupt_seq"] == -1
        assert r["counters_ok"] == 2 and r["counters_bad"] == 0
        assert 1 <= r["atomic_depth"] <= min(64, depth_cap) and r["atomic_signal_every"] <= r["atomic_depth"]
        assert r["reply_byte_order"] in ("host", "big-endian")
        again = a.run("atomic_bw", "client", iters=50, atomic=op)  # each run starts its counters from zero
        assert again["corrupt"] == 0 and again["counters_ok"] == 2


@pytest.mark.parametrize("op", ["fetch_add", "cmp_swap"])
def test_atomic_lat_one_at_a_time(op):
    a, b = pair(size=8, depth=16, cq_mod=4)
    with a, b:
        r = a.run("atomic_lat", "client", iters=50, warmup=5, atomic=op)
        assert r["sample"] == "post to completion" and len(r["samples_ns"]) == 50 and min(r["samples_ns"]) > 0
        assert r["validated"] == 55 and r["corrupt"] == 0 and r["counters_ok"] == 1


@pytest.mark.parametrize("op", ["fetch_add", "cmp_swap"])
def test_a_counter_that_disagrees_is_caught(op):
    a, b = pair(size=8, depth=16, cq_mod=4)
    with a, b:
        a.raw._inject_corruption(20)  # operation 20 adds 2 / compares with a wrong value
        r = a.run("atomic_bw", "client", iters=100, atomic=op)
        assert r["corrupt"] > 0 and r["first_corrupt_seq"] in (20, 21) and r["counters_bad"] == 1


def test_atomic_refusals():
    a, b = pair(size=64, depth=16, cq_mod=4)
    with a, b:
        with pytest.raises(ValueError, match="8 bytes"):
            a.run("atomic_bw", "client", iters=10)
        with pytest.raises(ValueError, match="fetch_add"):
            a.run("atomic_bw", "client", iters=10, atomic="xor")


def test_run_atomic_tests_through_the_cli(tmp_path):
    out = tmp_path / "r.json"
    done = rdmabench("run", "-t", "atomic_bw,atomic_lat", "--atomic", "cmp_swap", "-n", "50", "-o", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["measured"] for r in rows] == [{"test": "atomic_bw", "op": "cmp_swap", "size": 8},
                                             {"test": "atomic_lat", "op": "cmp_swap", "size": 8}]
    for r in rows:
        d = r["detail"]
        assert d["atomic"] == "cmp_swap" and d["corrupt"] == 0 and d["validated"] == 50 and d["counters_checked"] == 1
    assert rows[0]["value"] == rows[0]["detail"]["bw_avg_MiBps"] > 0 and rows[0]["detail"]["ops_per_s"] > 0
    assert rows[1]["detail"]["samples"] == 50
    assert "atomic_bw cmp_swap" in done.stdout and "atomic_lat cmp_swap" in done.stdout
