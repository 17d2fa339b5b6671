"""`rdmabench run --config` on one guest with rdma-write and rdma-read: before the transfers the run measures
write_bw and read_bw on the local device (both ends here, as `rdmabench run -t write_bw` does) at the
scenario's chunk size and inflight, and every rdma row carries that figure and its share of it."""

import json
import subprocess
import sys

from efficiency_checks import check_efficiency

CHUNK, INFLIGHT = 256 << 10, 4  # not the [transfer] defaults: the raw figure must follow the scenario's
CONFIG = """
name = "efficiency"
handoffs = ["pc1-pc2", "c1-c2"]
transports = ["http", "rdma-write", "rdma-read"]
repetitions = 2
storage_dir = "{tmp}/storage"
work_dir = "{tmp}/work"
[transports_for]
"c1-c2" = ["rdma-write"]
[transfer]
chunk = "256KiB"
inflight = 4
[[shapes]]
sector_size = "8MiB"
"""


def test_every_rdma_row_has_its_raw_figure_and_ratio(lab_env, tmp_path):
    config = tmp_path / "eff.toml"
    config.write_text(CONFIG.format(tmp=tmp_path))
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "rdmabench.cli", "run", "--config", str(config), "-o", str(out)],
                          capture_output=True, text=True, timeout=900)
    print(done.stdout)  # the table, with the raw figures and ratios, for whoever reads the log
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    rows = check_efficiency(result, done.stdout, CHUNK, INFLIGHT, between=f"loopback on {lab_env['device']}")
    assert len(rows["rdma-write"]) == 2 * 2 and len(rows["rdma-read"]) == 2  # pc1-pc2 and c1-c2, two repetitions
    assert "[raw] write_bw" in done.stderr and "[raw] read_bw" in done.stderr
