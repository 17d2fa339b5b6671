"""A local run (no --peer) on the guest's rxe device: its far end is a process of its own, as
perftest's server is (docs/write-lat-one-guest.md), so each end's per-process CPU is its own."""

import os

from rdmabench.perf.client import run_local
from rdmabench.perf.options import RunOptions


def test_a_local_runs_ends_are_two_processes(lab_env):
    result = run_local(RunOptions(tests=["write_lat", "write_bw"], iters=200), lab_env["device"])
    lat, bw = result.rows
    for row in (lat, bw):
        cpu = row["cpu"]
        assert cpu["client"]["process"]["pid"] == os.getpid()
        assert cpu["server"]["process"]["pid"] != os.getpid()
    # a ping-pong's far end spins in its own loop: its process used CPU of its own
    assert lat["cpu"]["server"]["process"]["cpu_s"] > 0
    # write_bw's far end is passive: its process does not inherit the client's loop (with the far end a
    # thread here, both ends read this process and the passive end showed the client's full core)
    assert bw["cpu"]["server"]["process"]["cpu_s"] < bw["cpu"]["client"]["process"]["cpu_s"]
    assert "a process of its own" in result.options["peer"]
