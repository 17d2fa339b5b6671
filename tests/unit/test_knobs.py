"""RoCE production knobs on the host: --tclass/--sl/--cpu/--no-numa/--hugepages/--atomic parsed, checked,
carried to the server and recorded in every row; NUMA placement read from a sysfs tree; the native
endpoint refusing bad knobs before it opens anything. (The lab runs them on a device: tests/lab/one_host/test_knobs.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from rdmabench import placement
from rdmabench.cli import cli
from rdmabench.engines import tests
from rdmabench.errors import RdmabenchError
from rdmabench.perf.client import make_row
from rdmabench.perf.options import RunOptions
from rdmabench.perf.server import SETUP, endpoint_spec, run_kwargs
from rdmabench.wirecheck import BadMessage, fields


# ---- options

def test_knob_defaults_are_perftests_and_recorded():
    o = RunOptions(tests=["write_bw"])
    d = o.to_dict()
    assert (d["tclass"], d["sl"], d["cpu"], d["numa"], d["hugepages"], d["atomic"]) == (0, 0, None, True, False,
                                                                                           "fetch_add")


@pytest.mark.parametrize("bad, match", [
    (dict(tclass=256), "0..255"), (dict(tclass=-1), "0..255"), (dict(sl=16), "0..15"),
    (dict(sl=3, connect="cm"), "rdma_cm"), (dict(atomic="swap"), "fetch_add or cmp_swap"),
    (dict(cpu="3-1"), "range"), (dict(cpu="x"), "numbers"),
    (dict(engine="python", tclass=106), "--tclass"), (dict(engine="python", hugepages=True), "--hugepages"),
])
def test_bad_knobs_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        RunOptions(tests=["write_bw"], **bad)


def test_tclass_and_sl_in_range_are_taken():
    o = RunOptions(tests=["write_bw"], tclass=106, sl=3, cpu="0", hugepages=True)
    assert (o.tclass, o.sl, o.cpu, o.hugepages) == (106, 3, "0", True)
    assert RunOptions(tests=["write_bw"], tclass=106, connect="cm").tclass == 106  # tclass works over rdma_cm


def test_atomic_tests_are_8_bytes_native_only_and_one_way():
    assert tests.is_atomic("atomic_bw") and tests.is_atomic("atomic_lat") and not tests.is_atomic("read_bw")
    o = RunOptions(tests=["write_bw", "atomic_bw", "atomic_lat"], sizes=[4096, 65536])
    assert o.plan() == [("write_bw", 4096), ("write_bw", 65536), ("atomic_bw", 8), ("atomic_lat", 8)]
    assert RunOptions(tests=["atomic_bw"], sizes=[8]).plan() == [("atomic_bw", 8)]
    with pytest.raises(ValueError, match="8 bytes"):
        RunOptions(tests=["atomic_bw"], sizes=[64])
    with pytest.raises(ValueError, match="native"):
        RunOptions(tests=["atomic_lat"], engine="python")
    with pytest.raises(ValueError, match="bidir"):
        RunOptions(tests=["atomic_bw"], bidir=True)
    assert RunOptions(tests=["atomic_bw"], atomic="cmp_swap").atomic == "cmp_swap"


def test_python_engine_refuses_atomics_by_name():
    pytest.importorskip("pyverbs")
    # a fresh interpreter: other tests swap pyverbs modules for stand-ins in this one
    code = ("from rdmabench.engines import python as p; "
            "assert 'atomic_bw' not in p.TESTS and 'atomic_lat' not in p.TESTS and 'atomic_bw' not in p.BW_TESTS; "
            "assert 'write_bw' in p.BW_TESTS and 'read_lat' in p.TESTS")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# ---- the command line

@pytest.mark.parametrize("args, match", [
    (["--tclass", "300"], "0<=x<=255"), (["--sl", "16"], "0<=x<=15"),
    (["--sl", "2", "--connect", "cm"], "rdma_cm"), (["--atomic", "xor"], "fetch_add"),
    (["-t", "atomic_bw", "--size", "64"], "8 bytes"), (["--cpu", "a-b"], "numbers"),
])
def test_run_refuses_bad_knobs_before_touching_a_device(args, match):
    out = CliRunner().invoke(cli, ["run", "-d", "nosuchdev0", *args])
    assert out.exit_code == 2, out.output
    assert match in out.output


def test_run_help_teaches_the_knobs():
    text = CliRunner().invoke(cli, ["run", "--help"]).output
    for word in ("--tclass", "DSCP", "106", "--sl", "--cpu", "--no-numa", "--hugepages", "nr_hugepages",
                 "--atomic", "cmp_swap", "atomic_bw", "atomic_lat"):
        assert word in text, word


# ---- the wire: both ends get the knobs

def _setup(**over):
    s = {"v": 1, "type": "setup", "test": "write_bw", "size": 65536, "qps": 1, "depth": 128, "cq_mod": 100,
         "mtu": None, "iters": 10, "duration": None, "warmup": 0, "bidir": False, "validate": False,
         "engine": "native", "connect": "oob", "inline_size": 0, "slots": 0, "max_samples": 10, "timeout_ms": 1000,
         "cm_port": 18516, "cm_bind": "10.0.0.1"}
    s.update(over)
    return s


def test_server_takes_the_knobs_and_an_older_client_without_them():
    old = fields(_setup(), SETUP, "setup")
    assert endpoint_spec(old)["tclass"] == 0 and endpoint_spec(old)["sl"] == 0 and not endpoint_spec(old)["hugepages"]
    new = fields(_setup(tclass=106, sl=3, hugepages=True, placement="off", atomic="cmp_swap", test="atomic_bw",
                        size=8), SETUP, "setup")
    spec = endpoint_spec(new)
    assert (spec["tclass"], spec["sl"], spec["hugepages"]) == (106, 3, True)
    assert run_kwargs(new, "server")["atomic"] == "cmp_swap"
    assert "atomic" not in run_kwargs(old, "client")  # the python engine's run() takes no such argument
    for bad in (dict(tclass=256), dict(sl=16), dict(placement="elsewhere"), dict(atomic="xor")):
        with pytest.raises(BadMessage):
            fields(_setup(**bad), SETUP, "setup")


# ---- placement from sysfs

def _sysfs(tmp_path, numa_node: str | None, cpulist: str = "0"):
    ib = tmp_path / "infiniband" / "mlx5_0" / "device"
    ib.mkdir(parents=True)
    if numa_node is not None:
        (ib / "numa_node").write_text(numa_node + "\n")
    node = tmp_path / "node" / "node1"
    node.mkdir(parents=True)
    (node / "cpulist").write_text(cpulist + "\n")
    cpu = tmp_path / "cpu" / "cpu0" / "node1"
    cpu.mkdir(parents=True)
    return dict(root=tmp_path / "infiniband", node_root=tmp_path / "node", cpu_root=tmp_path / "cpu")


def test_cpu_lists_parse_as_the_kernel_writes_them():
    assert placement.parse_cpu_list("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert placement.parse_cpu_list(" 5 ") == [5]
    for bad in ("", ",", "3-1", "-1", "a"):
        with pytest.raises(ValueError):
            placement.parse_cpu_list(bad)


@pytest.mark.parametrize("value", ["-1", None])
def test_no_numa_information_places_nothing_and_says_so(tmp_path, value):
    p = placement.plan("mlx5_0", **_sysfs(tmp_path, value))
    assert p.mode == "nic" and p.nic_numa_node is None and p.cpus is None and p.memory_node is None
    assert p.endpoint_node == -1 and placement.NO_INFO in p.note


def test_the_nics_node_pins_to_its_cpus_and_places_memory_there(tmp_path):
    p = placement.plan("mlx5_0", **_sysfs(tmp_path, "1", cpulist="0"))
    allowed = os.sched_getaffinity(0)
    assert p.nic_numa_node == 1 and p.memory_node == 1 and p.endpoint_node == 1
    assert p.cpus == ([0] if 0 in allowed else None)
    rec = placement.record(p, {"memory_node": 1})
    assert rec["memory_node_measured"] == 1 and rec["nic_numa_node"] == 1
    assert placement.record(p, {"memory_node": -2})["memory_node_measured"] == "several nodes"


def test_cpu_choice_and_off(tmp_path):
    roots = _sysfs(tmp_path, "1", cpulist="0")
    assert placement.plan("mlx5_0", cpu="any", **roots).mode == "off"
    off = placement.plan("mlx5_0", numa=False, **roots)
    assert off.mode == "off" and off.cpus is None and off.endpoint_node == -1 and off.nic_numa_node == 1
    first = min(os.sched_getaffinity(0))
    chosen = placement.plan("mlx5_0", cpu=str(first), **roots)
    assert chosen.mode == "cpus" and chosen.cpus == [first]
    with pytest.raises(RdmabenchError, match="may run on"):
        placement.plan("mlx5_0", cpu="100000", **roots)


def test_pinned_pins_this_thread_and_gives_it_back():
    before = os.sched_getaffinity(0)
    one = min(before)
    with placement.pinned(placement.Placement("cpus", None, [one], None, "")):
        assert os.sched_getaffinity(0) == {one}
    assert os.sched_getaffinity(0) == before


# ---- what a row records

def _raw(**over):
    r = {"bytes": 8000, "ops": 1000, "t_start_ns": 0, "t_end_ns": 1_000_000, "completions_ns": [1_000_000],
         "completions_ops": [1000], "corrupt": 0, "validated": 1000, "atomic": "cmp_swap", "atomic_depth": 16,
         "atomic_signal_every": 16, "reply_byte_order": "host", "counters_ok": 1, "counters_bad": 0}
    r.update(over)
    return r


def _row_setup(**over):
    s = {"qps": 1, "engine": "native", "connect": "oob", "bidir": False, "iters": 1000, "duration": None,
         "validate": False, "tclass": 106, "sl": 3, "hugepages": True, "atomic": "cmp_swap",
         "knobs": {"client": {"qp_traffic_class": 106, "qp_sl": 3, "memory_node": 0, "hugepages": True,
                              "atomic_cap": "hca", "numa_node": 0},
                   "server": {"qp_traffic_class": 106, "qp_sl": 3, "memory_node": None, "hugepages": True,
                              "atomic_cap": "hca"}},
         "placement": {"client": {"mode": "nic", "cpus": [0, 1]}, "server": {"mode": "nic", "note": "x"}}}
    s.update(over)
    return s


def test_atomic_bw_row_records_knobs_op_and_checks():
    row = make_row("atomic_bw", 8, 0, _row_setup(), _raw(), None, {"passive": True}, None)
    assert row["measured"] == {"test": "atomic_bw", "op": "cmp_swap", "size": 8}
    d = row["detail"]
    assert (d["tclass"], d["sl"], d["hugepages"]) == (106, 3, True)
    assert d["qp"]["client"]["qp_traffic_class"] == 106 and d["qp"]["server"]["qp_sl"] == 3
    assert d["placement"]["client"]["cpus"] == [0, 1]
    assert d["atomic"] == "cmp_swap" and d["atomic_depth"] == 16 and d["counters_checked"] == 1
    assert d["validated"] == 1000 and d["corrupt"] == 0
    assert d["ops_per_s"] == pytest.approx(1e6) and d["bw_avg_MiBps"] == pytest.approx(8000 / 1e-3 / 2**20)


def test_atomic_row_fails_on_a_wrong_reply_or_counter():
    with pytest.raises(RdmabenchError, match="counter"):
        make_row("atomic_bw", 8, 0, _row_setup(), _raw(counters_bad=1), None, {"passive": True}, None)
    with pytest.raises(RdmabenchError, match="corrupt"):
        make_row("atomic_bw", 8, 0, _row_setup(), _raw(corrupt=2, first_corrupt_seq=5), None, {"passive": True}, None)


def test_a_qp_that_does_not_hold_the_knobs_is_said():
    setup = _row_setup()
    setup["knobs"]["server"]["qp_sl"] = 0
    d = make_row("atomic_bw", 8, 0, setup, _raw(), None, {"passive": True}, None)["detail"]
    assert d["qp_notes"] == ["the server's device reports SL 0 on its QP, not the 3 set"]
    assert "qp_notes" not in make_row("atomic_bw", 8, 0, _row_setup(), _raw(), None, {"passive": True}, None)["detail"]


def test_every_verbs_row_records_the_knobs():
    raw = {"bytes": 65536 * 10, "ops": 10, "t_start_ns": 0, "t_end_ns": 1_000_000}
    row = make_row("write_bw", 65536, 0, _row_setup(tclass=0, sl=0, hugepages=False, knobs=None, placement=None),
                   raw, None, {"passive": True}, None)
    assert row["measured"] == {"test": "write_bw", "size": 65536}
    assert (row["detail"]["tclass"], row["detail"]["sl"], row["detail"]["hugepages"]) == (0, 0, False)


# ---- the native endpoint checks its knobs before it opens anything

def test_native_endpoint_refuses_bad_knobs():
    native = pytest.importorskip("rdmabench._native")
    for kw, match in ((dict(tclass=256), "tclass"), (dict(sl=16), "sl")):
        with pytest.raises(ValueError, match=match):
            native.Endpoint("nosuchdev0", 0, **kw)
    with pytest.raises(ValueError, match="rdma_cm"):
        native.Endpoint.cm_connect("10.255.255.1", 18516, sl=2)
