"""`rdmabench pipeline`, the null wire, on this host: the rdma transports' file pipeline (native/pipeline.c)
with the network taken out, beside dd, on real files; and the cold option's page dropping."""

import json
import os
import subprocess

import pytest
import xxhash
from click.testing import CliRunner

from rdmabench import _native, integrity
from rdmabench.cli import cli
from rdmabench.pipeline import PipelineError, run_pipeline, to_result
from rdmabench.workloads import pattern


def test_the_null_wire_copies_every_size_intact_with_both_digests(tmp_path):
    sizes = [0, 1, 4095, 4096, 1 << 20, (1 << 20) + 7, 3 * (1 << 20) + 12345]
    src, dst = [], []
    for i, size in enumerate(sizes):
        (tmp_path / f"s{i}").write_bytes(os.urandom(size))
        src.append((os.open(tmp_path / f"s{i}", os.O_RDONLY), size))
        dst.append((os.open(tmp_path / f"d{i}", os.O_WRONLY | os.O_CREAT, 0o644), size))
    try:
        for parallel, chunk, slots in ((1, 4096, 1), (3, 1 << 20, 16), (64, 65536, 3)):
            r = _native.fx_null(src, dst, chunk=chunk, slots=slots, parallel=parallel)
            want = [xxhash.xxh3_128((tmp_path / f"s{i}").read_bytes()).hexdigest() for i in range(len(sizes))]
            assert r["src_digests"] == want == r["dst_digests"]
            assert [integrity.digest_file(tmp_path / f"d{i}") for i in range(len(sizes))] == want
            assert r["bytes"] == sum(sizes)
    finally:
        for fd, _ in src + dst:
            os.close(fd)


def test_a_source_shorter_than_announced_is_an_error(tmp_path):
    (tmp_path / "s").write_bytes(b"x" * 5000)
    fi, fo = os.open(tmp_path / "s", os.O_RDONLY), os.open(tmp_path / "d", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(OSError, match="shorter than announced"):
            _native.fx_null([(fi, 9000)], [(fo, 9000)], chunk=4096, slots=2)
    finally:
        os.close(fi)
        os.close(fo)


def test_pipeline_against_dd_reports_both_and_verifies_ours(tmp_path):
    size = (8 << 20) + 12345  # a tail that is not whole blocks
    r = run_pipeline(size, 2, tmp_path, chunk=256 << 10, slots=4)
    assert r["ratio"] == r["rdmabench"]["median_gbytes_per_s"] / r["dd"]["median_gbytes_per_s"]
    assert len(r["rdmabench"]["runs"]) == len(r["dd"]["runs"]) == 2
    assert all(run["cpu_s"] > 0 for run in r["rdmabench"]["runs"])
    rows = to_result(r).rows
    assert [(x["measured"]["tool"], x["detail"]["verified"]) for x in rows] == \
        [("rdmabench pipeline", True)] * 2 + [("dd bs=1M", False)] * 2
    assert list(tmp_path.iterdir()) == []  # the source and every copy removed


def test_direct_and_cold_on_a_disk_file_system(tmp_path):
    r = run_pipeline(4 << 20, 1, tmp_path, chunk=1 << 20, slots=2, direct=True, cold=True)
    assert r["direct"] and r["cold"] and r["rdmabench"]["median_gbytes_per_s"] > 0


@pytest.fixture
def ramfs(tmp_path):
    """ramfs has no direct I/O on any kernel (tmpfs gained it in Linux 6.6)."""
    mnt = tmp_path / "ram"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_direct_where_the_file_system_refuses_it_is_a_clear_error(ramfs):
    with pytest.raises(PipelineError, match="refuses O_DIRECT"):
        run_pipeline(1 << 20, 1, ramfs, direct=True)
    assert list(ramfs.iterdir()) == []


def test_dropped_pages_are_no_longer_cached(tmp_path):
    path = tmp_path / "f"
    pattern.write_file(path, "f", 8 << 20)
    path.read_bytes()

    def resident() -> int:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                             capture_output=True, text=True, check=True).stdout
        return int(out.strip())

    assert resident() > 0
    integrity.drop_cached_pages(tmp_path)  # a directory: its top-level files
    assert resident() == 0


def test_the_command_prints_both_tools_and_writes_a_result(tmp_path):
    out = tmp_path / "p.json"
    done = CliRunner().invoke(cli, ["pipeline", "--size", "4M", "--repetitions", "1", "--dir", str(tmp_path),
                                    "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert "rdmabench pipeline" in done.output and "dd bs=1M" in done.output and "ratio" in done.output
    result = json.loads(out.read_text())
    assert result["kind"] == "baseline" and result["options"]["what"] == "pipeline"
