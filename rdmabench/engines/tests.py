"""The RC tests and what each side does in them: the registry both engines implement and every
command, table and plot names its tests from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TestKind:
    name: str
    op: str  # write, read, send, atomic
    latency: bool
    server_active: bool  # does the server run a loop of its own (or wait passively)?
    default_size: int
    default_iters: int


TESTS = {
    t.name: t
    for t in (
        # perftest's defaults: 64 KiB for bandwidth, 2 B for latency; 5000 iterations for write_bw, 1000 otherwise
        TestKind("write_bw", "write", False, False, 65536, 5000),
        TestKind("read_bw", "read", False, False, 65536, 1000),
        TestKind("send_bw", "send", False, True, 65536, 1000),
        TestKind("write_lat", "write", True, True, 2, 1000),
        TestKind("read_lat", "read", True, False, 2, 1000),
        TestKind("send_lat", "send", True, True, 2, 1000),
        # perftest's ib_atomic_bw / ib_atomic_lat: 8-byte fetch-and-add or compare-and-swap (--atomic), 1000
        TestKind("atomic_bw", "atomic", False, False, 8, 1000),
        TestKind("atomic_lat", "atomic", True, False, 8, 1000),
    )
}
ATOMIC_OPS = ("fetch_add", "cmp_swap")  # perftest's -A FETCH_AND_ADD | CMP_AND_SWAP
ATOMIC_SIZE = 8


def get(name: str) -> TestKind:
    try:
        return TESTS[name]
    except KeyError:
        raise ValueError(f"unknown test {name!r}; tests: {', '.join(TESTS)}") from None


def is_atomic(name: str) -> bool:
    return get(name).op == "atomic"


def server_active(test: str, validate: bool, bidir: bool) -> bool:
    """The server runs a loop for send tests, ping-pongs, bidirectional runs and validated writes."""
    kind = get(test)
    return kind.server_active or bidir or (validate and test == "write_bw")
