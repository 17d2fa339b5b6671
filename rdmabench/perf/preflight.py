"""`rdmabench run`'s options held against the device's own caps before anything starts.

Each cap comes from the device (sysfs and ibv_query_device/port), never from what rxe happens to
allow: a GID index the port does not have, a queue deeper than max_qp_wr, a message above
max_msg_sz or more registered memory than this host has free are refused here, with the cap named,
instead of failing inside a test. (A CQ deeper than max_cqe is not refused: the engines size their
CQs to the device's max_cqe and signal one completion in --cq-mod.) An MTU above the port's active MTU is clamped with a warning,
as perftest does, and the options record both.
"""

from __future__ import annotations

from typing import Callable

import psutil

from ..devices import Device
from ..errors import RdmabenchError
from ..units import format_size
from .options import MAX_DEPTH, RunOptions


def check(o: RunOptions, dev: Device, both_ends_here: bool, warn: Callable[[str], None]) -> None:
    """Raise RdmabenchError for what the device cannot do; clamp --mtu (recorded in ``o.extra``)."""
    port = dev.ports[0] if dev.ports else None
    if port is not None and o.gid_index is not None and o.gid_index not in {g.index for g in port.gids}:
        have = ", ".join(f"{g.index} ({g.type}{', ' + g.ipv4 if g.ipv4 else ''})" for g in port.gids) or "none"
        raise RdmabenchError(f"--gid-index {o.gid_index}: {dev.name} port {port.number} has no such GID; "
                             f"it has: {have} (`rdmabench devices -d {dev.name}`)")
    if dev.max_qp_wr and o.depth > dev.max_qp_wr:
        raise RdmabenchError(f"--depth {o.depth} is above {dev.name}'s max_qp_wr of {dev.max_qp_wr}")
    if o.depth > MAX_DEPTH:
        raise RdmabenchError(f"--depth {o.depth} is above the engines' maximum of {MAX_DEPTH}")
    if port is not None and o.mtu and port.active_mtu and o.mtu > port.active_mtu:
        warn(f"warning: --mtu {o.mtu} is above {dev.name}'s active MTU {port.active_mtu} "
             f"(netdev {port.netdev} MTU {port.netdev_mtu}); using {port.active_mtu}")
        o.extra["mtu_requested"] = o.mtu
        o.mtu = port.active_mtu
    max_msg = port.max_msg_sz if port is not None else None
    for test, size in o.plan():
        if max_msg and size > max_msg:
            raise RdmabenchError(f"size {size} is above {dev.name}'s maximum message size {max_msg}")
    ends = 2 if both_ends_here else 1
    test, size = max(o.plan(), key=lambda ts: o.registered_bytes(*ts))
    need = o.registered_bytes(test, size) * ends
    free = psutil.virtual_memory().available
    if need > free * 0.8:
        raise RdmabenchError(f"{test} at {format_size(size)} registers {format_size(need)} "
                             f"({'both ends on this host, ' if ends == 2 else ''}{o.qps} QP(s) x "
                             f"{o.slots_for(test, size) or o.depth} buffers x {format_size(size)}), more than the "
                             f"{format_size(int(free * 0.8))} this host can spare: lower --depth, --qps or the size")
