"""The native engine's round trip on the lab's soft-RoCE device (runs inside the lab guest)."""
import time

import pytest

from rdmabench import native
from rdmabench.errors import DeviceNotFound, VerbsError

from lab_pairs import DEVICE, GID_INDEX, gil_pauses

RXE_MAX_MSG = 8 * 1024 * 1024  # rxe's port max_msg_sz


@pytest.mark.parametrize("size", [1, 4097, 4096, 65536, 1024 * 1024, RXE_MAX_MSG])
def test_roundtrip_verified(size):
    result = native.roundtrip(DEVICE, GID_INDEX, size)
    assert result["engine"] == "native"
    assert result["device"] == DEVICE
    assert result["gid_index"] == GID_INDEX
    assert result["size"] == size
    assert result["write_verified"] is True
    assert result["read_verified"] is True
    assert result["write_us"] > 0 and result["read_us"] > 0
    assert result["active_mtu"] in (256, 512, 1024, 2048, 4096)


def test_keyword_arguments():
    result = native.roundtrip(device=DEVICE, gid_index=GID_INDEX, size=512, port=1, timeout_ms=10000)
    assert result["write_verified"] and result["read_verified"]


def test_size_zero_rejected():
    with pytest.raises(ValueError, match="at least 1 byte"):
        native.roundtrip(DEVICE, GID_INDEX, 0)


def test_size_above_max_rejected():
    with pytest.raises(ValueError, match=f"exceeds the maximum message size.*{RXE_MAX_MSG}"):
        native.roundtrip(DEVICE, GID_INDEX, RXE_MAX_MSG + 1)


def test_unknown_device_lists_real_ones():
    with pytest.raises(DeviceNotFound, match=rf"no RDMA device named 'nosuchdev0'; devices here: .*\b{DEVICE}\b"):
        native.roundtrip("nosuchdev0", GID_INDEX, 64)


@pytest.mark.parametrize("gid_index", [200, 1000])
def test_wrong_gid_index_errors_without_hanging(gid_index):
    start = time.monotonic()
    with pytest.raises((ValueError, VerbsError), match="gid_index"):
        native.roundtrip(DEVICE, gid_index, 4096, timeout_ms=3000)
    assert time.monotonic() - start < 30


def test_missing_port_rejected():
    with pytest.raises(ValueError, match="port 2 does not exist"):
        native.roundtrip(DEVICE, GID_INDEX, 64, port=2)


def test_repeated_calls_release_resources():
    # Every call opens and closes its own device context, PD, CQs, QPs and MRs;
    # a leak would show up as a failing create/register long before 200 calls.
    for _ in range(200):
        result = native.roundtrip(DEVICE, GID_INDEX, 4096)
        assert result["write_verified"] and result["read_verified"]


def test_gil_released_while_moving_bytes():
    # The data phase (fill, post, poll, verify) runs without the GIL: another
    # Python thread keeps running. Held throughout, its longest stall would be
    # the whole call; released, only the setup (register 3 x 8 MiB) stalls it.
    result, seconds, longest = gil_pauses(lambda: native.roundtrip(DEVICE, GID_INDEX, RXE_MAX_MSG))
    assert result["write_verified"] and result["read_verified"]
    assert longest < seconds / 2, (longest, seconds)
