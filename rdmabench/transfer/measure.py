"""Where a transfer's time is taken, and nowhere else: the wall time of each move, and the throughput
over it (CPU-seconds per GB are derived where every row is built: results.row.make, with cpu.per_gb).

A transport does not time itself: ``timed_move`` calls its ``ready`` (untimed: a cold cache, a
fresh mount), then reads the clock around its ``move``. A transport may report the phases it
knows of (``TransferRecord.phases``, e.g. ``{"transfer_s": ..., "verify_s": ...}``); they are
recorded beside the wall time, which stays the figure: every transport's ``seconds`` runs from
the request to the verified item in place.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from ..transports.base import Transport
from ..workloads.item import Item

MIB = 1 << 20


def timed_move(transport: Transport, item: Item) -> dict:
    """Move one item; the record as a result row carries it, ``seconds`` the wall time of the move."""
    transport.ready(item)
    t0 = time.perf_counter()
    rec = transport.move(item)
    seconds = time.perf_counter() - t0
    return {**asdict(rec), "seconds": seconds}


def throughput_mibps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / MIB if seconds > 0 else 0.0
