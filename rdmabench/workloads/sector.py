"""Sector shapes: the files Lotus has for one sector at each stage, with their real names and sizes.

Sizes come from docs/lotus.md (computed there from rust-fil-proofs constants):

    stage      sealed  cache
    pc1        yes     layers (sc-02-data-layer-1..L.dat) + tree-d           (what PC1 -> PC2 moves)
    pc2        yes     layers + tree-d + tree-c(s) + tree-r-last(s) + p_aux + t_aux
    finalized  yes     tree-r-last(s) + p_aux + t_aux                         (what Finalize moves)

Layout on disk exactly as Lotus: ``<root>/sealed/s-t0<miner>-<n>`` and
``<root>/cache/s-t0<miner>-<n>/<files>``.

``scale`` (e.g. 1/1024) shrinks every data file proportionally (each at least 1 byte) and keeps
the layout: same names, same file count. ``p_aux`` and ``t_aux`` keep their real sizes (they are
metadata of a few hundred bytes to ~2 KB). t_aux is "~1-2 KB" in lotus.md; we use 1,536 bytes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from .. import integrity
from ..errors import RdmabenchError
from ..units import format_size, parse_size
from . import pattern
from .item import Item

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
STAGES = ("pc1", "pc2", "finalized")
P_AUX = 64
T_AUX = 1536  # lotus.md: "~1-2 KB"; not fixed by the proofs constants


@dataclass(frozen=True)
class _Geometry:
    layers: int
    tree_d: int
    tree_c: tuple[int, int]       # (count, size each)
    tree_r_last: tuple[int, int]  # (count, size each)
    proof: str                    # registered seal proof name (for the C1 blob)


# lotus.md "Sector file layout" table, byte for byte.
GEOMETRY: dict[int, _Geometry] = {
    2 * KiB: _Geometry(2, 4_064, (1, 2_336), (1, 32), "StackedDrg2KiBV1_1"),
    8 * MiB: _Geometry(2, 16_777_184, (1, 9_586_976), (1, 18_720), "StackedDrg8MiBV1_1"),
    512 * MiB: _Geometry(2, 1_073_741_792, (1, 613_566_752), (1, 1_198_368), "StackedDrg512MiBV1_1"),
    32 * GiB: _Geometry(11, 68_719_476_704, (8, 4_908_534_048), (8, 9_586_976), "StackedDrg32GiBV1_1"),
    64 * GiB: _Geometry(11, 137_438_953_440, (16, 4_908_534_048), (16, 9_586_976), "StackedDrg64GiBV1_1"),
}
SECTOR_SIZES = tuple(GEOMETRY)


class WorkloadError(RdmabenchError):
    pass


def sector_id(miner: int, number: int) -> str:
    """Lotus's sector file name: miner 1000, number 1 -> ``s-t01000-1``."""
    return f"s-t0{miner}-{number}"


def parse_sector_size(value: str | int) -> int:
    try:
        size = parse_size(value)
    except ValueError as err:
        raise WorkloadError(str(err)) from None
    if size not in GEOMETRY:
        raise WorkloadError(f"sector size {value!r} is not one Lotus seals; use one of "
                            + ", ".join(format_size(s).replace(" ", "") for s in SECTOR_SIZES))
    return size


def parse_scale(value: str | int | float) -> Fraction:
    """1, 0.001, "1/1024" -> a Fraction in (0, 1]."""
    try:
        scale = Fraction(value) if not isinstance(value, float) else Fraction(value).limit_denominator(1 << 40)
    except (ValueError, ZeroDivisionError, TypeError):
        raise WorkloadError(f"scale {value!r} is not a number (write 0.001 or \"1/1024\")") from None
    if not 0 < scale <= 1:
        raise WorkloadError(f"scale {value!r} must be in (0, 1]")
    return scale


def _scaled(size: int, scale: Fraction) -> int:
    return max(1, int(size * scale)) if scale != 1 else size


@dataclass(frozen=True)
class SectorFile:
    lotus_type: str  # sealed | cache
    name: str        # file name (the sector id for the sealed file)
    size: int

    def rel(self, sid: str) -> str:
        return f"sealed/{sid}" if self.lotus_type == "sealed" else f"cache/{sid}/{self.name}"


@dataclass(frozen=True)
class SectorShape:
    sector_size: int
    stage: str
    miner: int = 1000
    number: int = 1
    scale: Fraction = Fraction(1)
    files: tuple[SectorFile, ...] = field(default=())

    @property
    def sector_id(self) -> str:
        return sector_id(self.miner, self.number)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def sealed_bytes(self) -> int:
        return sum(f.size for f in self.files if f.lotus_type == "sealed")

    @property
    def cache_bytes(self) -> int:
        return sum(f.size for f in self.files if f.lotus_type == "cache")

    @property
    def cache_files(self) -> list[SectorFile]:
        return [f for f in self.files if f.lotus_type == "cache"]

    def paths(self, root: Path) -> dict[str, Path]:
        """{"sealed": <root>/sealed/<id>, "cache": <root>/cache/<id>}"""
        return {"sealed": Path(root) / "sealed" / self.sector_id, "cache": Path(root) / "cache" / self.sector_id}

    def label(self) -> str:
        s = format_size(self.sector_size).replace(" ", "")
        return s if self.scale == 1 else f"{s}@{self.scale}"

    def describe(self) -> dict:
        return {"sector_size": self.sector_size, "stage": self.stage, "sector_id": self.sector_id,
                "scale": str(self.scale), "files": len(self.files), "total_bytes": self.total_bytes,
                "sealed_bytes": self.sealed_bytes, "cache_bytes": self.cache_bytes}


def shape(sector_size: int | str, stage: str, *, miner: int = 1000, number: int = 1,
          scale: str | float | Fraction = 1) -> SectorShape:
    """The files of one sector at ``stage`` (pc1 | pc2 | finalized), sizes scaled by ``scale``."""
    size = parse_sector_size(sector_size)
    scale = parse_scale(scale)
    if stage not in STAGES:
        raise WorkloadError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    g = GEOMETRY[size]
    small = size <= 512 * MiB  # unsplit tree names

    def split(kind: str, count_size: tuple[int, int]) -> list[SectorFile]:
        count, each = count_size
        if small:
            return [SectorFile("cache", f"sc-02-data-{kind}.dat", _scaled(each, scale))]
        return [SectorFile("cache", f"sc-02-data-{kind}-{i}.dat", _scaled(each, scale)) for i in range(count)]

    layers = [SectorFile("cache", f"sc-02-data-layer-{i}.dat", _scaled(size, scale)) for i in range(1, g.layers + 1)]
    tree_d = [SectorFile("cache", "sc-02-data-tree-d.dat", _scaled(g.tree_d, scale))]
    aux = [SectorFile("cache", "p_aux", P_AUX), SectorFile("cache", "t_aux", T_AUX)]
    cache = {
        "pc1": layers + tree_d,
        "pc2": layers + tree_d + split("tree-c", g.tree_c) + split("tree-r-last", g.tree_r_last) + aux,
        "finalized": split("tree-r-last", g.tree_r_last) + aux,
    }[stage]
    files = [SectorFile("sealed", sector_id(miner, number), _scaled(size, scale))] + sorted(cache, key=lambda f: f.name)
    return SectorShape(size, stage, miner, number, scale, tuple(files))


# ---- generation, reused between runs -------------------------------------------------------------

MANIFEST = ".rdmabench-manifest.json"


@dataclass(frozen=True)
class Generated:
    """A sector on disk: its shape, where it is, and the digests a receiver checks against."""

    shape: SectorShape
    root: Path
    file_digests: dict[str, str]  # rel path -> digest
    sealed_digest: str
    cache_digest: str

    @property
    def sealed_path(self) -> Path:
        return self.shape.paths(self.root)["sealed"]

    @property
    def cache_path(self) -> Path:
        return self.shape.paths(self.root)["cache"]


def _load_manifest(root: Path) -> dict:
    try:
        data = json.loads((root / MANIFEST).read_text())
        return data if data.get("version") == 1 else {"version": 1, "files": {}}
    except (OSError, ValueError):
        return {"version": 1, "files": {}}


def _save_manifest(root: Path, manifest: dict) -> None:
    tmp = root / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, root / MANIFEST)


def generate(sector: SectorShape, root: Path | str, *, rehash: bool = False) -> Generated:
    """Write ``sector``'s files under ``root`` (Lotus layout), reusing what is already right.

    A manifest at ``<root>/.rdmabench-manifest.json`` keeps each file's size, mtime and digest. A file
    whose size and mtime match its entry is reused without being read (``rehash=True`` reads and
    checks it); anything missing or different is written again (temporary name, then rename).
    Cache files that are not part of the shape (left by another stage) are removed, so the cache
    directory holds exactly the stage's files.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    need = sum(f.size for f in sector.files if not _reusable(root, sector, f, _load_manifest(root), False))
    integrity.check_free_space(root, need)
    manifest = _load_manifest(root)
    sid = sector.sector_id
    digests: dict[str, str] = {}
    for f in sector.files:
        rel = f.rel(sid)
        path = root / rel
        if _reusable(root, sector, f, manifest, rehash):
            digests[rel] = manifest["files"][rel]["digest"]
            continue
        digests[rel] = pattern.write_file(path, rel, f.size)
        st = path.stat()
        manifest["files"][rel] = {"size": f.size, "mtime_ns": st.st_mtime_ns, "digest": digests[rel]}
        _save_manifest(root, manifest)
    cache_dir = root / "cache" / sid
    wanted = {f.name for f in sector.cache_files}
    for entry in list(cache_dir.iterdir()):
        if entry.name not in wanted:
            integrity._remove(entry)
            manifest["files"].pop(f"cache/{sid}/{entry.name}", None)
    _save_manifest(root, manifest)
    cache_digest = integrity.combine([(f.name, f.size, digests[f.rel(sid)]) for f in sector.cache_files])
    return Generated(sector, root, digests, digests[f"sealed/{sid}"], cache_digest)


def _reusable(root: Path, sector: SectorShape, f: SectorFile, manifest: dict, rehash: bool) -> bool:
    rel = f.rel(sector.sector_id)
    entry = manifest["files"].get(rel)
    try:
        st = (root / rel).stat()
    except OSError:
        return False
    if not entry or entry.get("size") != f.size or st.st_size != f.size:
        return False
    if rehash:
        return integrity.digest_file(root / rel) == entry.get("digest")
    return st.st_mtime_ns == entry.get("mtime_ns")


def items(gen: Generated, dest_root: Path | str):
    """The transport items of a generated sector: the sealed file, then the cache directory."""
    dest_root = Path(dest_root)
    s, sid = gen.shape, gen.shape.sector_id
    return [
        Item(kind="file", lotus_type="sealed", sector_id=sid, source=gen.sealed_path,
             destination=dest_root / "sealed" / sid, size=s.sealed_bytes, digest=gen.sealed_digest),
        Item(kind="dir", lotus_type="cache", sector_id=sid, source=gen.cache_path,
             destination=dest_root / "cache" / sid, size=s.cache_bytes, digest=gen.cache_digest),
    ]
