"""The native (C) engine, with its errors mapped onto rdmabench's.

`rdmabench._native` raises plain Python exceptions (LookupError, ValueError,
OSError with errno, TimeoutError); this wrapper turns the ones a user can act on
into rdmabench.errors types and leaves ValueError (a bad argument) as it is.
"""
from rdmabench.errors import DeviceNotFound, RdmabenchError, VerbsError


def _load():
    try:
        from rdmabench import _native
    except ImportError as exc:
        raise RdmabenchError(
            f"the native extension rdmabench._native is not built ({exc}); "
            "run `make install` or `pip install -e .` in the source tree"
        ) from exc
    return _native


def roundtrip(device, gid_index, size=65536, port=1, timeout_ms=5000):
    """One verified RDMA WRITE and READ of `size` bytes between two QPs on `device`.

    Returns {"engine": "native", "device", "gid_index", "size", "write_verified",
    "read_verified", "write_us", "read_us", "active_mtu"} (times in microseconds,
    post to completion; active_mtu in bytes).
    """
    native = _load()
    try:
        return native.roundtrip(device, gid_index, size, port=port, timeout_ms=timeout_ms)
    except LookupError as exc:
        raise DeviceNotFound(str(exc)) from exc
    except OSError as exc:  # TimeoutError included; errno stays on __cause__
        raise VerbsError(exc.strerror or str(exc)) from exc
