"""One thing to move, as the workloads describe it and every transport takes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..confine import LOTUS_TYPES

KINDS = ("file", "dir", "blob")


@dataclass(frozen=True)
class Item:
    """One thing to move: a sealed file, a cache directory, or a blob (the C1 output)."""

    kind: str            # file | dir | blob
    lotus_type: str      # sealed | cache | unsealed | ... | c1
    sector_id: str       # s-t0<miner>-<n>
    source: Path | None  # where it is (None for a blob held in memory)
    destination: Path | None  # where it must end up (None for a blob: the receiver keeps it in memory)
    size: int            # bytes of content (a directory: its top-level files summed)
    digest: str | None = None  # integrity digest the receiver checks (integrity.digest / digest_file)
    data: bytes | None = field(default=None, repr=False, compare=False)  # a blob's bytes
    sector_size: int | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"item kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.lotus_type not in LOTUS_TYPES:
            raise ValueError(f"lotus type {self.lotus_type!r} is not one of {', '.join(LOTUS_TYPES)}")

    @property
    def label(self) -> str:
        """``<lotus_type>/<sector_id>``, the name a record and a receiver's report give the item."""
        return f"{self.lotus_type}/{self.sector_id}"
