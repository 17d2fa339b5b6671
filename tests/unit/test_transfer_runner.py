"""`rdmabench run --config` end to end on this host: real files, a real HTTP server and
client, and `rdmabench serve` on loopback playing the storage host (no RDMA needed for
the http and shared transports; the RDMA ones are tested in the lab)."""

import json
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from rdmabench.cli import cli

CONFIG = """
name = "t"
handoffs = ["pc1-pc2", "finalize", "c1-c2"]
transports = ["http", "shared"]
repetitions = 2
storage_dir = "{tmp}/storage"
work_dir = "{tmp}/work"
[transports_for]
"c1-c2" = ["http"]
[[shapes]]
sector_size = "2KiB"
[[shapes]]
sector_size = "32GiB"
scale = "1/1048576"
"""


def write_config(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(CONFIG.format(tmp=tmp_path))
    return path


def check_result(path):
    result = json.loads(path.read_text())
    assert result["kind"] == "transfer"
    rows = result["rows"]
    # (pc1-pc2 + finalize) x 2 shapes x 2 transports x 2 reps + c1-c2 x 2 shapes x http x 2 reps
    assert len(rows) == 2 * 2 * 2 * 2 + 2 * 2
    assert {(r["handoff"], r["transport"]) for r in rows} == {
        ("pc1-pc2", "http"), ("pc1-pc2", "shared"), ("finalize", "http"), ("finalize", "shared"), ("c1-c2", "http")}
    for r in rows:
        assert r["verified"] is True and r["bytes"] > 0 and r["throughput_MiBps"] > 0
        assert set(r["cpu"]) == {"client", "server"}
    pc1 = [r for r in rows if r["handoff"] == "pc1-pc2" and r["sector"].startswith("32GiB")]
    assert pc1 and all(r["files"] == 13 for r in pc1)  # sealed + 11 layers + tree-d
    return result


def test_one_host(tmp_path):
    out = tmp_path / "r.json"
    done = CliRunner().invoke(cli, ["run", "--config", str(write_config(tmp_path)), "-o", str(out)])
    assert done.exit_code == 0, done.output
    check_result(out)
    assert "pc1-pc2" in done.output and "verified" in done.output
    assert not any((tmp_path / "work" / "work" / "sealed").iterdir())  # each repetition's copy was removed


def test_two_hosts_through_serve(tmp_path):
    server = subprocess.Popen([sys.executable, "-m", "rdmabench.cli", "serve", "--bind", "127.0.0.1", "--port", "0",
                               "--root", str(tmp_path / "serve"), "--clients", "1"],
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        port = int(line.split("listening on 127.0.0.1:")[1].split(",")[0])
        out = tmp_path / "r.json"
        done = CliRunner().invoke(cli, ["run", "--config", str(write_config(tmp_path)), "--peer", f"127.0.0.1:{port}",
                                        "-o", str(out)])
        assert done.exit_code == 0, done.output
        result = check_result(out)
        assert result["peer_context"]["host"]["hostname"]
        assert (tmp_path / "serve" / "storage" / "sealed").is_dir()  # the PC1 side's files live at the server
        assert server.wait(30) == 0
    finally:
        server.kill()


def test_a_bad_config_is_refused_before_anything_runs(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(CONFIG.format(tmp=tmp_path).replace('"shared"]', '"htp"]'))
    done = CliRunner().invoke(cli, ["run", "--config", str(path)])
    assert done.exit_code == 1
    assert "bad.toml" in done.output and "transports" in done.output and "'htp'" in done.output
    assert not (tmp_path / "storage").exists()
