"""The rdma file engine's knobs on one guest: several QPs per file (streams), several files of a cache
directory at once (parallel), digests taken in the stream and checked against the generator's, a chunk
corrupted on the wire, O_DIRECT, a re-read verification, and every record saying which of them ran."""

import os
import subprocess

import pytest

from rdmabench import integrity, transports
from rdmabench.transports.base import Context, Item, TransportError
from rdmabench.workloads import pattern, sector

CHUNK = 64 << 10
BOTH = ["rdma-write", "rdma-read"]


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    return sector.generate(sector.shape("32GiB", "pc1", scale="1/65536"), tmp_path_factory.mktemp("src"))


def open_t(lab_env, name, src, dst, **options):
    t = transports.get(name)
    t.prepare(Context(storage_root=src, work_root=dst, bind=lab_env["ip"],
                      options={"device": lab_env["device"], "gid_index": lab_env["gid_index"], "chunk": CHUNK,
                               "inflight": 4, "timeout_ms": 10000, **options}))
    return t


def leftovers(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize("name", BOTH)
@pytest.mark.parametrize("streams, parallel", [(3, 1), (1, 4), (2, 3)])
def test_streams_and_parallel_move_a_sector_intact(lab_env, gen, tmp_path, name, streams, parallel):
    dst = tmp_path / "dst"
    t = open_t(lab_env, name, gen.root, dst, streams=streams, parallel=parallel)
    try:
        recs = [t.move(item) for item in sector.items(gen, dst)]
        assert t.registered_bytes == CHUNK * 4 * streams  # chunk x inflight x streams, whatever the sizes
    finally:
        t.teardown()
    sid = gen.shape.sector_id
    assert all(r.verified for r in recs), recs
    assert [r.digest for r in recs] == [gen.sealed_digest, gen.cache_digest]  # the generator's digests
    assert integrity.digest(dst / "cache" / sid) == gen.cache_digest
    assert leftovers(dst) == sorted(f.rel(sid) for f in gen.shape.files)
    for r in recs:
        assert (r.extra["streams"], r.extra["parallel"], r.extra["verification"], r.extra["direct"]) == \
            (streams, parallel, "stream", False)


def big_item(tmp_path, size, lotus_type="unsealed"):
    path = tmp_path / "src" / lotus_type / "s-t01000-7"
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = pattern.write_file(path, "big", size)
    return Item(kind="file", lotus_type=lotus_type, sector_id="s-t01000-7", source=path,
                destination=tmp_path / "dst" / lotus_type / "s-t01000-7", size=size, digest=digest)


@pytest.mark.parametrize("name", BOTH)
@pytest.mark.parametrize("streams", [1, 3])
def test_a_chunk_corrupted_on_the_wire_is_caught_and_nothing_lands(lab_env, tmp_path, name, streams):
    item = big_item(tmp_path, 40 * CHUNK + 99)
    hook = "corrupt_at" if name == "rdma-write" else "passive_corrupt_at"  # the source's: active or passive end
    t = open_t(lab_env, name, tmp_path / "src", tmp_path / "dst", streams=streams, **{hook: 17})
    try:
        rec = t.move(item)
    finally:
        t.teardown()
    assert not rec.verified
    assert leftovers(tmp_path / "dst") == []
    assert integrity.digest_file(item.source) == item.digest


@pytest.mark.parametrize("name", BOTH)
def test_without_an_expected_digest_the_source_stream_digest_decides(lab_env, tmp_path, name):
    item = big_item(tmp_path, 9 * CHUNK + 5)
    item = Item(**{**item.__dict__, "digest": None})
    t = open_t(lab_env, name, tmp_path / "src", tmp_path / "dst", streams=2)
    try:
        rec = t.move(item)
    finally:
        t.teardown()
    assert rec.verified and rec.digest == integrity.digest_file(item.source)


@pytest.fixture
def disk_fs(tmp_path):
    """A real disk file system (ext4 on a loop device): O_DIRECT works there, not on the guest's tmpfs."""
    img, mnt = tmp_path / "disk.img", tmp_path / "disk"
    subprocess.run(["modprobe", "loop"], check=True)  # the guest's kernel has loop as a module
    subprocess.run(["truncate", "-s", "64M", str(img)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True)
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.parametrize("name", BOTH)
def test_direct_io_and_reread_verification(lab_env, disk_fs, name):
    item = big_item(disk_fs, 21 * CHUNK + 4097)  # a tail that is not whole 4 KiB blocks
    t = open_t(lab_env, name, disk_fs / "src", disk_fs / "dst", direct=True, verify="reread", streams=2)
    try:
        rec = t.move(item)
    finally:
        t.teardown()
    assert rec.verified
    assert (rec.extra["direct"], rec.extra["verification"]) == (True, "stream+reread")
    assert integrity.digest_file(item.destination) == item.digest
    assert item.destination.stat().st_size == item.size


def test_direct_io_on_a_file_system_that_refuses_it_is_a_clear_error(lab_env, tmp_path):
    tmpfs = tmp_path / "t"  # ramfs: no direct I/O on any kernel (tmpfs has it since Linux 6.6)
    tmpfs.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "ramfs", str(tmpfs)], check=True)
    try:
        item = big_item(tmpfs, 3 * CHUNK)
        t = open_t(lab_env, "rdma-write", tmpfs / "src", tmpfs / "dst", direct=True)
        try:
            with pytest.raises(TransportError, match="refuses O_DIRECT"):
                t.move(item)
        finally:
            t.teardown()
        assert leftovers(tmpfs / "dst") == []
    finally:
        subprocess.run(["umount", str(tmpfs)], check=False)


def test_streams_with_a_failing_peer_stop_at_once(lab_env, tmp_path):
    item = big_item(tmp_path, 64 * CHUNK)
    t = open_t(lab_env, "rdma-write", tmp_path / "src", tmp_path / "dst", streams=3, passive_abort_after=11)
    try:
        with pytest.raises(TransportError, match="abort"):
            t.move(item)
    finally:
        t.teardown()
    assert leftovers(tmp_path / "dst") == []
    assert os.path.exists(item.source)
