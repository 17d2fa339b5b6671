"""Engine-cost benchmark: shared endpoints and a summary of per-operation cost by engine.

Runs inside the lab guest (`make bench-engines`). Each figure is recorded in the benchmark's
extra_info; the summary at the end prints them side by side with the python/native ratio.
"""
import os

import pytest

_COSTS = pytest.StashKey[dict]()  # (test, engine) -> per-op ns (wall time of run() / N)


def _env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: the engine benchmark needs the soft-RoCE lab guest; run it through "
                    "`make bench-engines` (rdmabench lab sets RDMABENCH_DEVICE, RDMABENCH_GID_INDEX)", pytrace=False)
    return value


@pytest.fixture(scope="session")
def lab():
    return {"device": _env("RDMABENCH_DEVICE"), "gid_index": int(_env("RDMABENCH_GID_INDEX"))}


@pytest.fixture(scope="session")
def costs(pytestconfig):
    """Where each benchmark leaves its per-op cost for the summary."""
    return pytestconfig.stash.setdefault(_COSTS, {})


def pytest_terminal_summary(terminalreporter, config):
    COSTS = config.stash.get(_COSTS, {})
    if not COSTS:
        return
    tr = terminalreporter
    tr.section("per-operation cost by engine (rxe; under TCG emulation unless the lab had KVM)")
    for test in sorted({t for t, _ in COSTS}):
        nat, py = COSTS.get((test, "native")), COSTS.get((test, "python"))
        line = f"{test:10s} native {nat / 1000 if nat else float('nan'):10.2f} us/op   " \
               f"python {py / 1000 if py else float('nan'):10.2f} us/op"
        if nat and py:
            line += f"   python/native {py / nat:6.2f}x"
        tr.write_line(line)
