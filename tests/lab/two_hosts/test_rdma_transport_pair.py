"""rdma-write and rdma-read across the link: the worker guest is the active end, the storage guest's
`rdmabench serve --root /srv/nfsexp` is the passive end (its rdma-write and rdma-read services, on the
one port; see the Makefile's test-lab-two).

Pull: the storage host's transfer service (transfer.hosts.RemoteHost, the path `run --config` takes: a
passive end never generates workloads) generates a scaled sector into ROOT/storage, the worker pulls it
from the rdma-read service and checks the digests the generator reported. Push: the worker pushes its own
sector into ROOT/work and the storage end's verdict must match the digests the worker computed."""

import socket
import time

import pytest

from rdmabench import integrity, transports
from rdmabench.transfer.hosts import RemoteHost
from rdmabench.transfer.measure import timed_move
from rdmabench.transports.base import Context, Item
from rdmabench.wire import DEFAULT_PORT, Channel
from rdmabench.workloads import sector

SHAPE = dict(sector_size="32GiB", stage="pc1", scale="1/65536")


@pytest.fixture(scope="module")
def peer(lab_env):
    if lab_env["role"] != "worker" or not lab_env["peer"]:
        pytest.fail("run on the worker guest of `rdmabench lab --hosts 2` (storage runs the rdma serve ends)")
    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection((lab_env["peer"], DEFAULT_PORT), timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"no rdmabench serve on {lab_env['peer']}:{DEFAULT_PORT}")
            time.sleep(1)
    return lab_env["peer"]


def open_transport(lab_env, peer, name, src, dst, **options):
    t = transports.get(name)
    t.prepare(Context(storage_root=src, work_root=dst, peer_info={"host": peer, "port": DEFAULT_PORT, "service": name},
                      options={"device": lab_env["device"], "gid_index": lab_env["gid_index"],
                               "chunk": 256 << 10, "inflight": 4, "timeout_ms": 30000, **options}))
    return t


def pull_items(shape, dst, sealed_digest, cache_digest):
    sid = shape.sector_id
    return [Item(kind="file", lotus_type="sealed", sector_id=sid, source=None, destination=dst / "sealed" / sid,
                 size=shape.sealed_bytes, digest=sealed_digest),
            Item(kind="dir", lotus_type="cache", sector_id=sid, source=None, destination=dst / "cache" / sid,
                 size=shape.cache_bytes, digest=cache_digest)]


KNOBS = [{}, {"streams": 3, "parallel": 1}, {"streams": 2, "parallel": 4}]  # Lotus-like: several QPs, several files


@pytest.mark.parametrize("knobs", KNOBS, ids=lambda k: "-".join(f"{a}{b}" for a, b in k.items()) or "defaults")
def test_pull_a_sector_generated_on_storage(lab_env, peer, tmp_path, knobs):
    number = 11 + KNOBS.index(knobs)
    with Channel.connect(peer, DEFAULT_PORT, "transfer", timeout=10, wait=120) as chan:
        made = {d["kind"]: d for d in RemoteHost(chan, "rdmabench").generate(32 << 30, SHAPE["stage"], SHAPE["scale"],
                                                                              1000, number)}
        chan.send("bye")
    shape = sector.shape(SHAPE["sector_size"], SHAPE["stage"], scale=SHAPE["scale"], number=number)
    assert made["file"]["sector_id"] == made["dir"]["sector_id"] == shape.sector_id
    t = open_transport(lab_env, peer, "rdma-read", tmp_path, tmp_path / "dst", **knobs)
    try:
        recs = [timed_move(t, i) for i in pull_items(shape, tmp_path / "dst", made["file"]["digest"],
                                                     made["dir"]["digest"])]
    finally:
        t.teardown()
    assert all(r["verified"] for r in recs), recs
    assert all(r["extra"]["streams"] == knobs.get("streams", 1) for r in recs)
    assert integrity.digest(tmp_path / "dst" / "sealed" / shape.sector_id) == made["file"]["digest"]
    assert integrity.digest(tmp_path / "dst" / "cache" / shape.sector_id) == made["dir"]["digest"]
    total = sum(r["bytes"] for r in recs)
    print(f"\nrdma-read across the link: {total / sum(r['seconds'] for r in recs) / 2**20:.1f} MiB/s "
          "(rxe under TCG emulation)")


@pytest.mark.parametrize("knobs", KNOBS, ids=lambda k: "-".join(f"{a}{b}" for a, b in k.items()) or "defaults")
def test_push_lands_verified_on_storage(lab_env, peer, tmp_path, knobs):
    gen = sector.generate(sector.shape(SHAPE["sector_size"], SHAPE["stage"], scale=SHAPE["scale"],
                                       number=21 + KNOBS.index(knobs)), tmp_path / "src")
    w = open_transport(lab_env, peer, "rdma-write", gen.root, tmp_path / "unused", **knobs)
    try:
        pushed = [timed_move(w, i) for i in sector.items(gen, tmp_path / "unused")]
    finally:
        w.teardown()
    assert all(r["verified"] for r in pushed), pushed  # the storage receiver's verdicts
    assert all(r["extra"]["parallel"] == knobs.get("parallel", 1) for r in pushed)
    assert [r["digest"] for r in pushed] == [gen.sealed_digest, gen.cache_digest]
    assert not (tmp_path / "unused").exists()  # the push landed on storage, not here
    total = sum(x["bytes"] for x in pushed)
    print(f"\nrdma-write across the link: {total / sum(x['seconds'] for x in pushed) / 2**20:.1f} MiB/s "
          "(rxe under TCG emulation)")
