"""`rdmabench run --config` across the two guests: the worker runs the matrix, the storage
guest's `rdmabench serve` plays PC1 and long-term storage. A scaled 32 GiB sector goes
PC1 -> PC2 and back at finalize over http, rdma-write and rdma-read, and the C1 output
goes to the C2 side both ways Lotus could send it: base64 in JSON-RPC, and raw over RDMA."""

import json
import subprocess
import sys

CONFIG = """
name = "pair"
handoffs = ["pc1-pc2", "finalize", "c1-c2"]
transports = ["http", "rdma-write", "rdma-read"]
repetitions = 1
storage_dir = "{tmp}/storage"
work_dir = "{tmp}/work"
[transports_for]
"c1-c2" = ["http", "rdma-write"]
[[shapes]]
sector_size = "32GiB"
scale = "1/65536"
"""


def test_sector_and_c1_handoffs_across_the_link(lab_env, tmp_path):
    assert lab_env["role"] == "worker" and lab_env["peer"], "run on the worker guest of `rdmabench lab --hosts 2`"
    config = tmp_path / "pair.toml"
    config.write_text(CONFIG.format(tmp=tmp_path))
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "rdmabench.cli", "run", "--config", str(config), "--peer",
                           lab_env["peer"], "--wait", "120", "-o", str(out)], capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["peer_context"]["host"]["hostname"] == "storage"
    raw = [r for r in result["rows"] if "handoff" not in r["measured"]]  # the link's raw bandwidth, measured first
    assert sorted(r["measured"]["test"] for r in raw) == ["read_bw", "write_bw"]
    rows = {(r["measured"]["handoff"], r["measured"]["transport"]): {**r, **r["detail"]} for r in result["rows"]
            if "handoff" in r["measured"]}
    assert set(rows) == {("pc1-pc2", t) for t in ("http", "rdma-write", "rdma-read")} | \
        {("finalize", t) for t in ("http", "rdma-write", "rdma-read")} | {("c1-c2", "http"), ("c1-c2", "rdma-write")}
    for (handoff, transport), r in rows.items():
        assert r["verified"] is True, (handoff, transport)
        assert (r["source"], r["destination"]) == (("storage", "worker") if handoff == "pc1-pc2" else ("worker", "storage"))
        assert r["cpu"]["server"]["elapsed_s"] > 0 and r["cpu"]["client"]["elapsed_s"] > 0
    assert rows[("pc1-pc2", "rdma-read")]["files"] == 13 and rows[("pc1-pc2", "rdma-read")]["bytes"] > 6 << 20
    c1 = rows[("c1-c2", "http")]
    assert c1["bytes"] == rows[("c1-c2", "rdma-write")]["bytes"] > 38_000_000  # the 32 GiB C1 output, never scaled
    assert c1["items"][0]["wire_bytes"] > c1["bytes"] * 4 / 3  # base64 inside JSON-RPC costs a third more
    assert "pc1-pc2" in done.stdout and "verified" in done.stdout
