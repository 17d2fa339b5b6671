"""`rdmabench cluster` in the three-guest lab, started as the README shows it: mpirun in the storage guest,
one rank in each of storage, worker1 and worker2, real rxe devices, real files.

One run of configs/cluster.toml: a two-worker fan-in over rdma-write and http (pc1-pc2 and finalize, each
against one worker, verified) and the all-pairs matrix; then the report. Then a worker killed mid-run: the
whole run stops within its bound, naming the host, with no result file and nothing half-written at the
storage host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rdmabench import integrity

ROOT = Path(__file__).resolve().parents[3]
RESULTS = Path(os.environ.get("RDMABENCH_RESULTS", "results"))
HOSTS = ("storage", "worker1", "worker2")
sys.path.insert(0, str(ROOT / "tests"))
import readme_commands as rc  # noqa: E402

[README_CMD] = rc.where("lab-three").values()  # the README's command, with this run's file and result path
RUN_S = 1200


def mpirun(config: Path | str, out: Path, **kw) -> subprocess.Popen:
    cmd = README_CMD.format(config=config, out=out)
    return subprocess.Popen(["/bin/sh", "-c", cmd], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, **kw)


def finish(proc: subprocess.Popen, timeout: float) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"mpirun did not end within {timeout} s:\n{out[-4000:]}")
    print(out[-6000:])
    return out


@pytest.fixture(scope="module")
def run():
    out = RESULTS / f"cluster-lab-{os.getpid()}.json"
    start = time.monotonic()
    proc = mpirun("configs/cluster.toml", out)
    text = finish(proc, RUN_S)
    assert proc.returncode == 0, text[-4000:]
    print(f"cluster run: {time.monotonic() - start:.0f} s")
    return json.loads(out.read_text()), out, text


def test_one_result_file_with_every_hosts_context(run):
    data, _, text = run
    assert data["kind"] == "cluster"
    hosts = data["options"]["hosts"]
    assert set(hosts) == set(HOSTS)
    assert hosts["storage"]["role"] == "storage" and {hosts[w]["role"] for w in HOSTS[1:]} == {"worker"}
    for h in HOSTS:
        ctx = hosts[h]["context"]
        assert ctx["host"]["hostname"] == h
        assert ctx["device"]["name"] == os.environ["RDMABENCH_DEVICE"]
        assert ctx["hardware"] is False  # rxe under emulation, and the file says so
    assert "result file:" in text


def test_the_fan_in_moved_every_byte_verified_over_both_transports(run):
    data, _, text = run
    aggs = [r for r in data["rows"] if r["measured"].get("scenario") == "fan-in" and r["measured"]["host"] == "all"]
    seen = {(r["measured"]["handoff"], r["measured"]["transport"], r["measured"]["workers"]) for r in aggs}
    assert seen == {(h, t, n) for h in ("pc1-pc2", "finalize") for t in ("rdma-write", "http") for n in (1, 2)}
    per = [r for r in data["rows"] if r["measured"].get("scenario") == "fan-in" and r["measured"]["host"] != "all"]
    assert per and all(r["detail"]["verified"] for r in per)
    for agg in aggs:
        mine = [r for r in per if all(r["measured"][k] == agg["measured"][k]
                                      for k in ("handoff", "transport", "workers")) and r["repetition"] == agg["repetition"]]
        assert sorted(r["measured"]["host"] for r in mine) == list(HOSTS[1:1 + agg["measured"]["workers"]])
        assert agg["bytes"] == sum(r["bytes"] for r in mine) > 0
        assert agg["detail"]["jain"] is not None and 0.5 - 1e-9 <= agg["detail"]["jain"] <= 1 + 1e-9
        assert agg["detail"]["storage_cpu_s"] > 0
        for r in mine:  # each worker's own CPU, and the storage process's over its move
            assert r["cpu"]["client"]["process"]["cpu_s"] > 0 and r["cpu"]["server"]["process"]["cpu_s"] >= 0
    assert "vs 1 worker" in text


def test_the_all_pairs_matrix_has_every_ordered_pair(run):
    data, _, text = run
    pairs = [r for r in data["rows"] if r["measured"].get("scenario") == "all-pairs"]
    got = {(r["measured"]["test"], r["measured"]["from"], r["measured"]["to"]) for r in pairs}
    assert got == {(t, a, b) for t in ("write_bw", "write_lat") for a in HOSTS for b in HOSTS if a != b}
    assert all(r["value"] > 0 for r in pairs)
    assert "client \\ server" in text and "furthest from it" in text


def test_the_report_shows_the_cluster(run, tmp_path):
    _, out, _ = run
    done = subprocess.run([str(ROOT / ".venv/bin/rdmabench"), "report", str(out), "-o", str(tmp_path / "rep")],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "rep" / "report.md").read_text()
    assert "## Cluster: fan-in and all pairs" in page
    assert "fan-in" in page and "all pairs, write_bw" in page and "all pairs, write_lat" in page
    assert "Lab figure, not hardware" in page


FAULT = """
[hosts]
storage = "storage"
workers = ["worker1", "worker2"]
root = "/tmp/rdmabench/cluster-fault"
step_timeout = 120
[fan_in]
workers = [2]
handoffs = ["finalize"]
transports = ["http"]
repetitions = 500
token = "fault"
[[fan_in.shapes]]
sector_size = "32GiB"
scale = "1/65536"
"""


def test_a_worker_killed_mid_run_stops_the_run_naming_it_and_nothing_is_half_written(tmp_path):
    config = RESULTS / f"cluster-fault-{os.getpid()}.toml"  # every guest reads it: the results folder is shared
    config.write_text(FAULT)
    out = RESULTS / f"cluster-fault-{os.getpid()}.json"
    proc = mpirun(config, out)
    seen = ""
    deadline = time.monotonic() + 600
    while "[3/" not in seen:  # a few fan-in steps done: the ranks are moving files
        line = proc.stdout.readline()
        assert line or proc.poll() is None, f"mpirun ended early:\n{seen[-3000:]}"
        seen += line
        assert time.monotonic() < deadline, seen[-3000:]
    kill = subprocess.run(["ssh", "-F", os.environ["RDMABENCH_SSH_CONFIG"], "worker2",
                           "pkill -KILL -f 'rdmabench cluster'"], capture_output=True, text=True, timeout=120)
    assert kill.returncode == 0, kill.stderr
    start = time.monotonic()
    text = seen + finish(proc, 300)
    assert proc.returncode != 0
    assert time.monotonic() - start < 300
    assert "worker2" in text, text[-4000:]
    assert not out.exists()
    # finalize pushes into the storage host's serve root: whatever sits at a final path there is whole. The
    # sources (in the workers' guests) are regenerated here, byte for byte: the sector generator is deterministic
    from rdmabench.workloads import sector
    landed = Path("/tmp/rdmabench/cluster-fault/storage/serve/work")
    checked = 0
    for kind in ("sealed", "cache"):
        for item in sorted((landed / kind).iterdir()) if (landed / kind).exists() else ():
            if item.name == "fetching":
                continue
            number = int(item.name.rsplit("-", 1)[1])
            again = sector.generate(sector.shape("32GiB", "finalized", miner=1000, number=number, scale="1/65536"),
                                    tmp_path / f"again-{number}")
            assert integrity.digest(item) == integrity.digest(again.root / kind / item.name), item
            checked += 1
    print(f"{checked} items at final paths after the kill, every one whole")
