"""The native (C) round trip, with its errors mapped onto rdmabench's (see engines/native.py)."""
from rdmabench.engines.native import _load, _mapped


@_mapped
def roundtrip(device, gid_index, size=65536, port=1, timeout_ms=5000):
    """One verified RDMA WRITE and READ of `size` bytes between two QPs on `device`.

    Returns {"engine": "native", "device", "gid_index", "size", "write_verified",
    "read_verified", "write_us", "read_us", "active_mtu"} (times in microseconds,
    post to completion; active_mtu in bytes).
    """
    return _load().roundtrip(device, gid_index, size, port=port, timeout_ms=timeout_ms)
