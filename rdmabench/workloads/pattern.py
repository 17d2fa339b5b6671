"""Deterministic file content, seeded by the file's name and the offset.

Each file has a 1 MiB base block drawn from SHAKE-128 of its name (computed once,
then cached). Block ``i`` of the file is that base block rotated by an amount
derived from the name and ``i``, with its first 16 bytes overwritten by
``(i, name hash)``: every 1 MiB block of every file differs, any block can be
recomputed from (name, index) alone, and producing one costs a memcpy, so
gigabytes are generated at memory speed (the disk is the limit). No numpy.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
from pathlib import Path

import xxhash

BLOCK = 1 << 20  # generated, written and hashed 1 MiB at a time
_STAMP = struct.Struct("<QQ")


@functools.lru_cache(maxsize=64)
def _base(name: str) -> tuple[bytes, int]:
    seed = hashlib.shake_128(b"rdmabench-pattern-v1\0" + name.encode()).digest(BLOCK)
    return seed, xxhash.xxh64_intdigest(name.encode())


def block_into(buf: bytearray | memoryview, name: str, index: int) -> None:
    """Write block ``index`` of file ``name`` into ``buf`` (exactly BLOCK bytes long)."""
    base, tag = _base(name)
    r = ((index * 0x9E3779B97F4A7C15) ^ tag) % BLOCK
    mv = memoryview(buf)
    mv[: BLOCK - r] = base[r:]
    mv[BLOCK - r:] = base[:r]
    _STAMP.pack_into(mv, 0, index, tag)


def block(name: str, index: int) -> bytes:
    buf = bytearray(BLOCK)
    block_into(buf, name, index)
    return bytes(buf)


def expected(name: str, offset: int, length: int) -> bytes:
    """The ``length`` bytes of file ``name`` starting at ``offset`` (for spot checks on the receiver)."""
    out = bytearray()
    first, last = offset // BLOCK, (offset + length - 1) // BLOCK if length else offset // BLOCK - 1
    for i in range(first, last + 1):
        out += block(name, i)
    start = offset - first * BLOCK
    return bytes(out[start:start + length])


def write_file(path: Path, name: str, size: int) -> str:
    """Write ``size`` bytes of ``name``'s pattern to ``path`` (a temporary name beside it, then rename).

    Returns the content's xxh3-128 hex digest (the same as integrity.digest_file), computed as it is written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.gen-{os.getpid()}")
    h = xxhash.xxh3_128()
    buf = bytearray(BLOCK)
    mv = memoryview(buf)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        done, index = 0, 0
        while done < size:
            n = min(BLOCK, size - done)
            block_into(buf, name, index)
            chunk = mv[:n]
            h.update(chunk)
            while chunk:
                chunk = chunk[os.write(fd, chunk):]
            done += n
            index += 1
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return h.hexdigest()
