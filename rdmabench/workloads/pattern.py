"""rdmabench's one payload pattern, and the file content built from it.

``pattern(size, seed)`` is the definition every payload follows: the native engine's validation
(native/common.c fill_pattern and pattern_seed implement this same function; tests/unit/
test_pattern.py proves the bytes identical), the python engine, the pyverbs round trip and peer
(rdmabench/verbs) and the files below.

File content, seeded by the file's name and the offset: each file has a 1 MiB base block,
``pattern(BLOCK, xxh64(name))`` (computed once, then cached; by the native extension where it is
built). Block ``i`` of the file is that base block rotated by an amount derived from the name and
``i``, with its first 16 bytes overwritten by ``(i, name hash)``: every 1 MiB block of every file
differs, any block can be recomputed from (name, index) alone, and producing one costs a memcpy,
so gigabytes are generated at memory speed (the disk is the limit). No numpy.
"""

from __future__ import annotations

import functools
import os
import struct
from pathlib import Path

import xxhash

BLOCK = 1 << 20  # generated, written and hashed 1 MiB at a time
_STAMP = struct.Struct("<QQ")
_M64 = (1 << 64) - 1


def pattern_seed(qp: int, seq: int) -> int:
    """Seed of message ``seq`` on QP ``qp``: splitmix64 of both."""
    z = ((qp << 48) ^ seq ^ 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def pattern_py(size: int, seed: int) -> bytes:
    """The definition: ``size`` bytes for ``seed`` (0 <= seed < 2**64), xorshift64* from ``seed | 1``,
    each 64-bit output little endian, the last word cut to fit."""
    x = seed | 1
    words = []
    append = words.append
    for _ in range((size + 7) // 8):
        x ^= x >> 12
        x = (x ^ (x << 25)) & _M64
        x ^= x >> 27
        append((x * 0x2545F4914F6CDD1D) & _M64)
    return struct.pack(f"<{len(words)}Q", *words)[:size]


@functools.cache
def _impl():
    """The native extension's copy of pattern_py where it is built (1 MiB costs ~0.1 s in Python)."""
    try:
        from rdmabench._native import pattern as native_pattern
    except ImportError:
        return pattern_py
    return native_pattern


@functools.lru_cache(maxsize=128)
def pattern(size: int, seed: int) -> bytes:
    """pattern_py(size, seed), computed in C where the extension is built."""
    return _impl()(size, seed)


@functools.lru_cache(maxsize=64)
def _base(name: str) -> tuple[bytes, int]:
    tag = xxhash.xxh64_intdigest(name.encode())
    return _impl()(BLOCK, tag), tag


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
