"""What only the native engine (rdmabench._native.Endpoint) has, on the lab's soft-RoCE device: its
record's typed arrays, its loops releasing the GIL, its clock. The contract both engines keep is
tested once, over both, in test_engine_contract.py.
"""
import os
import subprocess
import sys
from array import array

from rdmabench.engines import native

from lab_pairs import both, gil_pauses, pair

SMALL = dict(size=4096, depth=16, cq_mod=4)


def test_records_hold_typed_arrays_and_the_process_clock_rate():
    a, b = pair(**SMALL)
    with a, b:
        a.run("write_bw", "server", iters=50)
        bw = b.run("write_bw", "client", iters=50)
        _, lat = both(lambda: a.run("send_lat", "server", iters=20), lambda: b.run("send_lat", "client", iters=20))
    assert isinstance(bw["completions_ns"], array) and bw["completions_ns"].typecode == "q"
    assert isinstance(bw["completions_ops"], array) and bw["completions_ops"].typecode == "Q"
    assert isinstance(lat["samples_ns"], array) and lat["samples_ns"].typecode == "d" and len(lat["samples_ns"]) == 20
    # calibrated once per process: every record carries the rate the results context records
    assert bw["tsc_hz"] == lat["tsc_hz"] == native.clock()["tsc_hz"]


def test_gil_released_while_running():
    a, b = pair(**SMALL)
    with a, b:
        rec, _, longest = gil_pauses(lambda: b.run("write_bw", "client", duration_s=1.0))
    assert rec["ops"] > 0
    assert longest < 0.5, longest


def test_the_loops_read_the_tsc_in_the_guest_unless_told_not_to():
    # The lab's CPU lacks constant_tsc/nonstop_tsc and its kernel reads an HPET for clock_gettime;
    # the TSC's rate still holds, so the loops must be on rdtsc (timer says which, every result too).
    clock = native.clock()
    assert clock["timer"].startswith("tsc"), clock
    assert 1e8 < clock["tsc_hz"] < 1e11
    forced = subprocess.run([sys.executable, "-c", "from rdmabench.engines import native; print(native.clock()['timer'])"],
                            capture_output=True, text=True, env={**os.environ, "RDMABENCH_NO_TSC": "1"}, check=True)
    assert forced.stdout.strip() == "clock_gettime"
