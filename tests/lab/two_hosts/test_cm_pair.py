"""Two guests over a real (emulated) link: the worker connects to the storage guest's peer server
over rdma_cm and over OOB TCP, moves bytes both ways and has both ends verify them.

The storage guest must run the server in both modes (rdma_cm on 7471, TCP on 7472):
    rdmabench lab --hosts 2 \\
      --storage 'python -m rdmabench.verbs.peer serve --bind $RDMABENCH_IP --port 7471 --mode both --connections 0' \\
      --worker 'python -m pytest tests/lab/two_hosts'
"""

import os
import time

import pytest

from rdmabench.errors import VerbsError

CM_PORT = 7471
OOB_PORT = 7472  # serve --mode both: --port + 1
CLOSED_PORT = 7499
READY_WAIT_S = 60.0  # both guests boot concurrently
STORAGE_CMD = ("python -m rdmabench.verbs.peer serve --bind $RDMABENCH_IP --port 7471 --mode both "
               "--connections 0")


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
                    "--worker ...`); the storage guest runs the peer server")
    return {"device": _env("RDMABENCH_DEVICE"), "gid_index": int(_env("RDMABENCH_GID_INDEX")),
            "ip": _env("RDMABENCH_IP"), "peer": _env("RDMABENCH_PEER_IP")}


@pytest.fixture(scope="module")
def oob_ready(lab):
    """Bounded wait for the storage guest's TCP server (pings are not counted as connections).
    The rdma_cm tests need no fixture: ``check(wait_s=...)`` retries until the listener is up."""
    from rdmabench.verbs import peer

    try:
        peer.wait_ready(lab["peer"], OOB_PORT, wait_s=READY_WAIT_S)
    except VerbsError as exc:
        pytest.fail(f"{exc}. Is the storage guest running `{STORAGE_CMD}` (--mode both, not cm)?")
    return lab


@pytest.mark.parametrize("size", [1, 64 << 10, 8 << 20], ids=["1B", "64KiB", "8MiB"])
def test_cm_pair_moves_bytes_both_ways(lab, size):
    from rdmabench.verbs import peer

    res = peer.check(lab["peer"], CM_PORT, size=size, mode="cm", timeout_s=30.0, wait_s=READY_WAIT_S)
    assert res["server_verified"], f"the storage guest did not get the bytes we wrote: {res}"
    assert res["readback_verified"], res
    assert res["read_verified"], f"bytes the storage guest wrote did not arrive: {res}"
    assert res["ok"] and res["device"] == lab["device"]


@pytest.mark.parametrize("size", [64 << 10, 8 << 20], ids=["64KiB", "8MiB"])
def test_oob_pair_moves_bytes_both_ways(oob_ready, size):
    from rdmabench.verbs import peer

    lab = oob_ready
    res = peer.check(lab["peer"], OOB_PORT, size=size, mode="oob", device=lab["device"],
                     gid_index=lab["gid_index"], timeout_s=30.0)
    assert res["server_verified"] and res["readback_verified"] and res["read_verified"], res
    assert res["ok"]


def test_oob_pair_finds_its_device_from_the_route(oob_ready):
    from rdmabench.verbs import peer

    res = peer.check(oob_ready["peer"], OOB_PORT, size=4096, mode="oob", timeout_s=30.0)
    assert res["ok"] and res["device"] == oob_ready["device"] and res["gid_index"] == oob_ready["gid_index"]


def test_cm_to_closed_port_fails_within_bound(lab):
    from rdmabench.verbs import peer
    from rdmabench.verbs.oob import PeerUnavailable

    t0 = time.monotonic()
    with pytest.raises(PeerUnavailable, match=f"{lab['peer']}:{CLOSED_PORT}"):
        peer.check(lab["peer"], CLOSED_PORT, size=4096, mode="cm", timeout_s=5.0)
    assert time.monotonic() - t0 < 10.0


def test_oob_to_closed_port_fails_within_bound(lab):
    from rdmabench.verbs import peer
    from rdmabench.verbs.oob import PeerUnavailable

    t0 = time.monotonic()
    with pytest.raises(PeerUnavailable, match=f"{lab['peer']}:{CLOSED_PORT}"):
        peer.check(lab["peer"], CLOSED_PORT, size=4096, mode="oob", device=lab["device"],
                   gid_index=lab["gid_index"], timeout_s=5.0)
    assert time.monotonic() - t0 < 10.0


def test_unreachable_host_fails_within_bound(lab):
    """An address on the link's subnet that nobody holds: no ARP answer."""
    from rdmabench.verbs import peer
    from rdmabench.verbs.oob import PeerUnavailable

    ghost = lab["peer"].rsplit(".", 1)[0] + ".99"
    for mode in ("cm", "oob"):
        t0 = time.monotonic()
        with pytest.raises(PeerUnavailable, match=ghost):
            peer.check(ghost, CM_PORT if mode == "cm" else OOB_PORT, size=4096, mode=mode,
                       device=lab["device"], gid_index=lab["gid_index"], timeout_s=3.0)
        assert time.monotonic() - t0 < 10.0, mode
