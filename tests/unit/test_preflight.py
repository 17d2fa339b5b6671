"""`rdmabench run`'s options against the device's caps, refused or clamped before anything starts,
and the spellings of -t and --sizes (each case failed before: issue "What a new user hits")."""

import click
import pytest

from rdmabench.cli_types import names_option
from rdmabench.devices import Device, Gid, Port
from rdmabench.errors import RdmabenchError
from rdmabench.perf import preflight
from rdmabench.perf.options import RunOptions, parse_sweep
from rdmabench.engines.tests import TESTS


def device(active_mtu=1024, max_qp_wr=16384, max_cqe=4194303):
    gids = [Gid(0, "fe80:0000:0000:0000:0000:00ff:fe00:0001", "RoCE v2", "d0", None),
            Gid(1, "0000:0000:0000:0000:0000:ffff:0a4d:0001", "RoCE v2", "d0", "10.77.0.1")]
    port = Port(1, "ACTIVE", "LinkUp", "Ethernet", None, active_mtu, 8 << 20, "d0", 1500, gids, 1)
    return Device("rxe0", None, None, None, None, "rdma_rxe", [port], 128, max_qp_wr, max_cqe)


def test_a_gid_index_the_port_lacks_is_refused_listing_the_ones_it_has():
    with pytest.raises(RdmabenchError, match=r"--gid-index 99: rxe0 port 1 has no such GID; it has: 0 .*1 .*10\.77\.0\.1"):
        preflight.check(RunOptions(tests=["write_bw"], gid_index=99), device(), False, print)


def test_a_depth_above_the_device_or_engine_cap_is_refused_naming_the_cap():
    with pytest.raises(RdmabenchError, match="--depth 5000 is above rxe0's max_qp_wr of 4096"):
        preflight.check(RunOptions(tests=["write_bw"], depth=5000), device(max_qp_wr=4096), False, print)
    with pytest.raises(RdmabenchError, match="--depth 100000 is above the engines' maximum of 65536"):
        preflight.check(RunOptions(tests=["write_bw"], depth=100000), device(max_qp_wr=1 << 20), False, print)


def test_an_mtu_above_the_active_one_is_clamped_with_a_warning_and_recorded():
    said = []
    o = RunOptions(tests=["write_bw"], mtu=4096)
    preflight.check(o, device(active_mtu=1024), False, said.append)
    assert o.mtu == 1024 and o.extra["mtu_requested"] == 4096
    assert "above rxe0's active MTU 1024" in said[0]


def test_latency_tests_register_two_buffers_not_depth():
    o = RunOptions(tests=["send_lat"], sizes=[8 << 20])
    preflight.check(o, device(), True, print)  # 2 x 2 x 8 MiB: fine anywhere
    assert o.registered_bytes("send_lat", 8 << 20) == 16 << 20


def test_more_registered_memory_than_the_host_has_is_refused():
    o = RunOptions(tests=["send_bw"], sizes=[8 << 20], qps=64, depth=4096)
    with pytest.raises(RdmabenchError, match="registers .* more than the .* this host can spare"):
        preflight.check(o, device(), True, print)


def test_a_message_above_the_maximum_is_refused():
    with pytest.raises(RdmabenchError, match="above rxe0's maximum message size"):
        preflight.check(RunOptions(tests=["write_bw"], sizes=[16 << 20]), device(), False, print)


@pytest.mark.parametrize("text, sizes", [("2:3", [2, 3]), ("1000:5000", [1000, 1024, 2048, 4096, 5000]),
                                         ("4K:4K", [4096]), ("2:16", [2, 4, 8, 16]), ("4K,64K", [4096, 65536])])
def test_a_sweep_drops_nothing_that_was_asked_for(text, sizes):
    assert parse_sweep(text) == sizes


def test_tests_are_given_with_commas_or_repeated_or_both():
    parse = names_option(list(TESTS), "all")
    assert parse(None, None, ("write_bw,read_lat", "send_bw")) == ["write_bw", "read_lat", "send_bw"]
    assert parse(None, None, ("all",)) == list(TESTS)
    assert parse(None, None, ("write_bw", "write_bw")) == ["write_bw"]
    with pytest.raises(click.BadParameter, match="write_bww: choose from"):
        parse(None, None, ("write_bww",))
