"""`rdmabench run --config` end to end on this host: real files, a real HTTP server and
client, and `rdmabench serve` on loopback playing the storage host (no RDMA needed for
the http and shared transports; the RDMA ones are tested in the lab)."""

import json
import re
import subprocess
import sys
import threading

from click.testing import CliRunner

from rdmabench.cli import cli
from rdmabench.results import row

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
    assert {(r["measured"]["handoff"], r["measured"]["transport"]) for r in rows} == {
        ("pc1-pc2", "http"), ("pc1-pc2", "shared"), ("finalize", "http"), ("finalize", "shared"), ("c1-c2", "http")}
    for r in rows:
        assert set(r) == set(row.KEYS)  # the one row shape (results/row.py)
        assert r["detail"]["verified"] is True and r["bytes"] > 0 and r["value"] > 0
        assert r["metric"] == "throughput_MiBps" and r["unit"] == "MiB/s" and r["higher_is_better"]
        assert {"client", "server", "roles"} <= set(r["cpu"]) and r["cpu"]["per_gb"]["client_process"] > 0
    pc1 = [r for r in rows if r["measured"]["handoff"] == "pc1-pc2" and r["measured"]["sector"].startswith("32GiB")]
    assert pc1 and all(r["detail"]["files"] == 13 for r in pc1)  # sealed + 11 layers + tree-d
    return result


def test_one_host(tmp_path):
    out = tmp_path / "r.json"
    done = CliRunner().invoke(cli, ["run", "--config", str(write_config(tmp_path)), "-o", str(out)])
    assert done.exit_code == 0, done.output
    check_result(out)
    assert "pc1-pc2" in done.output and "verified" in done.output
    assert not any((tmp_path / "work" / "work" / "sealed").iterdir())  # each repetition's copy was removed
    announced = re.findall(r"^\[(\d+)/(\d+)\] (\S+) (\S+) (\S+) #(\d+)$", done.stderr, re.M)
    rows = [r for r in json.loads(out.read_text())["rows"] if "handoff" in r["measured"]]
    # progress announces exactly the transfers that run: as many as there are rows, the same ones
    assert {int(n) for _, n, *_ in announced} == {len(rows)} and len(announced) == len(rows)
    assert sorted((h, s, t, int(rep) - 1) for _, _, h, s, t, rep in announced) == sorted(
        (r["measured"]["handoff"], r["measured"]["sector"], r["measured"]["transport"], r["repetition"]) for r in rows)


def test_two_hosts_through_serve(tmp_path):
    server = subprocess.Popen([sys.executable, "-m", "rdmabench.cli", "serve", "--bind", "127.0.0.1", "--port", "0",
                               "--root", str(tmp_path / "serve"), "--clients", "1"],
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        threading.Thread(target=server.stderr.read, daemon=True).start()  # a full log pipe would block serve
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


def test_config_ignores_no_option_silently(tmp_path):
    """`run --config` used to ignore 18 of `run`'s options without a word."""
    done = CliRunner().invoke(cli, ["run", "--config", str(write_config(tmp_path)), "--depth", "64", "-t", "read_bw"])
    assert done.exit_code == 2 and "--depth" in done.output and "--test" in done.output and "drop them" in done.output
    done = CliRunner().invoke(cli, ["run", "--scale", "1/2"])
    assert done.exit_code == 2 and "go with --config" in done.output


def test_a_real_size_config_runs_scaled_down_elsewhere(tmp_path):
    """--scale, --repetitions and --dir: a dry run of sealing-32g.toml that fits anywhere."""
    from pathlib import Path

    cfg = Path(__file__).resolve().parents[2] / "configs" / "sealing-32g.toml"
    out = tmp_path / "r.json"
    text = cfg.read_text().replace('"rdma-write", "rdma-read", "nfs-rdma", "nfs-tcp"', "").replace(
        '"http", "shared", ]', '"http", "shared"]').replace('"http", "rdma-write"]', '"http"]')
    small = tmp_path / "s32.toml"
    small.write_text(text)  # no RDMA device nor NFS server on this host: http and shared only
    done = CliRunner().invoke(cli, ["run", "--config", str(small), "--scale", "1/1048576", "--repetitions", "1",
                                    "--dir", str(tmp_path / "d"), "-o", str(out)])
    assert done.exit_code == 0, done.output
    rows = json.loads(out.read_text())["rows"]
    assert {r["measured"]["sector"] for r in rows} == {"32GiB@1/1048576"} and all(r["repetition"] == 0 for r in rows)
    assert (tmp_path / "d" / "storage").is_dir() and not Path("/srv/rdmabench").exists()


def test_the_table_says_n_a_where_cpu_could_not_be_measured():
    """A row without a CPU-per-GB figure showed 0.00 CPU-s/GB: a figure it never measured."""
    from rdmabench.transfer import runner

    from rdmabench.results.row import make

    row = make({"handoff": "finalize", "transport": "http", "sector": "8MiB"}, "throughput_MiBps", 5.0,
               bytes=1 << 20, seconds=0.2, detail={"verified": True})
    line = runner.render([row]).splitlines()[1]
    assert "n/a" in line and "0.00" not in line
    cpu = {"per_gb": {"client_process": 1.5, "server_process": 2.5}}
    line = runner.render([{**row, "cpu": cpu}]).splitlines()[1]
    assert "1.50" in line and "2.50" in line
