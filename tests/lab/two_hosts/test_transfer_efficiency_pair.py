"""`rdmabench run --config --peer` across the two guests with rdma-write and rdma-read: before the transfers
the worker measures write_bw and read_bw against the storage guest's `rdmabench serve` (its verbs service,
the same link the transfers take) at the scenario's chunk size and inflight; every rdma row carries that
figure and its share of it."""

import json
import subprocess
import sys

from efficiency_checks import check_efficiency

CHUNK, INFLIGHT = 512 << 10, 8  # not the [transfer] defaults: the raw figure must follow the scenario's
CONFIG = """
name = "efficiency-pair"
handoffs = ["pc1-pc2", "finalize"]
transports = ["http", "rdma-write", "rdma-read"]
repetitions = 1
storage_dir = "{tmp}/storage"
work_dir = "{tmp}/work"
[transfer]
chunk = "512KiB"
inflight = 8
[[shapes]]
sector_size = "32GiB"
scale = "1/65536"
"""


def test_every_rdma_row_has_the_links_raw_figure_and_ratio(lab_env, tmp_path):
    assert lab_env["role"] == "worker" and lab_env["peer"], "run on the worker guest of `rdmabench lab --hosts 2`"
    config = tmp_path / "eff.toml"
    config.write_text(CONFIG.format(tmp=tmp_path))
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "rdmabench.cli", "run", "--config", str(config), "--peer",
                           lab_env["peer"], "--wait", "120", "-o", str(out)], capture_output=True, text=True,
                          timeout=1200)
    print(done.stdout)  # the table, with the raw figures and ratios, for whoever reads the log
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["peer_context"]["host"]["hostname"] == "storage"
    rows = check_efficiency(result, done.stdout, CHUNK, INFLIGHT,
                            between=f"worker -> storage's rdmabench serve at {lab_env['peer']}:")
    assert {r["measured"]["handoff"] for r in rows["rdma-write"]} == {"pc1-pc2", "finalize"}
    for r in [x for x in result["rows"] if "test" in x["measured"]]:
        assert r["cpu"]["roles"] == {"client": "worker", "server": "storage"}
        assert r["cpu"]["server"]["elapsed_s"] > 0  # the storage guest's serve measured its own end
