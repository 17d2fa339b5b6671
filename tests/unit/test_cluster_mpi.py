"""`rdmabench cluster` under a real mpirun on this host: three ranks going by the names st, w1 and w2
(RDMABENCH_HOST_NAME), a fan-in over http (no RDMA device here; the lab's three guests run rdma-write),
a real `serve` in the storage rank and real files. Then the faults: a rank on a host the file does not
name, a worker that stops answering, a worker killed mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rdmabench import integrity

RDMABENCH = str(Path(sys.executable).parent / "rdmabench")
NAMES = ("st", "w1", "w2")
pytestmark = pytest.mark.slow  # three-rank mpirun runs, two of them with faults that take seconds to surface



def config(tmp_path: Path, *, reps: int = 1, scale: str = "1/65536", timeout: float = 60, names=NAMES,
           handoffs=("pc1-pc2", "finalize")) -> Path:
    text = f"""
[hosts]
storage = "{names[0]}"
workers = {json.dumps(list(names[1:]))}
root = "{tmp_path / 'root'}"
step_timeout = {timeout}
[hosts.addresses]
{chr(10).join(f'{n} = "127.0.0.1"' for n in names)}
[fan_in]
workers = [1, 2]
handoffs = {json.dumps(list(handoffs))}
transports = ["http"]
repetitions = {reps}
[[fan_in.shapes]]
sector_size = "32GiB"
scale = "{scale}"
"""
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return path


def mpirun(cfg: Path, out: Path, as_hosts=NAMES) -> subprocess.Popen:
    assert shutil.which("mpirun"), "mpirun is missing: scripts/install-debian-packages.sh installs openmpi-bin"
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl="self,tcp",
               OMPI_MCA_btl_tcp_if_include="lo", OMPI_MCA_oob_tcp_if_include="lo",
               OMPI_MCA_rmaps_base_oversubscribe="1", RDMABENCH_SECRET="0123456789abcdef0123456789abcdef")
    argv = ["mpirun", "-x", "RDMABENCH_SECRET"]
    for i, name in enumerate(as_hosts):
        argv += ([":"] if i else []) + ["-np", "1", "-x", f"RDMABENCH_HOST_NAME={name}", RDMABENCH, "cluster",
                                         "--config", str(cfg), "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"mpirun did not end within {timeout} s:\n{out[-3000:]}")
    return out


def rank_pid(name: str, cfg: Path) -> int | None:
    """The pid of this run's rank ``name``: its command line names ``cfg`` (the test's own file), so a run of
    another test going at the same time (pytest -n) is never the one stopped, killed or counted."""
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                env = (d / "environ").read_bytes().split(b"\0")
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if (f"RDMABENCH_HOST_NAME={name}".encode() in env and b"cluster" in cmd and b"mpirun" not in cmd
                    and str(cfg).encode() in cmd.split(b"\0")):
                return int(d.name)
    return None


def wait_for_rank(name: str, cfg: Path) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pid = rank_pid(name, cfg)
        if pid:
            return pid
        time.sleep(0.2)
    pytest.fail(f"the {name} rank never started")


def test_fan_in_over_http_writes_one_verified_result(tmp_path):
    out = tmp_path / "cluster.json"
    text = finish(mpirun(config(tmp_path), out))
    assert "result file:" in text, text[-3000:]
    data = json.loads(out.read_text())
    assert data["kind"] == "cluster"
    assert set(data["options"]["hosts"]) == set(NAMES)
    assert {h["role"] for h in data["options"]["hosts"].values()} == {"storage", "worker"}
    rows = data["rows"]
    aggs = [r for r in rows if r["measured"]["host"] == "all"]
    per = [r for r in rows if r["measured"]["host"] != "all"]
    assert sorted((r["measured"]["handoff"], r["measured"]["workers"]) for r in aggs) == [
        ("finalize", 1), ("finalize", 2), ("pc1-pc2", 1), ("pc1-pc2", 2)]
    assert len(per) == 6 and all(r["detail"]["verified"] for r in per)
    for agg in aggs:
        mine = [r for r in per if all(r["measured"][k] == agg["measured"][k] for k in ("handoff", "workers"))]
        assert len(mine) == agg["measured"]["workers"]
        assert {r["measured"]["host"] for r in mine} == set(NAMES[1:1 + agg["measured"]["workers"]])
        assert agg["bytes"] == sum(r["bytes"] for r in mine)
        assert agg["seconds"] == max(r["seconds"] for r in mine)
        assert agg["value"] == pytest.approx(agg["bytes"] / 2**20 / agg["seconds"])
        assert 1 / len(mine) - 1e-9 <= agg["detail"]["jain"] <= 1 + 1e-9
        assert agg["detail"]["storage_cpu_s"] > 0
    # the table printed by the storage rank
    assert "aggregate MiB/s" in text and "vs 1 worker" in text


def test_a_rank_on_a_host_the_file_does_not_name_stops_the_run_naming_it(tmp_path):
    out = tmp_path / "cluster.json"
    proc = mpirun(config(tmp_path), out, as_hosts=("st", "w1", "intruder"))
    text = finish(proc, 120)
    assert proc.returncode != 0
    assert "rank 2 runs on intruder" in text
    assert "w2 has no rank" in text or "intruder" in text
    assert not out.exists()


def test_a_worker_that_stops_answering_is_named_within_the_bound(tmp_path):
    out = tmp_path / "cluster.json"
    cfg = config(tmp_path, reps=200, timeout=8)
    proc = mpirun(cfg, out)
    pid = wait_for_rank("w2", cfg)
    time.sleep(3)  # into the fan-in
    os.kill(pid, signal.SIGSTOP)
    start = time.monotonic()
    try:
        text = finish(proc, 120)
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert proc.returncode != 0
    assert time.monotonic() - start < 60, "the run did not stop within the step's bound"
    assert "w2 (rank 2) did not" in text, text[-3000:]  # reach a meeting point, or answer with its rows
    assert not out.exists()


def test_a_worker_killed_mid_run_stops_every_rank_and_leaves_nothing_half_written(tmp_path):
    out = tmp_path / "cluster.json"
    cfg = config(tmp_path, reps=200, scale="1/4096", timeout=30, handoffs=("finalize",))
    proc = mpirun(cfg, out)
    pid = wait_for_rank("w1", cfg)
    time.sleep(4)
    os.kill(pid, signal.SIGKILL)
    start = time.monotonic()
    text = finish(proc, 120)
    assert proc.returncode != 0
    assert time.monotonic() - start < 45
    assert "w1" in text or "rank 1" in text, text[-3000:]
    assert not out.exists()
    assert rank_pid("st", cfg) is None and rank_pid("w2", cfg) is None, "a rank outlived the run"
    # finalize pushes into the storage host's work root: whatever is at a final path there is whole. Worker i's
    # sectors are numbered from 1000 * (i + 1) + 1 (cluster.fanin), so each item names the worker it came from
    landed = tmp_path / "root" / "st" / "serve" / "work"
    checked = 0
    for kind in ("sealed", "cache"):
        for item in sorted((landed / kind).iterdir()) if (landed / kind).exists() else ():
            if item.name == "fetching":
                continue
            worker = NAMES[int(item.name.rsplit("-", 1)[1]) // 1000]
            assert integrity.digest(item) == integrity.digest(tmp_path / "root" / worker / "storage" / kind / item.name)
            checked += 1
    print(f"{checked} items at final paths, all whole")
