"""NFS mount options as axes, end to end across the two guests (runs on the worker).

`rdmabench run --config` with an [nfs] table of two versions x two nconnect values (and rsize 1 MiB,
wsize 64 KiB for every variant) moves a scaled 32 GiB sector PC1 -> PC2 (a pull from the storage guest's
kernel NFS export) and back at finalize (a push into it) over nfs-tcp and nfs-rdma: 2 hand-offs x
2 transports x 4 variants = 16 transfers, every byte verified by the runner.

Checked for every record: the mount it went through is what /proc/mounts said the kernel applied, and
that is what was asked wherever the kernel honours it -- the version (v3, and v4.2 below the pseudo-root:
/storage and /work), the protocol, nconnect over TCP and over RDMA with v3, wsize 64 KiB -- while rsize
1 MiB comes out as nfsd's max_block_size on the storage guest (256 KiB in a 2 GiB guest), read from the
server's ready file independently of the client, and is reported as changed. The 6.1 kernel ignores
nconnect for NFSv4 over RDMA: the record must then say so (requested 4, applied 1); a kernel that honours
it must show 4 and no change. Every requested option the kernel changed is listed, and nothing else.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rdmabench.nfs import mounts
from rdmabench.nfs.mounts import NfsMountError
from rdmabench.nfs.server import READY_FILE

EXPORT = "/srv/nfsexp"
CONFIG = """
name = "nfs-variants"
handoffs = ["pc1-pc2", "finalize"]
transports = ["nfs-tcp", "nfs-rdma"]
repetitions = 1
storage_dir = "{tmp}/storage"
work_dir = "{tmp}/work"
[nfs]
version = ["3", "4.2"]
nconnect = [1, 4]
rsize = "1MiB"
wsize = "64KiB"
[[shapes]]
sector_size = "32GiB"
scale = "1/65536"
"""
VARIANTS = [f"v{v} nconnect={n} rsize=1M wsize=64K" for v in ("3", "4.2") for n in (1, 4)]


def _ready(peer: str) -> dict:
    """The storage guest's NFS server's ready file (through a mount of our own, made and removed here)."""
    probe = Path("/tmp/nfs-variants-probe")
    last = None
    for _ in range(40):
        try:
            mounts.mount(peer, EXPORT, probe, "tcp", "3", timeo=20, retrans=1, timeout=30)
        except NfsMountError as err:
            last = err
            time.sleep(3)
            continue
        try:
            return json.loads((probe / READY_FILE).read_text())
        finally:
            mounts.umount(probe)
    pytest.fail(f"the storage guest's NFS server did not answer: {last}")


@pytest.fixture(scope="module")
def run(lab_env, tmp_path_factory):
    assert lab_env["role"] == "worker" and lab_env["peer"], "run on the worker guest of `rdmabench lab --hosts 2`"
    tmp = tmp_path_factory.mktemp("nfs-variants")
    config = tmp / "nfs-variants.toml"
    config.write_text(CONFIG.format(tmp=tmp))
    out = tmp / "r.json"
    done = subprocess.run([sys.executable, "-m", "rdmabench.cli", "run", "--config", str(config), "--peer",
                           lab_env["peer"], "--wait", "300", "-o", str(out)], capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    print("\n" + done.stdout)  # the run's table (rxe under TCG: ratios only), kept with the result file
    results = os.environ.get("RDMABENCH_RESULTS")
    if results:
        shutil.copy(out, Path(results) / "nfs-variants.json")
    return json.loads(out.read_text()), done.stdout, _ready(lab_env["peer"])


def test_every_variant_of_both_transports_ran_verified(run):
    result, stdout, _ = run
    keys = [(r["measured"]["handoff"], r["measured"]["transport"], r["measured"]["variant"]) for r in result["rows"]]
    assert sorted(keys) == sorted((h, t, v) for h in ("pc1-pc2", "finalize") for t in ("nfs-tcp", "nfs-rdma")
                                  for v in VARIANTS)
    # the plan's order: within the repetition each transport's variants one after the other
    assert [k[2] for k in keys[:4]] == VARIANTS and {k[1] for k in keys[:4]} == {"nfs-tcp"}
    for r in result["rows"]:
        d = r["detail"]
        assert d["verified"] is True and r["bytes"] > 0 and r["value"] > 0
        assert all(i["verified"] and i["digest"] for i in d["items"])
        assert r["bytes"] == sum(i["bytes"] for i in d["items"])
        direction = "pull" if r["measured"]["handoff"] == "pc1-pc2" else "push"
        assert {i["extra"]["direction"] for i in d["items"]} == {direction}
    pc1 = [r for r in result["rows"] if r["measured"]["handoff"] == "pc1-pc2"]
    assert all(r["detail"]["files"] == 13 for r in pc1)  # sealed + 11 layers + tree-d
    for v in VARIANTS:
        assert f"nfs-rdma {v}" in stdout and f"nfs-tcp {v}" in stdout


def test_each_record_carries_what_the_kernel_applied(run):
    result, stdout, ready = run
    cap = ready.get("max_block_size")
    assert cap, f"the NFS server's ready file does not report nfsd's max_block_size: {ready}"
    expected_rsize = min(1 << 20, cap)
    seen_v4_rdma_nconnect = set()
    for r in result["rows"]:
        m = r["measured"]
        proto = m["transport"].removeprefix("nfs-")
        version = m["variant"].split()[0][1:]
        nconnect = int(m["variant"].split()[1].split("=")[1])
        asked = {"vers": version, "nconnect": nconnect, "rsize": 1 << 20, "wsize": 64 << 10}
        for item in r["detail"]["items"]:
            x = item["extra"]
            applied, changed = x["mount"], x["changed"]
            where = f"{m['handoff']} {m['transport']} {m['variant']} {item['item']}: {applied['options']}"
            assert x["requested"] == asked, where
            assert applied["proto"] == proto and applied["vers"] == version, where
            assert applied["port"] == (20049 if proto == "rdma" else 2049), where
            assert applied["source"].endswith(":/storage" if version == "4.2" and m["handoff"] == "pc1-pc2" else
                                              ":/work" if version == "4.2" else
                                              f":{EXPORT}/storage" if m["handoff"] == "pc1-pc2" else f":{EXPORT}/work"), where
            assert applied["wsize"] == 64 << 10, where  # below the server's cap: as asked
            assert applied["rsize"] == expected_rsize, where  # the server's cap, not the 1 MiB asked for
            if proto == "tcp" or version == "3":
                assert applied["nconnect"] == nconnect, where
            else:
                seen_v4_rdma_nconnect.add((nconnect, applied["nconnect"]))
                assert applied["nconnect"] in (nconnect, 1), where
            # exactly the requested options the kernel applied otherwise, each with both values
            assert changed == {k: {"requested": v, "applied": applied[k]} for k, v in asked.items()
                               if str(applied[k]) != str(v)}, where
            if expected_rsize != 1 << 20:
                assert changed["rsize"] == {"requested": 1 << 20, "applied": expected_rsize}, where
        nfs = r["detail"]["nfs"]
        assert nfs["requested"] == asked and nfs["applied"]["rsize"] == expected_rsize
        assert nfs["changed"] == r["detail"]["items"][0]["extra"]["changed"]
    print(f"\nnfsd max_block_size {cap}; NFSv4 over RDMA nconnect (asked, applied): {sorted(seen_v4_rdma_nconnect)}")
    if expected_rsize != 1 << 20:
        assert f"the kernel applied rsize={expected_rsize} (asked 1048576)" in stdout
