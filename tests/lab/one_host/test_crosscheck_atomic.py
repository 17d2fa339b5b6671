"""`rdmabench crosscheck -t atomic_bw,atomic_lat` for real, both ends on the guest's rxe device: perftest's
ib_atomic_bw / ib_atomic_lat against the native engine's atomic tests, with short runs. Checks that the pairs
ran with the same operation and the same atomics in flight and that every figure and ratio is a positive
number; no timing targets (the lab's figures are for ratios within one run)."""

import json
import math
import subprocess
import sys

import pytest

OPS = {"fetch_add": "FETCH_AND_ADD", "cmp_swap": "CMP_AND_SWAP"}


def rdmabench(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "rdmabench.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def positive(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


# fetch_add through the default duration path (shortened), cmp_swap through iterations
@pytest.mark.parametrize("op, length", [("fetch_add", ["--bw-duration", "1"]), ("cmp_swap", ["--bw-iters", "500"])])
def test_atomic_pairs_against_perftest(lab_env, tmp_path, op, length):
    out = tmp_path / "c.json"
    done = rdmabench("crosscheck", "-t", "atomic_bw,atomic_lat", "--atomic", op, "--repeat", "2", *length,
                     "--lat-iters", "200", "-o", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["kind"] == "crosscheck" and result["options"]["tests"] == ["atomic_bw", "atomic_lat"]
    assert result["options"]["atomic"] == op
    rows = result["rows"]
    assert sorted((r["measured"]["test"], r["measured"]["tool"], r["repetition"]) for r in rows) == sorted(
        (t, tool, rep) for t in ("atomic_bw", "atomic_lat") for tool in ("perftest", "rdmabench") for rep in (0, 1))
    for r in rows:
        m, d = r["measured"], r["detail"]
        assert m["op"] == op and m["size"] == 8, m
        assert positive(r["value"]), r
        assert r["metric"] == {("atomic_bw", "perftest"): "ops_per_s", ("atomic_bw", "rdmabench"): "ops_per_s",
                               ("atomic_lat", "perftest"): "t_typical_us",
                               ("atomic_lat", "rdmabench"): "lat_p50_us"}[m["test"], m["tool"]]
        if m["tool"] == "perftest":
            command = d["command"].split()
            assert command[0] == f"ib_{m['test']}" and command[command.index("-A") + 1] == OPS[op]
        else:  # every reply and the remote counter checked
            assert d["atomic"] == op and d["corrupt"] == 0 and d["validated"] > 0 and d["counters_checked"] == 1
    # the same atomics in flight: perftest's -o is what our engine kept (ep_atomic.c's atomic_depth)
    bw = [r for r in rows if r["measured"]["test"] == "atomic_bw"]
    depth = {r["detail"]["atomic_depth"] for r in bw if r["measured"]["tool"] == "rdmabench"}
    outstanding = {int(c[c.index("-o") + 1]) for c in (r["detail"]["command"].split() for r in bw
                                                        if r["measured"]["tool"] == "perftest")}
    assert len(depth) == 1 and depth == outstanding, (depth, outstanding)
    if length[0] == "--bw-iters":
        assert all(r["detail"]["iterations"] == 500 for r in bw)
    else:
        assert all(r["detail"]["duration_s"] == 1 for r in bw)

    ratios = result["options"]["ratios"]
    assert [(r["test"], r["op"], r["size"]) for r in ratios] == [("atomic_bw", op, 8), ("atomic_lat", op, 8)]
    for r in ratios:
        assert r["repetitions"] == 2 and all(positive(x) for x in [r["perftest"], r["rdmabench"], r["ratio"],
                                                                   *r["paired_ratios"]]), r
        assert r["target"] == (">= 0.95" if r["test"] == "atomic_bw" else "<= 1.1")
    table = done.stdout.splitlines()
    assert any(line.startswith("atomic_bw ") for line in table) and any(line.startswith("atomic_lat ")
                                                                        for line in table)
    assert f"perftest -A {OPS[op]}" in done.stdout
