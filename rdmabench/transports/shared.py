"""The no-fetch reference: storage shared by both tasks, so the next task reads the files in place.

This is the seed's "scenario 2" (the same storage path attached on several hosts): nothing is
copied, and the cost is the next task reading every byte. ``move`` reads the item's source with
the same 1 MiB buffer and hash as every other transport's receiver (the runner times that). With
``ctx.options["cold"] = True`` the files' pages are dropped from the page cache first
(posix_fadvise DONTNEED), so the read comes from the device as it would on a fresh mount.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import integrity
from ..workloads.item import Item
from .base import Capabilities, Context, TransferRecord, Transport, TransportError, register

BUFFER = 1 << 20


def _read_file(path: Path, buf: bytearray, cold: bool) -> tuple[int, str]:
    h = integrity.new_hasher()
    mv = memoryview(buf)
    total = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        if cold:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while n := os.readv(fd, [buf]):
            h.update(mv[:n])
            total += n
    finally:
        os.close(fd)
    return total, h.hexdigest()


@register
class SharedTransport(Transport):
    name = "shared"
    # nothing moves: the next task reads the files where they already are, on the source host
    capabilities = Capabilities(kinds=frozenset({"file", "dir"}), source_active=frozenset({"file", "dir"}),
                                in_place=True)

    def prepare(self, ctx: Context) -> None:
        self.cold = bool(ctx.options.get("cold", False))
        self.buf = bytearray(int(ctx.options.get("bufsize", BUFFER)))

    def move(self, item: Item) -> TransferRecord:
        if item.source is None or not item.source.exists():
            raise TransportError(f"shared: {item.label}: {item.source} does not exist")
        if item.kind == "dir":
            entries = []
            for name, _size in integrity.dir_entries(item.source):
                n, d = _read_file(item.source / name, self.buf, self.cold)
                entries.append((name, n, d))
            total, digest = sum(e[1] for e in entries), integrity.combine(entries)
        else:
            total, digest = _read_file(item.source, self.buf, self.cold)
        return TransferRecord(transport=self.name, item=item.label, bytes=total,
                              verified=item.digest is not None and digest == item.digest,
                              digest=digest, wire_bytes=0,
                              extra={"kind": item.kind, "in_place": True, "cold": self.cold, "verification": "stream",
                                     "digest_ok": None if item.digest is None else digest == item.digest})
