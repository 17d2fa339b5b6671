"""A C1 output of the size Lotus hands from C1 to C2, deterministic.

Lotus's ``Commit1Out`` is the JSON rust-fil-proofs writes for ``SealCommitPhase1Output``
(``registered_proof``, ``vanilla_proofs``, ``comm_r``, ``comm_d``, ``replica_id``, ``seed``,
``ticket``): mostly long arrays of small numbers. Sizes from lotus.md's C1 table (decimal
kB/MB; base64 inside JSON-RPC is 4/3 of it per hop).
"""

from __future__ import annotations

import json

from . import pattern
from .item import Item
from .sector import GEOMETRY, GiB, KiB, MiB, parse_sector_size

C1_BYTES = {
    2 * KiB: 100_000,
    8 * MiB: 211_000,
    512 * MiB: 265_000,
    32 * GiB: 38_700_000,
    64 * GiB: 39_200_000,
}


def c1_size(sector_size: int | str) -> int:
    return C1_BYTES[parse_sector_size(sector_size)]


def c1_output(sector_size: int | str, miner: int = 1000, number: int = 1) -> bytes:
    """The C1 output JSON for one sector, exactly ``c1_size(sector_size)`` bytes, same bytes every call."""
    size = parse_sector_size(sector_size)
    target = C1_BYTES[size]
    name = f"c1/{size}/s-t0{miner}-{number}"
    head = pattern.block(name, 0)

    def arr(off: int) -> str:
        return "[" + ",".join(str(b) for b in head[off:off + 32]) + "]"

    prefix = (f'{{"registered_proof":"{GEOMETRY[size].proof}","comm_r":{arr(16)},"comm_d":{arr(48)},'
              f'"replica_id":{arr(80)},"seed":{arr(112)},"ticket":{arr(144)},"vanilla_proofs":[').encode()
    suffix = b"]}"
    room = target - len(prefix) - len(suffix)
    unit = (",".join(map(str, head[176:176 + 65536])) + ",").encode()  # ~230 kB of numbers, repeated
    body = bytearray((unit * (room // len(unit) + 1))[:room])
    if body.endswith(b","):  # the cut may split a number (still a number) or end on a comma (not JSON)
        body[-1:] = b" "
    out = prefix + bytes(body) + suffix
    assert len(out) == target
    return out


def check(blob: bytes, sector_size: int | str) -> None:
    """ValueError unless ``blob`` parses as JSON of the expected size."""
    if len(blob) != c1_size(sector_size):
        raise ValueError(f"C1 output is {len(blob)} bytes, expected {c1_size(sector_size)}")
    json.loads(blob)


def item(sector_size: int | str, miner: int = 1000, number: int = 1) -> Item:
    """The C1 -> C2 hand-off as a transport Item (a blob carried in memory, with its digest)."""
    from .. import integrity

    blob = c1_output(sector_size, miner, number)
    h = integrity.new_hasher()
    h.update(blob)
    return Item(kind="blob", lotus_type="c1", sector_id=f"s-t0{miner}-{number}", source=None, destination=None,
                size=len(blob), digest=h.hexdigest(), data=blob, sector_size=parse_sector_size(sector_size))
