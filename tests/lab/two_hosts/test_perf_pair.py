"""`rdmabench run` on the worker guest against `rdmabench serve` on the storage guest,
across the emulated link: every test type, both ends' figures in one result file,
and the perftest cross-check driven through the same server.

The storage guest runs `rdmabench serve --bind $RDMABENCH_IP` (see the Makefile's test-lab-two)."""

import json
import subprocess
import sys

import pytest

ALL = ["write_bw", "read_bw", "send_bw", "write_lat", "read_lat", "send_lat", "atomic_bw", "atomic_lat"]


def rdmabench(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "rdmabench.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def peer(lab_env):
    if lab_env["role"] != "worker" or not lab_env["peer"]:
        pytest.fail("run on the worker guest of `rdmabench lab --hosts 2` (the storage guest runs rdmabench serve)")
    return lab_env["peer"]


@pytest.mark.parametrize("connect", ["oob", "cm"])
def test_every_test_type_across_the_link(peer, lab_env, tmp_path, connect):
    out = tmp_path / "r.json"
    done = rdmabench("run", "--peer", peer, "--wait", "90", "-t", "all", "--iters", "30", "--validate",
                     "--connect", connect, "-o", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["context"]["host"]["hostname"] == "worker"
    assert result["peer_context"]["host"]["hostname"] == "storage"
    assert result["peer_context"]["device"]["gid"] == f"::ffff:{peer}"
    assert [r["measured"]["test"] for r in result["rows"]] == ALL
    for row in result["rows"]:
        assert row["detail"]["corrupt"] == 0 and row["detail"]["validated"] > 0
        assert row["cpu"]["server"]["system"]["busy_s"] >= 0
        per_gb = row["cpu"]["per_gb"]  # per process always (an exact clock); system-wide where long enough
        assert per_gb["client_process"] > 0 and per_gb["server_process"] >= 0
        for side in ("client", "server"):
            assert (f"{side}_system" in per_gb) == row["cpu"][side]["measurable"], (side, row["cpu"][side])
        assert row["value"] > 0 and row["metric"] == ("bw_avg_MiBps" if row["measured"]["test"].endswith("_bw")
                                                      else "lat_p50_us")


def test_crosscheck_through_the_remote_server(peer, tmp_path):
    out = tmp_path / "c.json"
    done = rdmabench("crosscheck", "--peer", peer, "--sizes", "64K", "--bw-iters", "50", "--lat-iters", "50",
                     "--lat-repeat", "3", "-t", "write_bw,write_lat,atomic_bw,atomic_lat",
                     "-o", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert {r["measured"]["tool"] for r in result["rows"]} == {"perftest", "rdmabench"}
    ratios = result["options"]["ratios"]
    # every pair, the atomic ones too: serve's perftest service starts ib_atomic_bw / ib_atomic_lat
    # (read_bw across the link: the README's crosscheck, test_readme_commands.py)
    assert [(r["test"], r["size"]) for r in ratios] == [("write_bw", 65536), ("write_lat", 2),
                                                        ("atomic_bw", 8), ("atomic_lat", 8)]
    assert all(r["ratio"] > 0 for r in ratios)
    assert "ratio" in done.stdout and "write_lat" in done.stdout and "atomic_lat" in done.stdout
    atomic = [r for r in result["rows"] if r["measured"]["test"].startswith("atomic")]
    assert all(r["measured"]["op"] == "fetch_add" and r["value"] > 0 for r in atomic)
    assert all("-A FETCH_AND_ADD" in r["detail"]["command"] for r in atomic if r["measured"]["tool"] == "perftest")
