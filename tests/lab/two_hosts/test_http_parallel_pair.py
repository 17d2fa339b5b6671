"""http across the link with parallel = 3 and streams = 2, and each alone: the worker runs `rdmabench run
--config`, the storage guest's `rdmabench serve` generates the PC1 sector and starts the http server the worker
fetches from (pc1-pc2), and at finalize fetches from the worker's (the options cross the control channel). Every
item must arrive with the generator's digest, moved the parallel way (rdmabench's extension) and saying so. The
same sector then goes by Lotus's own fetch (one tar stream), and the throughputs are printed side by side: TCP
between two guests under TCG emulation, ratios of this one run, never a claim about hardware."""

import json
import statistics
import subprocess
import sys

CONFIG = """
name = "http-{name}"
handoffs = ["pc1-pc2", "finalize"]
transports = ["http"]
repetitions = 2
storage_dir = "{tmp}/storage"
work_dir = "{tmp}/work"
[transfer]
parallel = {parallel}
streams = {streams}
[[shapes]]
sector_size = "32GiB"
scale = "1/8192"
"""


def run_config(lab_env, tmp_path, name, parallel, streams):
    config = tmp_path / f"{name}.toml"
    config.write_text(CONFIG.format(name=name, tmp=tmp_path, parallel=parallel, streams=streams))
    out = tmp_path / f"{name}.json"
    done = subprocess.run([sys.executable, "-m", "rdmabench.cli", "run", "--config", str(config), "--peer",
                           lab_env["peer"], "--wait", "120", "-o", str(out)], capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text())


def check_parallel(result, parallel, streams):
    """Every row verified, moved the parallel way and saying so, between the right hosts."""
    assert result["peer_context"]["host"]["hostname"] == "storage"
    assert (result["options"]["parallel"], result["options"]["streams"]) == (parallel, streams)
    rows = result["rows"]
    assert sorted(r["measured"]["handoff"] for r in rows) == ["finalize", "finalize", "pc1-pc2", "pc1-pc2"]
    for r in rows:
        handoff = r["measured"]["handoff"]
        assert r["detail"]["verified"] is True
        assert (r["detail"]["source"], r["detail"]["destination"], r["detail"]["active_end"]) == (
            ("storage", "worker", "worker") if handoff == "pc1-pc2" else ("worker", "storage", "storage"))
        items = r["detail"]["items"]
        assert [i["extra"]["kind"] for i in items] == ["file", "dir"]
        for i in items:
            assert i["verified"] is True and i["digest"]  # the receiver matched the generator's digest
            assert (i["extra"]["parallel"], i["extra"]["streams"]) == (parallel, streams)
        # a single file goes by Lotus's own fetch unless it is split into streams
        assert items[0]["extra"]["protocol"] == ("rdmabench-parallel" if streams > 1 else "lotus")
        assert items[1]["extra"]["protocol"] == "rdmabench-parallel"
        if handoff == "pc1-pc2":
            assert r["detail"]["files"] == 13 and items[1]["extra"]["files"] == 12  # sealed; 11 layers + tree-d
            assert r["bytes"] > 50 << 20


def mibps(result, handoff):
    return statistics.median(r["value"] for r in result["rows"] if r["measured"]["handoff"] == handoff)


def test_http_parallel_and_streams_across_the_link(lab_env, tmp_path):
    assert lab_env["role"] == "worker" and lab_env["peer"], "run on the worker guest of `rdmabench lab --hosts 2`"
    runs = {}
    for parallel, streams in ((3, 2), (3, 1), (1, 2)):
        runs[parallel, streams] = run_config(lab_env, tmp_path, f"p{parallel}s{streams}", parallel, streams)
        check_parallel(runs[parallel, streams], parallel, streams)
    lotus = run_config(lab_env, tmp_path, "lotus", 1, 1)
    for r in lotus["rows"]:
        assert r["detail"]["verified"] is True
        assert {i["extra"]["protocol"] for i in r["detail"]["items"]} == {"lotus"}
        assert {(i["extra"]["parallel"], i["extra"]["streams"]) for i in r["detail"]["items"]} == {(1, 1)}
    assert {r["bytes"] for r in lotus["rows"]} == {r["bytes"] for r in runs[3, 2]["rows"]}
    print("\nhttp across the link, median MiB/s of 2 repetitions and the ratio to Lotus's fetch "
          "(TCP between two guests under TCG emulation, this run only):")
    for handoff in ("pc1-pc2", "finalize"):
        lo = mibps(lotus, handoff)
        cells = [f"p{p}s{s} {mibps(r, handoff):.1f} ({mibps(r, handoff) / lo:.2f}x)" for (p, s), r in runs.items()]
        print(f"  {handoff:<9} lotus {lo:.1f}  " + "  ".join(cells))
