"""The native round trip: two Endpoints on one device, connected to each other, moving one validated
RDMA WRITE and one validated RDMA READ through ``Endpoint.run`` (the code ``rdmabench run`` measures
with; errors mapped as in engines/native.py).

A (two slots) writes its payload into B's one slot (write_bw, validate: B checks it); then B fills its
slot with its pattern and A reads it twice (read_bw, validate, one warm-up READ): the warm-up lands in
A's slot 0, which already holds that pattern, the measured READ in A's slot 1, untouched until then,
so a READ that moved nothing cannot pass.
"""
from __future__ import annotations

import threading

from rdmabench.engines.native import open_endpoint


def roundtrip(device, gid_index, size=65536, port=1, timeout_ms=5000):
    """One verified RDMA WRITE and READ of `size` bytes between two QPs on `device`.

    Returns {"engine": "native", "device", "gid_index", "size", "write_verified",
    "read_verified", "write_us", "read_us", "active_mtu"} (times in microseconds,
    post to completion; active_mtu in bytes).
    """
    if size < 1:
        raise ValueError(f"size must be at least 1 byte, got {size}")
    spec = dict(device=device, gid_index=gid_index, port=port, size=size, depth=4, cq_mod=1)
    with open_endpoint(slots=2, **spec) as a, open_endpoint(slots=1, **spec) as b:
        active_mtu = a.mtu
        a.connect(b.local_info())
        b.connect(a.local_info())
        kw = dict(iters=1, validate=True, timeout_ms=timeout_ms)
        box = {}

        def serve():
            try:
                box["server"] = b.run("write_bw", "server", **kw)
            except BaseException as exc:  # noqa: BLE001 - raised below, in the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            write = a.run("write_bw", "client", **kw)
        finally:
            thread.join()
        if "error" in box:
            raise box["error"]
        written = box["server"]
        b.run("read_bw", "server", **kw)  # passive: fills B's slot with its pattern
        read = a.run("read_bw", "client", warmup=1, **kw)
    return {
        "engine": "native",
        "device": device,
        "gid_index": gid_index,
        "size": size,
        "write_verified": written["validated"] == 1 and written["corrupt"] == 0,
        "read_verified": read["validated"] == 2 and read["corrupt"] == 0,
        "write_us": (write["t_end_ns"] - write["t_start_ns"]) / 1000,
        "read_us": (read["t_end_ns"] - read["t_start_ns"]) / 1000,
        "active_mtu": active_mtu,
    }
