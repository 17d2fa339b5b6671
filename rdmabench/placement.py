"""Where a verbs test runs on a NUMA host: the measuring thread's CPUs and the buffers' memory node.

On a dual-socket server a NIC hangs off one socket; a benchmark whose thread or buffers sit on the other
one pays the inter-socket link on every DMA and completion, and measures that instead of the NIC. So by
default every verbs endpoint is placed on its NIC's NUMA node, read from sysfs
(/sys/class/infiniband/DEV/device/numa_node): the thread that runs the C loop is pinned to that node's
CPUs (those this process may use) and the registered buffer's pages are preferred on that node before
they are first touched (native/ep_mem.c, mbind). ``numa_node`` -1 or absent (a VM, soft-RoCE, a
single-node host that does not say) means there is nothing to place by: nothing is done, and the
result says "no NUMA information".

``--cpu LIST`` pins to those CPUs instead (buffers on their node when they share one); ``--cpu any`` or
``--no-numa`` places nothing. Each end places itself on its own NIC's node; the result records both.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .devices import SYSFS_ROOT
from .errors import RdmabenchError

NODE_ROOT = Path("/sys/devices/system/node")
CPU_ROOT = Path("/sys/devices/system/cpu")
NO_INFO = "no NUMA information"
_ORIGINAL = frozenset(os.sched_getaffinity(0))  # the process's CPUs before any thread of it was pinned


def parse_cpu_list(text: str) -> list[int]:
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11] (the kernel's cpulist format)."""
    cpus: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(f"CPU list {text!r}: use numbers and ranges, e.g. 0-3,8") from None
        if a < 0 or b < a:
            raise ValueError(f"CPU list {text!r}: {part!r} is not a range of CPU numbers")
        cpus.update(range(a, b + 1))
    if not cpus:
        raise ValueError(f"CPU list {text!r} names no CPU")
    return sorted(cpus)


def nic_node(device: str, root: Path = SYSFS_ROOT) -> int | None:
    """The NIC's NUMA node from sysfs; None when the kernel has no NUMA information for it (-1 or absent)."""
    try:
        node = int((root / device / "device" / "numa_node").read_text().strip())
    except (OSError, ValueError):
        return None
    return node if node >= 0 else None


def node_cpus(node: int, root: Path = NODE_ROOT) -> list[int]:
    try:
        return parse_cpu_list((root / f"node{node}" / "cpulist").read_text().strip())
    except (OSError, ValueError):
        return []


def cpu_node(cpu: int, root: Path = CPU_ROOT) -> int | None:
    for entry in (root / f"cpu{cpu}").glob("node[0-9]*"):
        return int(entry.name[4:])
    return None


@dataclass
class Placement:
    mode: str                  # "nic" (the default), "cpus" (--cpu LIST) or "off"
    nic_numa_node: int | None  # what sysfs says of the NIC (None: no NUMA information)
    cpus: list[int] | None     # the CPUs the measuring thread is pinned to (None: not pinned)
    memory_node: int | None    # the node the buffers are placed on (None: not placed)
    note: str

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def endpoint_node(self) -> int:
        """The engines' numa_node argument: -1 places nothing."""
        return -1 if self.memory_node is None else self.memory_node


def plan(device: str, cpu: str | None = None, numa: bool = True, root: Path = SYSFS_ROOT,
         node_root: Path = NODE_ROOT, cpu_root: Path = CPU_ROOT) -> Placement:
    """Where this end runs: ``cpu`` None (the NIC's node), "any" (nowhere in particular) or a CPU list."""
    node = nic_node(device, root)
    allowed = _ORIGINAL
    if not numa or (cpu or "").strip().lower() == "any":
        return Placement("off", node, None, None, "placement off (--no-numa / --cpu any)")
    if cpu:
        cpus = parse_cpu_list(cpu)
        bad = [c for c in cpus if c not in allowed]
        if bad:
            raise RdmabenchError(f"--cpu {cpu}: CPU {bad[0]} is not one this process may run on "
                                 f"(allowed: {_ranges(sorted(allowed))})")
        nodes = {cpu_node(c, cpu_root) for c in cpus}
        mem = nodes.pop() if len(nodes) == 1 else None
        note = (f"pinned to --cpu {_ranges(cpus)}; buffers on their node {mem}" if mem is not None else
                f"pinned to --cpu {_ranges(cpus)}; buffers not placed (those CPUs are on "
                f"{'several nodes' if nodes else 'no known node'})")
        return Placement("cpus", node, cpus, mem, note)
    if node is None:
        return Placement("nic", None, None, None, f"{NO_INFO} for {device} (device/numa_node is -1 or absent): "
                                                  "not placed")
    cpus = [c for c in node_cpus(node, node_root) if c in allowed]
    if not cpus:
        return Placement("nic", node, None, node, f"{device} is on node {node}, but this process may use none of "
                                                  "its CPUs: buffers placed there, thread not pinned")
    return Placement("nic", node, cpus, node, f"thread and buffers on {device}'s node {node}")


def _ranges(cpus: list[int]) -> str:
    out, i = [], 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(out)


@contextlib.contextmanager
def pinned(p: Placement):
    """Pin the calling thread (the one that will run the C loops) to ``p.cpus``; back as it was after."""
    if not p.cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, p.cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def pin_thread(p: Placement) -> None:
    """Pin the calling thread for good (a server connection's thread: it ends with the connection);
    a placement with no CPUs gives it back every CPU the process had."""
    os.sched_setaffinity(0, p.cpus or _ORIGINAL)


def record(p: Placement, knobs: dict | None) -> dict:
    """The placement as a result records it: what was chosen, and where the buffer's pages are
    (ep.knobs()'s memory_node: -1 the kernel cannot say, -2 several nodes)."""
    out = p.to_dict()
    where = (knobs or {}).get("memory_node")
    out["memory_node_measured"] = {None: None, -1: None, -2: "several nodes"}.get(where, where)
    return out
