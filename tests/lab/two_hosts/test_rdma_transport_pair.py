"""rdma-write and rdma-read across the link: the worker guest is the active end, the storage guest
runs two passive ends (see the Makefile's test-lab-two):

    python -m rdmabench.transports.rdma serve --bind $RDMABENCH_IP --port 7600 --root /tmp/rdma-store --mode write
    python -m rdmabench.transports.rdma serve --bind $RDMABENCH_IP --port 7601 --root /tmp/rdma-store --mode read

Pull: the storage host's `rdmabench serve` generates a scaled sector and starts an rdma-read passive end
on it (the runner's own path, transfer.hosts.RemoteHost: a passive end never generates workloads); the
worker pulls it and checks the digests the generator reported. Push then pull back: the worker
pushes its own sector (the storage receiver verifies and reports), then pulls it back from the
same root into a second directory and compares digests."""

import socket
import time

import pytest

from rdmabench import integrity, transports
from rdmabench.perf.control import DEFAULT_PORT, Channel
from rdmabench.transfer.hosts import RemoteHost
from rdmabench.transfer.measure import timed_move
from rdmabench.transports.base import Context, Item
from rdmabench.workloads import sector

WRITE_PORT, READ_PORT = 7600, 7601
SHAPE = dict(sector_size="32GiB", stage="pc1", scale="1/65536")


@pytest.fixture(scope="module")
def peer(lab_env):
    if lab_env["role"] != "worker" or not lab_env["peer"]:
        pytest.fail("run on the worker guest of `rdmabench lab --hosts 2` (storage runs the rdma serve ends)")
    deadline = time.monotonic() + 120
    for port in (WRITE_PORT, READ_PORT):
        while True:
            try:
                socket.create_connection((lab_env["peer"], port), timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"no rdma passive end on {lab_env['peer']}:{port}")
                time.sleep(1)
    return lab_env["peer"]


def open_transport(lab_env, peer, name, port, src, dst):
    t = transports.get(name)
    t.prepare(Context(storage_root=src, work_root=dst, peer_info={"host": peer, "port": port},
                      options={"device": lab_env["device"], "gid_index": lab_env["gid_index"],
                               "chunk": 256 << 10, "inflight": 4, "timeout_ms": 30000}))
    return t


def pull_items(shape, dst, sealed_digest, cache_digest):
    sid = shape.sector_id
    return [Item(kind="file", lotus_type="sealed", sector_id=sid, source=None, destination=dst / "sealed" / sid,
                 size=shape.sealed_bytes, digest=sealed_digest),
            Item(kind="dir", lotus_type="cache", sector_id=sid, source=None, destination=dst / "cache" / sid,
                 size=shape.cache_bytes, digest=cache_digest)]


def test_pull_a_sector_generated_on_storage(lab_env, peer, tmp_path):
    chan = Channel.connect(peer, DEFAULT_PORT, timeout=10, wait=120)  # the storage guest's `rdmabench serve`
    try:
        chan.send("hello", tool="rdmabench")
        chan.recv(30, "hello")
        storage = RemoteHost(chan, "rdmabench")
        made = {d["kind"]: d for d in storage.generate(32 << 30, SHAPE["stage"], SHAPE["scale"], 1000, 11)}
        info = storage.start_passive("rdma-read", "file")
        try:
            t = open_transport(lab_env, peer, "rdma-read", info["port"], tmp_path, tmp_path / "dst")
            shape = sector.shape(SHAPE["sector_size"], SHAPE["stage"], scale=SHAPE["scale"], number=11)
            try:
                recs = [timed_move(t, i) for i in pull_items(shape, tmp_path / "dst", made["file"]["digest"],
                                                             made["dir"]["digest"])]
            finally:
                t.teardown()
        finally:
            served = storage.stop_passive()
        chan.send("bye")
    finally:
        chan.close()
    assert all(r["verified"] for r in recs), recs
    assert [s["verified"] for s in served["served"]] == [True, True]  # the source heard the verdicts
    assert integrity.digest(tmp_path / "dst" / "sealed" / shape.sector_id) == made["file"]["digest"]
    assert integrity.digest(tmp_path / "dst" / "cache" / shape.sector_id) == made["dir"]["digest"]
    total = sum(r["bytes"] for r in recs)
    print(f"\nrdma-read across the link: {total / sum(r['seconds'] for r in recs) / 2**20:.1f} MiB/s "
          "(rxe under TCG emulation)")


def test_push_then_pull_back(lab_env, peer, tmp_path):
    gen = sector.generate(sector.shape(SHAPE["sector_size"], SHAPE["stage"], scale=SHAPE["scale"], number=12),
                          tmp_path / "src")
    w = open_transport(lab_env, peer, "rdma-write", WRITE_PORT, gen.root, tmp_path / "unused")
    try:
        pushed = [timed_move(w, i) for i in sector.items(gen, tmp_path / "unused")]
    finally:
        w.teardown()
    assert all(r["verified"] for r in pushed), pushed  # the storage receiver's verdicts
    assert [r["digest"] for r in pushed] == [gen.sealed_digest, gen.cache_digest]
    assert not (tmp_path / "unused").exists()  # the push landed on storage, not here
    r = open_transport(lab_env, peer, "rdma-read", READ_PORT, gen.root, tmp_path / "back")
    try:
        back = [r.move(i) for i in pull_items(gen.shape, tmp_path / "back", gen.sealed_digest, gen.cache_digest)]
    finally:
        r.teardown()
    assert all(x.verified for x in back), back
    sid = gen.shape.sector_id
    assert integrity.digest(tmp_path / "back" / "sealed" / sid) == gen.sealed_digest
    assert integrity.digest(tmp_path / "back" / "cache" / sid) == gen.cache_digest
    total = sum(x["bytes"] for x in pushed)
    print(f"\nrdma-write across the link: {total / sum(x['seconds'] for x in pushed) / 2**20:.1f} MiB/s "
          "(rxe under TCG emulation)")
