"""Sector shapes against lotus.md's table (computed, never generated at full size), scaled generation, content."""

import json
from fractions import Fraction

import pytest

from rdmabench import integrity
from rdmabench.workloads import c1, pattern, sector

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

# lotus.md, "Sector file layout": sealed, cache after PC1, cache after Finalize without t_aux
TABLE = {
    2 * KiB: (2_048, 8_160, 96),
    8 * MiB: (8_388_608, 33_554_400, 18_784),
    512 * MiB: (536_870_912, 2_147_483_616, 1_198_432),
    32 * GiB: (34_359_738_368, 446_676_598_752, 76_695_872),
    64 * GiB: (68_719_476_736, 893_353_197_536, 153_391_680),
}


@pytest.mark.parametrize("size", list(TABLE))
def test_real_sizes_match_lotus_table(size):
    sealed, pc1_cache, fin_cache = TABLE[size]
    pc1 = sector.shape(size, "pc1")
    assert pc1.sealed_bytes == sealed
    assert pc1.cache_bytes == pc1_cache
    fin = sector.shape(size, "finalized")
    assert fin.sealed_bytes == sealed
    assert fin.cache_bytes - sector.T_AUX == fin_cache
    names = {f.name for f in fin.cache_files}
    assert {"p_aux", "t_aux"} <= names
    pc2 = sector.shape(size, "pc2")
    assert {f.name for f in pc1.cache_files} | names < {f.name for f in pc2.cache_files}


def test_pc1_to_pc2_is_448_gib_for_32g():
    assert sector.shape("32GiB", "pc1").total_bytes == 481_036_337_120


def test_32g_names_and_counts():
    pc2 = sector.shape("32GiB", "pc2", miner=1234, number=7)
    names = [f.name for f in pc2.cache_files]
    assert pc2.sector_id == "s-t01234-7"
    assert sum(n.startswith("sc-02-data-layer-") for n in names) == 11
    assert [n for n in names if "tree-c" in n] == [f"sc-02-data-tree-c-{i}.dat" for i in range(8)]
    assert [n for n in names if "tree-r-last" in n] == [f"sc-02-data-tree-r-last-{i}.dat" for i in range(8)]
    assert len([n for n in names if "tree-c" in n]) == 8
    sm = [f.name for f in sector.shape("8MiB", "pc2").cache_files]
    assert "sc-02-data-tree-c.dat" in sm and "sc-02-data-tree-r-last.dat" in sm
    assert len([n for n in [f.name for f in sector.shape("64GiB", "pc2").cache_files] if "tree-c" in n]) == 16


def test_scaled_keeps_layout():
    real = sector.shape("32GiB", "pc2")
    small = sector.shape("32GiB", "pc2", scale="1/1048576")
    assert [f.name for f in small.files] == [f.name for f in real.files]
    for a, b in zip(real.files, small.files):
        if a.name in ("p_aux", "t_aux"):
            assert a.size == b.size
        else:
            assert b.size == max(1, a.size // 1048576)
    assert all(f.size >= 1 for f in sector.shape("2KiB", "pc2", scale=1e-9).files)


@pytest.mark.parametrize("bad,msg", [("3GiB", "not one Lotus seals"), ("lots", "not a size")])
def test_bad_sector_size(bad, msg):
    with pytest.raises(sector.WorkloadError, match=msg):
        sector.shape(bad, "pc1")


def test_bad_scale_and_stage():
    with pytest.raises(sector.WorkloadError, match=r"\(0, 1\]"):
        sector.shape("8MiB", "pc1", scale=2)
    with pytest.raises(sector.WorkloadError, match="unknown stage"):
        sector.shape("8MiB", "pc3")
    assert sector.parse_scale("1/1024") == Fraction(1, 1024)
    assert sector.parse_scale(0.5) == Fraction(1, 2)


def test_generate_lotus_layout_and_reuse(tmp_path):
    sh = sector.shape("32GiB", "pc1", scale="1/65536")
    gen = sector.generate(sh, tmp_path)
    sid = sh.sector_id
    assert (tmp_path / "sealed" / sid).stat().st_size == sh.sealed_bytes
    cache = tmp_path / "cache" / sid
    assert sorted(p.name for p in cache.iterdir()) == sorted(f.name for f in sh.cache_files)
    assert integrity.digest(cache) == gen.cache_digest
    assert integrity.digest(tmp_path / "sealed" / sid) == gen.sealed_digest
    # reuse: nothing rewritten; a damaged file is rewritten
    layer = cache / "sc-02-data-layer-3.dat"
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    again = sector.generate(sh, tmp_path)
    assert again.cache_digest == gen.cache_digest
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == before
    layer.write_bytes(b"x" * 10)
    fixed = sector.generate(sh, tmp_path)
    assert fixed.cache_digest == gen.cache_digest and layer.stat().st_size == sh.cache_files[2].size
    manifest = json.loads((tmp_path / sector.MANIFEST).read_text())
    assert f"cache/{sid}/sc-02-data-layer-3.dat" in manifest["files"]
    # a later stage in the same root leaves exactly that stage's files
    fin = sector.generate(sector.shape("32GiB", "finalized", scale="1/65536"), tmp_path)
    assert sorted(p.name for p in cache.iterdir()) == sorted(f.name for f in fin.shape.cache_files)
    assert not list(tmp_path.rglob(".*.gen-*"))


def test_items(tmp_path):
    gen = sector.generate(sector.shape("2KiB", "pc1"), tmp_path / "src")
    file_item, dir_item = sector.items(gen, tmp_path / "dst")
    assert file_item.kind == "file" and file_item.destination == tmp_path / "dst/sealed/s-t01000-1"
    assert dir_item.kind == "dir" and dir_item.size == 8160 and dir_item.digest == gen.cache_digest


def test_pattern_deterministic_and_distinct(tmp_path):
    a = pattern.block("cache/s-t01000-1/x", 0)
    assert a == pattern.block("cache/s-t01000-1/x", 0) and len(a) == pattern.BLOCK
    assert a != pattern.block("cache/s-t01000-1/x", 1)
    assert a != pattern.block("cache/s-t01000-2/x", 0)
    d = pattern.write_file(tmp_path / "f", "name", 3 * pattern.BLOCK + 5)
    data = (tmp_path / "f").read_bytes()
    assert data[pattern.BLOCK - 3:pattern.BLOCK + 7] == pattern.expected("name", pattern.BLOCK - 3, 10)
    assert d == integrity.digest_file(tmp_path / "f")
    assert pattern.write_file(tmp_path / "g", "name", 3 * pattern.BLOCK + 5) == d


@pytest.mark.parametrize("size", list(c1.C1_BYTES))
def test_c1_blob(size):
    if size >= 32 * GiB:
        blob = c1.c1_output(size)
        assert len(blob) == c1.C1_BYTES[size]
        return
    blob = c1.c1_output(size, miner=1000, number=3)
    assert blob == c1.c1_output(size, miner=1000, number=3)
    assert blob != c1.c1_output(size, miner=1000, number=4)
    c1.check(blob, size)
    assert json.loads(blob)["registered_proof"].startswith("StackedDrg")


def test_c1_sizes_are_lotus_figures():
    assert c1.c1_size("32GiB") == 38_700_000
    assert round(c1.c1_size("32GiB") * 4 / 3 / 1e6, 1) == 51.6


def test_c1_item():
    it = c1.item("2KiB", 1000, 2)
    assert it.kind == "blob" and it.size == 100_000 and it.data == c1.c1_output("2KiB", 1000, 2)
    assert it.sector_id == "s-t01000-2" and len(it.digest) == 32


def test_workloads_know_no_transport():
    """Imports point down: the workloads (and the Item they hand out) load without any transport."""
    import subprocess
    import sys

    code = ("import sys, rdmabench.workloads.sector, rdmabench.workloads.c1; "
            "rdmabench.workloads.c1.item('2KiB'); "
            "print([m for m in sys.modules if m.startswith(('rdmabench.transports', 'rdmabench.transfer'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
