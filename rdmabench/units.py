"""Sizes as people write them: 4096, 64K, 64KiB, 1M, 8MiB, 2G (binary multiples)."""

from __future__ import annotations

import re

_MULT = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*$", re.I)


def parse_size(text: str | int) -> int:
    """Bytes in a size string; ValueError saying what is accepted otherwise."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a size: use bytes or a number with K, M, G or T (binary: 64K = 65536)")
    return int(m.group(1)) * _MULT[m.group(2).upper()]


def format_size(n: int) -> str:
    for unit, mult in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= mult and n % mult == 0:
            return f"{n // mult} {unit}"
    return f"{n} B"
