"""The python engine's self-check: two RC QPs on one device, connected to each other.

One RDMA WRITE A->B verified byte for byte, then one RDMA READ of B (refilled with a
different pattern) into A, verified. No network exchange: both ends live in this
process. ``rdmabench/native.py`` returns the same dict shape from C.
"""

from __future__ import annotations

import contextlib
import time

from rdmabench.verbs.resources import Device, RCEndpoint, first_mismatch, poll
from rdmabench.workloads.pattern import pattern

WRITE_SEED = 1
READ_SEED = 2


def roundtrip(device: str, gid_index: int, size: int = 65536, port: int = 1, timeout_s: float = 5.0) -> dict:
    with contextlib.ExitStack() as stack:
        dev = stack.enter_context(Device(device, port=port, gid_index=gid_index))
        dev.check_size(size)  # SizeError (an RdmabenchError) for 0 or above max_msg_sz
        a = stack.enter_context(RCEndpoint(dev, size))
        b = stack.enter_context(RCEndpoint(dev, size))
        a.connect(b.info())
        b.connect(a.info())

        # WRITE: A's buffer -> B's buffer
        want = pattern(size, WRITE_SEED)
        a.buffer.write(want)
        t0 = time.perf_counter()
        a.qp.post_write(a.buffer, b.info(), size)
        poll(a.cq, 1, timeout_s)
        write_us = (time.perf_counter() - t0) * 1e6
        got = b.buffer.read(size)
        write_bad = first_mismatch(got, want)

        # READ: B's buffer (refilled) -> A's buffer
        want = pattern(size, READ_SEED)
        b.buffer.write(want)
        a.buffer.write(bytes(size))
        t0 = time.perf_counter()
        a.qp.post_read(a.buffer, b.info(), size)
        poll(a.cq, 1, timeout_s)
        read_us = (time.perf_counter() - t0) * 1e6
        got = a.buffer.read(size)
        read_bad = first_mismatch(got, want)

        result = {
            "engine": "python",
            "device": device,
            "gid_index": gid_index,
            "size": size,
            "write_verified": write_bad is None,
            "read_verified": read_bad is None,
            "write_us": round(write_us, 3),
            "read_us": round(read_us, 3),
            "active_mtu": dev.active_mtu,
        }
        if write_bad is not None:
            result["write_first_mismatch"] = write_bad
        if read_bad is not None:
            result["read_first_mismatch"] = read_bad
        return result
