"""NFS over RDMA and over TCP between the two lab guests (runs on the worker).

The storage guest runs the kernel NFS server with two generated sectors in its export:
    python -m rdmabench.nfs.server start --export /srv/nfsexp --size 256m \
        --generate 32GiB:pc1:0.00005 --generate 32GiB:finalized:0.002
(sector 1: a PC1 -> PC2 hand-off, sealed ~1.6 MiB + 12-file cache ~21 MiB; sector 2: a ~66 MiB sealed
file for the cold-read figure). Its ready file in the export carries the digests.

Checked: each mount is what it claims (/proc/mounts proto=rdma port=20049, proto=tcp), a mislabelled
mount is refused, copies arrive intact in both directions over both protocols (v3, and v4.2 over RDMA),
a missing export and an unreachable server (a wrong port, an address nobody has) fail with a clear
error within a bound. Soft mounts (timeo=100, retrans=2) throughout: an error, never a hang.
The cold-read figures (fresh mount per read) go to $RDMABENCH_RESULTS/nfs-pair.json, labelled as rxe
under emulation: ratios between the two protocols here say nothing about real NICs.
"""

import json
import os
import time
from pathlib import Path

import pytest

from rdmabench import integrity
from rdmabench.nfs import mounts
from rdmabench.nfs.mounts import NfsMountError
from rdmabench.nfs.server import READY_FILE
from rdmabench.transfer.measure import timed_move
from rdmabench.transports import Context, Item, TransportError, get
from rdmabench.workloads import sector

EXPORT = "/srv/nfsexp"
READY_WAIT_S = 400.0   # the storage guest boots first, but generates its sectors before nfsd starts
FAIL_BOUND_S = 75.0    # a failed mount must say so within this (mount timeout 60 s)
WORK = Path("/tmp/nfs-pair")


def _kw(proto):
    return {"timeo": 100, "retrans": 2, "timeout": 60}


@pytest.fixture(scope="session")
def server(lab_env):
    """The ready file of the storage guest's NFS server, read through a TCP mount once it can be made."""
    assert lab_env["role"] == "worker", "runs on the worker guest of `rdmabench lab --hosts 2`"
    peer = lab_env["peer"]
    probe = WORK / "probe"
    deadline = time.monotonic() + READY_WAIT_S
    last = None
    while time.monotonic() < deadline:
        try:
            mounts.mount(peer, EXPORT, probe, "tcp", "3", timeo=20, retrans=1, timeout=30)
        except NfsMountError as err:
            last = err
            time.sleep(3)
            continue
        try:
            ready = probe / READY_FILE
            if ready.exists():
                info = json.loads(ready.read_text())
                info["peer"] = peer
                return info
            last = f"{ready} not there yet"
        finally:
            mounts.umount(probe)
        time.sleep(3)
    pytest.fail(f"the storage guest's NFS server was not ready within {READY_WAIT_S:g} s: {last}")


def _transport(proto, server, **options):
    t = get(f"nfs-{proto}")
    opts = {"server": server["peer"], "export": EXPORT, "mount_dir": str(WORK / f"mnt-{proto}")}
    opts.update(options)
    t.prepare(Context(storage_root=Path(EXPORT), work_root=WORK / "work", options=opts))
    return t


def _pull_items(info, dest_root):
    sid = info["sector_id"]
    return [Item("file", "sealed", sid, None, dest_root / "sealed" / sid, info["sealed_bytes"], info["sealed_digest"]),
            Item("dir", "cache", sid, None, dest_root / "cache" / sid, info["cache_bytes"], info["cache_digest"])]


@pytest.mark.parametrize("proto,version", [("rdma", "3"), ("tcp", "3"), ("rdma", "4.2"), ("tcp", "4.2")])
def test_mount_is_what_it_claims(server, proto, version):
    mp = WORK / f"claim-{proto}-{version}"
    mounts.mount(server["peer"], EXPORT, mp, proto, version, **_kw(proto))
    try:
        line = next(l for l in Path("/proc/mounts").read_text().splitlines() if f" {mp} " in l)
        assert f"proto={proto}" in line, line
        if proto == "rdma":
            assert "port=20049" in line, line
        o = mounts.check_proto(mp, proto)
        assert o["vers"] == version and o["soft"] and o["timeo"] == 100
        other = "tcp" if proto == "rdma" else "rdma"
        with pytest.raises(NfsMountError, match=f"proto={proto}, not proto={other}"):
            mounts.check_proto(mp, other)
        assert (mp / READY_FILE).exists()
    finally:
        mounts.umount(mp)
    assert not mounts.is_mounted(mp)


def test_transport_refuses_a_mislabelled_mount(server):
    mp = WORK / "mislabel"
    mounts.mount(server["peer"], EXPORT, mp, "tcp", "3", **_kw("tcp"))
    try:
        with pytest.raises(TransportError, match="proto=tcp, not proto=rdma"):
            get("nfs-rdma").prepare(Context(Path(EXPORT), WORK, options={"mount": str(mp)}))
        t = get("nfs-tcp")
        t.prepare(Context(Path(EXPORT), WORK, options={"mount": str(mp), "cold": "drop_caches"}))
        rec = t.move(_pull_items(server["sectors"][0], WORK / "user-mount")[0])
        assert rec.verified and rec.extra["cold"] == "drop_caches" and rec.extra["mount"]["proto"] == "tcp"
        t.teardown()
        assert mounts.is_mounted(mp)  # a user's mount is left alone
    finally:
        mounts.umount(mp)


@pytest.mark.parametrize("proto,version", [("rdma", "3"), ("tcp", "3"), ("rdma", "4.2")])
def test_pull_pc1_to_pc2(server, proto, version):
    info = server["sectors"][0]
    dest = WORK / f"pull-{proto}-{version}"
    t = _transport(proto, server, version=version)
    try:
        for item in _pull_items(info, dest):
            rec = timed_move(t, item)  # as the runner moves it: ready() remounts (cold), then the timed move
            assert rec["verified"] and rec["digest"] == item.digest and rec["bytes"] == item.size
            assert integrity.digest(item.destination) == item.digest  # read again from local disk
            assert rec["extra"]["direction"] == "pull" and rec["extra"]["cold"] == "remount"
            m = rec["extra"]["mount"]
            assert m["proto"] == proto and m["vers"] == version and m["soft"]
            assert m["port"] == (20049 if proto == "rdma" else 2049)
        assert not [p for p in dest.rglob(".*part-*")]
    finally:
        t.teardown()
    assert not mounts.is_mounted(WORK / f"mnt-{proto}")


@pytest.mark.parametrize("proto", ["rdma", "tcp"])
def test_push_finalize(server, proto):
    number = 11 if proto == "rdma" else 12
    shape = sector.shape("32GiB", "finalized", number=number, scale="0.0001")
    gen = sector.generate(shape, WORK / f"push-src-{proto}")
    t = _transport(proto, server, direction="push")
    try:
        for item in sector.items(gen, Path("/nonexistent-export-root")):
            rec = timed_move(t, item)
            assert rec["verified"] and rec["extra"]["direction"] == "push"
            assert rec["extra"]["verify"] == "read back through a fresh mount" and rec["phases"]["verify_s"] > 0
            assert rec["seconds"] >= rec["phases"]["transfer_s"] + rec["phases"]["verify_s"]  # the runner times it all
            assert rec["extra"]["mount"]["proto"] == proto
    finally:
        t.teardown()
    # And a separate, fresh mount sees exactly the sector.
    mp = WORK / f"check-{proto}"
    mounts.mount(server["peer"], EXPORT, mp, "tcp", "3", **_kw("tcp"))
    try:
        assert integrity.digest(mp / "sealed" / shape.sector_id) == gen.sealed_digest
        assert integrity.digest(mp / "cache" / shape.sector_id) == gen.cache_digest
        assert not list((mp / "cache").glob(".*part-*")) and not list((mp / "sealed").glob(".*part-*"))
    finally:
        mounts.umount(mp)


def test_missing_item_is_a_clear_error(server):
    t = _transport("tcp", server)
    try:
        item = Item("file", "sealed", "s-t01000-999", None, WORK / "missing" / "sealed" / "s-t01000-999", 1, "00")
        with pytest.raises(TransportError, match="does not exist on the export"):
            t.move(item)
        assert not item.destination.exists()
    finally:
        t.teardown()


def _bounded_failure(fn, match):
    t0 = time.monotonic()
    with pytest.raises(NfsMountError, match=match) as err:
        fn()
    took = time.monotonic() - t0
    assert took < FAIL_BOUND_S, f"took {took:.1f} s: {err.value}"
    return took, str(err.value)


def test_missing_export_errors_within_bound(server):
    mp = WORK / "missing-export"
    _bounded_failure(lambda: mounts.mount(server["peer"], "/srv/no-such-export", mp, "tcp", "3", **_kw("tcp")),
                     "failed after .* s: mount.nfs: ")
    _bounded_failure(lambda: mounts.mount(server["peer"], "/srv/no-such-export", mp, "rdma", "3", **_kw("rdma")),
                     "failed after .* s: mount.nfs: ")
    assert not mounts.is_mounted(mp)


@pytest.mark.parametrize("where,proto,port", [("peer", "rdma", 20050), ("peer", "tcp", 2050),
                                              ("10.77.2.99", "tcp", None), ("10.77.2.99", "rdma", None)])
def test_unreachable_server_errors_within_bound(server, where, proto, port):
    host = server["peer"] if where == "peer" else where
    mp = WORK / "unreachable"
    _bounded_failure(lambda: mounts.mount(host, EXPORT, mp, proto, "3", port=port, timeo=20, retrans=1, timeout=60),
                     "(failed after|did not finish in)")
    assert not mounts.is_mounted(mp)


def test_cold_read_figure(server, lab_env):
    """One ~66 MiB sealed file pulled twice per protocol, alternating, each through a fresh mount."""
    info = server["sectors"][1]
    rows = []
    ts = {p: _transport(p, server) for p in ("rdma", "tcp")}
    try:
        for rnd in range(2):
            for proto in ("rdma", "tcp"):
                dest = WORK / f"cold-{proto}-{rnd}"
                rec = timed_move(ts[proto], _pull_items(info, dest)[0])  # a fresh mount first, untimed
                assert rec["verified"] and rec["extra"]["cold"] == "remount"
                rows.append(rec | {"round": rnd})
                integrity._remove(dest)
    finally:
        for t in ts.values():
            t.teardown()
    summary = {p: min(r["seconds"] for r in rows if r["transport"] == f"nfs-{p}") for p in ("rdma", "tcp")}
    out = {"where": "two lab guests, soft-RoCE (rxe) under QEMU TCG emulation: ratios only, not hardware figures",
           "bytes": info["sealed_bytes"], "best_seconds": summary, "rows": rows}
    print(f"\nnfs cold read {info['sealed_bytes']} B (rxe, TCG): rdma {summary['rdma']:.2f} s, "
          f"tcp {summary['tcp']:.2f} s")
    results = os.environ.get("RDMABENCH_RESULTS")
    if results:
        Path(results, "nfs-pair.json").write_text(json.dumps(out, indent=1, default=str))
