"""rdma-write and rdma-read on one guest: both ends in this process (the passive end's chunk loop
runs in a thread with the GIL released). A scaled 32 GiB PC1 sector (sealed file + cache directory,
~7.5 MiB), a file several times the registered ring with a short last chunk, blobs, interrupted
transfers, a full destination, and the registered memory staying chunk x inflight."""

import dataclasses
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rdmabench import integrity, transports
from rdmabench.errors import RdmabenchError
from rdmabench.transfer.measure import timed_move
from rdmabench.transports.base import Context, Item, TransportError
from rdmabench.workloads import c1, pattern, sector

CHUNK, INFLIGHT = 64 << 10, 4  # a 256 KiB ring; every sector file but p_aux/t_aux is larger
BOTH = ["rdma-write", "rdma-read"]


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    return sector.generate(sector.shape("32GiB", "pc1", scale="1/65536"), tmp_path_factory.mktemp("src"))


def ctx_for(lab_env, src: Path, dst: Path, **options) -> Context:
    opts = {"device": lab_env["device"], "gid_index": lab_env["gid_index"], "chunk": CHUNK,
            "inflight": INFLIGHT, "timeout_ms": 10000, **options}
    return Context(storage_root=src, work_root=dst, bind=lab_env["ip"], options=opts)


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("name", BOTH)
def test_sector_moves_intact_in_lotus_layout(lab_env, gen, tmp_path, name):
    dst = tmp_path / "dst"
    t = transports.get(name)
    t.prepare(ctx_for(lab_env, gen.root, dst))
    try:
        recs = [t.move(item) for item in sector.items(gen, dst)]
        assert t.registered_bytes == CHUNK * INFLIGHT
    finally:
        t.teardown()
    sid = gen.shape.sector_id
    assert [r.item for r in recs] == [f"sealed/{sid}", f"cache/{sid}"]
    assert all(r.verified for r in recs), recs
    assert recs[0].digest == gen.sealed_digest and recs[1].digest == gen.cache_digest
    assert integrity.digest(dst / "sealed" / sid) == gen.sealed_digest
    assert integrity.digest(dst / "cache" / sid) == gen.cache_digest
    assert leftovers(dst) == sorted(f.rel(sid) for f in gen.shape.files)
    assert recs[1].bytes == gen.shape.cache_bytes and recs[1].extra["registered_bytes"] == CHUNK * INFLIGHT
    if name == "rdma-write":  # the receiver's own report, per item
        got = t.last_passive["received"]
        assert [(r["item"], r["verified"], r["digest"]) for r in got] == \
            [(f"sealed/{sid}", True, gen.sealed_digest), (f"cache/{sid}", True, gen.cache_digest)]
        assert "errors" not in t.last_passive


def big_item(tmp_path: Path, size: int) -> Item:
    src = tmp_path / "src"
    path = src / "unsealed" / "s-t01000-7"
    path.parent.mkdir(parents=True)
    digest = pattern.write_file(path, "big", size)
    return Item(kind="file", lotus_type="unsealed", sector_id="s-t01000-7", source=path,
                destination=tmp_path / "dst" / "unsealed" / "s-t01000-7", size=size, digest=digest)


@pytest.mark.parametrize("name", BOTH)
def test_file_many_times_the_ring_reuses_slots(lab_env, tmp_path, name):
    size = 12 * CHUNK * INFLIGHT + 12345  # 3 MiB + a short last chunk: every slot reused 12 times
    item = big_item(tmp_path, size)
    t = transports.get(name)
    t.prepare(ctx_for(lab_env, tmp_path / "src", tmp_path / "dst"))
    try:
        small = timed_move(t, item)
        assert t.registered_bytes == CHUNK * INFLIGHT  # the same ring whatever the file size
    finally:
        t.teardown()
    assert small["verified"] and small["bytes"] == size
    assert integrity.digest_file(item.destination) == item.digest
    assert item.destination.stat().st_size == size
    print(f"\n{name}: {size / small['seconds'] / 2**20:.1f} MiB/s (rxe under emulation)")


def test_blobs_pushed_into_memory(lab_env, tmp_path):
    blobs = [c1.item("2KiB"), c1.item("8MiB", number=2)]  # ~100 KB and ~211 KB
    odd = os.urandom(CHUNK * INFLIGHT * 3 + 7)
    blobs.append(Item(kind="blob", lotus_type="c1", sector_id="s-t01000-3", source=None, destination=None,
                      size=len(odd), data=odd))
    t = transports.get("rdma-write")
    t.prepare(ctx_for(lab_env, tmp_path, tmp_path / "dst"))
    try:
        recs = [t.move(b) for b in blobs]
        held = dict(t._server.blobs)
    finally:
        t.teardown()
    assert all(r.verified for r in recs), recs
    for b in blobs:
        assert held[f"c1/{b.sector_id}"] == b.data
    assert [r["verified"] for r in t.last_passive["received"]] == [True, True, True]
    assert not (tmp_path / "dst").exists() or leftovers(tmp_path / "dst") == []


@pytest.mark.parametrize("name", BOTH)
@pytest.mark.parametrize("who", ["passive", "active"])
def test_interrupted_transfer_leaves_nothing(lab_env, tmp_path, name, who):
    item = big_item(tmp_path, 3 << 20)
    hook = {"passive_abort_after": 5} if who == "passive" else {"abort_after": 5}
    t = transports.get(name)
    t.prepare(ctx_for(lab_env, tmp_path / "src", tmp_path / "dst", **hook))
    try:
        t0 = time.monotonic()
        with pytest.raises(TransportError, match="abort"):
            t.move(item)
        assert time.monotonic() - t0 < 8, "the other end must stop at once, not wait for its timeout"
    finally:
        t.teardown()
    assert leftovers(tmp_path / "dst") == []
    assert integrity.digest_file(item.source) == item.digest  # the source untouched
    if name == "rdma-write":
        assert t.last_passive["received"] == []


@pytest.mark.parametrize("name", BOTH)
def test_session_recovers_after_a_failure(lab_env, tmp_path, name):
    item = big_item(tmp_path, 1 << 20)
    t = transports.get(name)
    t.prepare(ctx_for(lab_env, tmp_path / "src", tmp_path / "dst", abort_after=3))
    try:
        with pytest.raises(TransportError):
            t.move(item)
        t.abort_after = -1
        assert t.move(item).verified  # a new session, the same item
    finally:
        t.teardown()
    assert integrity.digest_file(item.destination) == item.digest


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.parametrize("name", BOTH)
def test_no_space_is_a_clear_error(lab_env, tmp_path, small_fs, name):
    item = big_item(tmp_path, 3 << 20)
    item = Item(**{**item.__dict__, "destination": small_fs / "unsealed" / item.sector_id})
    t = transports.get(name)
    t.prepare(ctx_for(lab_env, tmp_path / "src", small_fs))
    try:
        with pytest.raises(RdmabenchError, match=r"not enough space for the transfer: need 3 MiB, 1 MiB free"):
            t.move(item)
    finally:
        t.teardown()
    assert leftovers(small_fs) == []
    assert integrity.digest_file(item.source) == item.digest


@pytest.mark.parametrize("name", BOTH)
@pytest.mark.parametrize("streams", [1, 3])
def test_passive_end_killed_mid_transfer(lab_env, tmp_path, name, streams):
    """The passive end in its own process (`rdmabench serve`, its rdma-write or rdma-read service), SIGKILLed
    as soon as the first bytes of a 48 MiB transfer land: the active end fails with a clear error within its timeout
    and keeps nothing half-written."""
    item = big_item(tmp_path, 48 << 20)  # ~5 s at the lab's rates: still moving when the kill comes
    mode = name.split("-")[1]
    port = 7700 + BOTH.index(name) + 2 * streams
    serve_root = tmp_path / "srv"  # serve sends from ROOT/storage and receives into ROOT/work
    serve_root.mkdir()
    (tmp_path / "src").rename(serve_root / "storage")
    item = dataclasses.replace(item, source=serve_root / "storage" / "unsealed" / "s-t01000-7")
    proc = subprocess.Popen([sys.executable, "-m", "rdmabench.cli", "serve", "--bind", lab_env["ip"],
                             "--port", str(port), "--root", str(serve_root)], stderr=subprocess.PIPE, text=True)
    t = transports.get(name)
    try:
        assert "listening on" in proc.stderr.readline()
        t.prepare(Context(storage_root=serve_root / "storage", work_root=tmp_path / "dst", bind=lab_env["ip"],
                          peer=lab_env["ip"], options={"device": lab_env["device"], "gid_index": lab_env["gid_index"],
                                                       "chunk": CHUNK, "inflight": INFLIGHT, "timeout_ms": 3000,
                                                       "port": port, "streams": streams}))
        landing = serve_root / "work" if mode == "write" else tmp_path / "dst"

        def kill_once_bytes_land():  # mid-transfer for sure, however fast the lab is today
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if any(p.is_file() and p.stat().st_size > 0 for p in landing.rglob("*")):
                    break
                time.sleep(0.002)
            proc.kill()
            killed_at.append(time.monotonic())

        killed_at: list[float] = []
        killer = threading.Thread(target=kill_once_bytes_land)
        killer.start()
        with pytest.raises(TransportError, match=rf"{name}: unsealed/s-t01000-7 failed: .+"):
            t.move(item)
        elapsed = time.monotonic() - killed_at[0]
        killer.join()
    finally:
        proc.kill()
        proc.wait()
        t.teardown()
    assert proc.returncode == -9, "the passive end ended before it was killed: the transfer was not cut"
    assert elapsed < 3.0 + 3.0, f"the active end took {elapsed:.1f} s after the kill to notice (timeout 3 s)"
    assert leftovers(tmp_path / "dst") == []
    assert integrity.digest_file(item.source) == item.digest


@pytest.mark.parametrize("name, request_", [
    ("rdma-write", {"type": "put", "kind": "file", "lotus_type": "../../../tmp", "id": "s-t01000-1", "size": 1,
                    "digest": None, "files": [["s-t01000-1", 1, None]]}),
    ("rdma-write", {"type": "put", "kind": "dir", "lotus_type": "cache", "id": "s-t01000-1", "size": 1,
                    "digest": None, "files": [["../../escape", 1, None]]}),
    ("rdma-write", {"type": "put", "kind": "blob", "lotus_type": "c1", "id": "s-t01000-1", "size": 1 << 40,
                    "digest": None, "files": []}),
    ("rdma-read", {"type": "get", "lotus_type": "sealed", "id": "/etc/passwd"}),
    ("rdma-read", {"type": "get", "lotus_type": "sealed"}),
    ("rdma-read", {"type": "generate", "sector_size": "32GiB", "stage": "pc1", "scale": "1", "root": "/"}),
])
def test_passive_end_refuses_hostile_requests_past_the_handshake(lab_env, tmp_path, name, request_):
    """An authenticated peer with a connected QP still cannot leave the root, exhaust memory or crash the end."""
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched")
    t = transports.get(name)
    t.prepare(ctx_for(lab_env, tmp_path / "src", tmp_path / "dst"))  # its own passive end, in this process
    try:
        t.wire.send_msg(request_)
        reply = t.wire.recv(30)
        assert reply["ok"] is False and reply["error"], reply
        t._drop()
        t._connect()  # the same passive end takes the next session: handshake, open, QP connected
        assert t.wire is not None and t.ep is not None
    finally:
        t.teardown()
    assert outside.read_text() == "untouched"
    assert set(os.listdir(tmp_path)) <= {"outside.txt", "src", "dst"}
    assert not list(tmp_path.rglob("*escape*"))
