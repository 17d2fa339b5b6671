"""Two guests over a real (emulated) link: the worker opens the storage guest's "verbs-peer" service
of `rdmabench serve`, over rdma_cm and over OOB TCP, moves bytes both ways and has both ends verify them.

The storage guest runs `rdmabench serve --bind $RDMABENCH_IP` (the Makefile's test-lab-two); for cm
the service opens an rdma_cm listener on the port the client names, for that client.
"""

import os
import time

import pytest

from rdmabench.errors import PeerUnavailable
from rdmabench.wire import DEFAULT_PORT

CM_PORT = 7471
CLOSED_PORT = 7499
READY_WAIT_S = 60.0  # both guests boot concurrently
STORAGE_CMD = "rdmabench serve --bind $RDMABENCH_IP"


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"${name} is not set: these tests run on the worker guest of the two-host lab; run "
                    f"`rdmabench lab --hosts 2 --storage '{STORAGE_CMD}' --worker 'python -m pytest tests/lab/two_hosts'`")
    return value


@pytest.fixture(scope="module")
def lab():
    role = _env("RDMABENCH_ROLE")
    if role != "worker":
        pytest.fail(f"RDMABENCH_ROLE is {role!r}: run these tests on the worker guest (`rdmabench lab --hosts 2 "
                    "--worker ...`); the storage guest runs rdmabench serve")
    return {"device": _env("RDMABENCH_DEVICE"), "gid_index": int(_env("RDMABENCH_GID_INDEX")),
            "ip": _env("RDMABENCH_IP"), "peer": _env("RDMABENCH_PEER_IP")}


@pytest.mark.parametrize("size", [1, 64 << 10, 8 << 20], ids=["1B", "64KiB", "8MiB"])
def test_cm_pair_moves_bytes_both_ways(lab, size):
    from rdmabench.verbs import peer

    res = peer.check(lab["peer"], DEFAULT_PORT, size=size, mode="cm", timeout_s=30.0, wait_s=READY_WAIT_S,
                     cm_port=CM_PORT)
    assert res["server_verified"], f"the storage guest did not get the bytes we wrote: {res}"
    assert res["readback_verified"], res
    assert res["read_verified"], f"bytes the storage guest wrote did not arrive: {res}"
    assert res["ok"] and res["device"] == lab["device"]


@pytest.mark.parametrize("size", [64 << 10, 8 << 20], ids=["64KiB", "8MiB"])
def test_oob_pair_moves_bytes_both_ways(lab, size):
    from rdmabench.verbs import peer

    res = peer.check(lab["peer"], DEFAULT_PORT, size=size, mode="oob", device=lab["device"],
                     gid_index=lab["gid_index"], timeout_s=30.0, wait_s=READY_WAIT_S)
    assert res["server_verified"] and res["readback_verified"] and res["read_verified"], res
    assert res["ok"]


def test_oob_pair_finds_its_device_from_the_route(lab):
    from rdmabench.verbs import peer

    res = peer.check(lab["peer"], size=4096, mode="oob", timeout_s=30.0, wait_s=READY_WAIT_S)
    assert res["ok"] and res["device"] == lab["device"] and res["gid_index"] == lab["gid_index"]


def test_cm_to_closed_port_fails_within_bound(lab):
    from rdmabench.verbs.cm import CMClient

    t0 = time.monotonic()
    with pytest.raises(PeerUnavailable, match=f"{lab['peer']}:{CLOSED_PORT}"):
        CMClient(lab["peer"], CLOSED_PORT, 4096, timeout_s=5.0)
    assert time.monotonic() - t0 < 10.0


def test_oob_to_closed_port_fails_within_bound(lab):
    from rdmabench.verbs import peer

    t0 = time.monotonic()
    with pytest.raises(PeerUnavailable, match=f"{lab['peer']}:{CLOSED_PORT}"):
        peer.check(lab["peer"], CLOSED_PORT, size=4096, mode="oob", device=lab["device"],
                   gid_index=lab["gid_index"], timeout_s=5.0)
    assert time.monotonic() - t0 < 10.0


def test_unreachable_host_fails_within_bound(lab):
    """An address on the link's subnet that nobody holds: no ARP answer."""
    from rdmabench.verbs import peer

    ghost = lab["peer"].rsplit(".", 1)[0] + ".99"
    for mode in ("cm", "oob"):
        t0 = time.monotonic()
        with pytest.raises(PeerUnavailable, match=ghost):
            peer.check(ghost, DEFAULT_PORT, size=4096, mode=mode,
                       device=lab["device"], gid_index=lab["gid_index"], timeout_s=3.0)
        assert time.monotonic() - t0 < 10.0, mode
