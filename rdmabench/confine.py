"""Paths that come off the wire: Lotus's names only, resolved under one of this host's roots.

A peer names an item by its Lotus type and sector id (``cache`` / ``s-t01000-1``) and a directory's
files by bare names. Each part is checked for what Lotus can produce, then the joined path is
resolved, symlinks followed, and refused unless it still lies under the root: a symlink planted in
the root that points out of it is refused like ``../`` is. Every error names the field.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import RdmabenchError

LOTUS_TYPES = ("unsealed", "sealed", "cache", "update", "update-cache", "piece", "c1")
_SECTOR_ID = re.compile(r"\As-t0([0-9]{1,20})-([0-9]{1,20})\Z")  # \Z: no trailing newline; ASCII digits only
_FILE_NAME = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}\Z")


class PathRefused(RdmabenchError):
    """A name or path from a peer that is not one this host will touch."""


def lotus_type(value, field: str = "lotus_type") -> str:
    if value not in LOTUS_TYPES:
        raise PathRefused(f"{field}: {str(value)[:80]!r} is not a Lotus file type ({', '.join(LOTUS_TYPES)})")
    return value


def sector_id(value, field: str = "sector_id") -> str:
    """``s-t0<miner>-<number>``, Lotus's sector file name, and nothing else."""
    if not isinstance(value, str) or not _SECTOR_ID.match(value):
        raise PathRefused(f"{field}: {str(value)[:80]!r} is not a sector id (s-t0<miner>-<number>)")
    return value


def sector_numbers(value, field: str = "sector_id") -> tuple[int, int]:
    miner, number = _SECTOR_ID.match(sector_id(value, field)).groups()
    return int(miner), int(number)


def file_name(value, field: str = "file name") -> str:
    """One file of a cache directory: a bare name (no separator, not hidden, not . or ..)."""
    if not isinstance(value, str) or not _FILE_NAME.match(value) or value in (".", ".."):
        raise PathRefused(f"{field}: {str(value)[:80]!r} is not a plain file name")
    return value


def under(root: Path | str, *parts: str, field: str = "path") -> Path:
    """``root/parts...`` with symlinks resolved; PathRefused unless it stays inside ``root``."""
    base = Path(root).resolve()
    for part in parts:
        if not part or "/" in part or "\0" in part or part in (".", ".."):
            raise PathRefused(f"{field}: {part[:80]!r} is not a single path component")
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        raise PathRefused(f"{field}: {'/'.join(parts)[:160]} leads out of {base} (to {path})")
    return path


def item_path(root: Path | str, ltype, sid) -> Path:
    """Where an item lives under ``root``: ``<root>/<lotus type>/<sector id>``, checked and confined."""
    return under(root, lotus_type(ltype), sector_id(sid), field=f"{ltype}/{sid}")
