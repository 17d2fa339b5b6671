"""What the engine tests share: the lab's device from the environment, and two ends run at once.

Imported by the test modules next to it (pytest puts this folder on sys.path). Runs inside the lab
guest, where `rdmabench lab` sets RDMABENCH_DEVICE, RDMABENCH_GID_INDEX and RDMABENCH_IP.
"""
import json
import os
import threading
import time

import pytest


def _env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: this test needs the soft-RoCE lab guest; run it through "
            "`rdmabench lab`, which sets RDMABENCH_DEVICE, RDMABENCH_GID_INDEX and RDMABENCH_IP",
            pytrace=False,
        )
    return value


DEVICE = _env("RDMABENCH_DEVICE")
GID_INDEX = int(_env("RDMABENCH_GID_INDEX"))
IP = _env("RDMABENCH_IP")


def pair(**opts):
    """Two native endpoints on the lab's device, connected to each other (out of band, in this process)."""
    from rdmabench.engines import native

    spec = dict(device=DEVICE, gid_index=GID_INDEX, **opts)
    a, b = native.open_endpoint(**spec), native.open_endpoint(**spec)
    a.connect(b.local_info())
    b.connect(a.local_info())
    return a, b


def check_local_info(ep):
    """What either engine's local_info() says for 2 QPs of 16 slots of 4096 bytes: JSON, complete, sane."""
    info = ep.local_info()
    assert json.loads(json.dumps(info)) == info
    assert len(info) == 2
    for qp in info:
        assert set(qp) == {"qpn", "psn", "gid", "lid", "addr", "rkey", "size", "slots", "mtu", "rd_atomic"}
        assert 1 <= qp["rd_atomic"] <= 255
        assert len(qp["gid"]) == 32 and int(qp["gid"], 16) > 0
        assert qp["size"] == 4096 and qp["slots"] == 16
        assert qp["mtu"] in (256, 512, 1024, 2048, 4096)
    assert info[1]["addr"] - info[0]["addr"] == 16 * 4096
    assert ep.device == DEVICE


def both(server_fn, client_fn, server_first=False):
    """Run server_fn in a thread and client_fn here; return (server record, client record)."""
    box = {}

    def serve():
        try:
            box["server"] = server_fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    if server_first:
        thread.join(60)
    try:
        client = client_fn()
    finally:
        thread.join(120)
    assert not thread.is_alive(), "server side did not return"
    if "error" in box:
        raise box["error"]
    return box["server"], client


def timed(fn):
    """fn() as a callable that returns fn's record with its wall time added as "elapsed"."""
    def run():
        start = time.monotonic()
        rec = fn()
        rec["elapsed"] = time.monotonic() - start
        return rec
    return run


def gil_pauses(fn):
    """Run fn in a thread while this one spins: (fn's result, its wall time, the longest time this
    thread went without running). A native loop that keeps the GIL shows as a pause as long as fn."""
    done, box = threading.Event(), {}

    def work():
        try:
            start = time.monotonic()
            box["result"] = fn()
            box["seconds"] = time.monotonic() - start
        finally:
            done.set()

    thread = threading.Thread(target=work)
    last, longest = time.monotonic(), 0.0
    thread.start()
    while not done.is_set():
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    thread.join()
    return box["result"], box["seconds"], longest
