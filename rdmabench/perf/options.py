"""What `rdmabench run` was asked to do, validated before anything connects."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..units import parse_size
from ..engines import tests

ENGINES = ("native", "python")
CONNECT_MODES = ("oob", "cm")
PERFTEST_LAT_INLINE = 220  # perftest's default inline size for write/send latency tests
MAX_DEPTH = 65536  # the engines' own limit on a queue's depth (native/endpoint.c, engines/python)
PERFTEST_CYCLE_BUFFER = 4096  # perftest steps through one page of addresses; bigger messages reuse one buffer


def parse_sweep(text: str) -> list[int]:
    """`2:8M` -> every power of two from 2 B to 8 MiB (perftest's -a), and both ends even where they
    are not powers of two (`2:3` -> 2, 3; `1000:5000` -> 1000, 1024, 2048, 4096, 5000): nothing asked
    for is dropped. `4K,64K,1M` -> those sizes."""
    if ":" in text:
        lo_s, hi_s = text.split(":", 1)
        lo, hi = parse_size(lo_s), parse_size(hi_s)
        if lo < 1 or hi < lo:
            raise ValueError(f"sweep {text!r}: need 1 <= low <= high")
        sizes, s = [lo], 1
        while s <= hi:
            if s > lo:
                sizes.append(s)
            s <<= 1
        if sizes[-1] != hi:
            sizes.append(hi)
        return sizes
    return [parse_size(part) for part in text.split(",") if part.strip()]


@dataclass
class RunOptions:
    tests: list[str]
    sizes: list[int] | None = None  # None: each test's default size
    iters: int | None = None  # None: each test's default (unless duration is set)
    duration: float | None = None
    until_stopped: bool = False  # run the one test until Ctrl-C (perftest's --run_infinitely), then write the result
    interval: float | None = None  # seconds per window, and a live line per window; None: 1 s windows, no lines
    warmup: int = 0
    depth: int = 128
    cq_mod: int = 100
    qps: int = 1
    bidir: bool = False
    gid_index: int | None = None  # None: the device's recommended one (RoCE v2, IPv4-mapped)
    mtu: int | None = None  # None: the port's active MTU
    connect: str = "oob"
    validate: bool = False
    engine: str = "native"
    repeat: int = 1
    inline_size: int | None = None  # None: perftest's default, 220 B for latency tests, 0 for bandwidth
    slots: int | None = None  # message buffers per QP; None: perftest's rule (slots_for)
    max_samples: int = 1_000_000
    # RoCE production knobs (README "RoCE production knobs")
    tclass: int = 0  # GRH traffic class = DSCP << 2 | ECN, e.g. 106: DSCP 26 with ECT(0); perftest's --tclass
    sl: int = 0  # service level (Ethernet priority on RoCE); out-of-band connect only
    cpu: str | None = None  # None: the NIC's NUMA node; "any": no pinning; else a CPU list (0-3,8)
    numa: bool = True  # False: --no-numa, place nothing
    hugepages: bool = False  # buffers from 2 MiB huge pages
    atomic: str = "fetch_add"  # the atomic tests' operation: fetch_add or cmp_swap (perftest's -A)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        for t in self.tests:
            tests.get(t)
        if self.engine not in ENGINES:
            raise ValueError(f"engine {self.engine!r}: use one of {', '.join(ENGINES)}")
        if self.connect not in CONNECT_MODES:
            raise ValueError(f"connect {self.connect!r}: use one of {', '.join(CONNECT_MODES)}")
        if self.sizes is not None and any(s < 1 for s in self.sizes):
            raise ValueError("a message size must be at least 1 byte")
        if self.iters is not None and self.duration is not None:
            raise ValueError("give --iters or --duration, not both")
        if self.until_stopped:
            if self.iters is not None or self.duration is not None:
                raise ValueError("--until-stopped runs until Ctrl-C: drop --iters and --duration")
            if len(self.plan()) != 1 or self.repeat != 1:
                raise ValueError("--until-stopped runs one test at one size, once: give one test and one size")
        if self.interval is not None and not 0.01 <= self.interval <= 86400:
            raise ValueError(f"--interval {self.interval:g}: 0.01 to 86400 seconds")
        if self.engine != "native" and (self.until_stopped or self.interval is not None):
            raise ValueError(f"the {self.engine} engine keeps no windows: --until-stopped and --interval need "
                             "--engine native")
        if self.mtu is not None and self.mtu not in (256, 512, 1024, 2048, 4096):
            raise ValueError(f"MTU {self.mtu}: use 256, 512, 1024, 2048 or 4096")
        if self.slots is not None and self.slots < 1:
            raise ValueError("slots must be at least 1")
        for name in ("depth", "cq_mod", "qps", "repeat"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        self._check_knobs()

    def _check_knobs(self) -> None:
        if not 0 <= self.tclass <= 255:
            raise ValueError(f"--tclass {self.tclass}: 0..255 (DSCP << 2 | ECN; DSCP 26 with ECT(0) is 106)")
        if not 0 <= self.sl <= 15:
            raise ValueError(f"--sl {self.sl}: 0..15")
        if self.sl and self.connect == "cm":
            raise ValueError("--sl with --connect cm: rdma_cm's kernel picks a RoCE QP's service level from the "
                             "traffic class; use --connect oob to set it")
        if self.atomic not in tests.ATOMIC_OPS:
            raise ValueError(f"--atomic {self.atomic!r}: use {' or '.join(tests.ATOMIC_OPS)}")
        if self.cpu is not None and self.cpu.strip().lower() != "any":
            from ..placement import parse_cpu_list

            parse_cpu_list(self.cpu)
        atomic = [t for t in self.tests if tests.is_atomic(t)]
        if self.engine != "native" and (self.tclass or self.sl or self.hugepages or atomic):
            asked = [n for n, v in (("--tclass", self.tclass), ("--sl", self.sl), ("--hugepages", self.hugepages),
                                    (", ".join(atomic), atomic)) if v]
            raise ValueError(f"the {self.engine} engine has no {', '.join(asked)}: use --engine native")
        if atomic and self.sizes is not None and len(atomic) == len(self.tests) and \
                set(self.sizes) != {tests.ATOMIC_SIZE}:
            raise ValueError("atomic operations are 8 bytes: drop --size/--sizes for the atomic tests")
        if atomic and self.bidir:
            raise ValueError("--bidir is for the bandwidth tests; the atomic tests' server is passive")

    def plan(self) -> list[tuple[str, int]]:
        return [(t, s) for t in self.tests
                for s in ([tests.ATOMIC_SIZE] if tests.is_atomic(t) else self.sizes or [tests.get(t).default_size])]

    def iterations(self, test: str) -> int:
        if self.duration is not None or self.until_stopped:
            return 0
        return self.iters or tests.get(test).default_iters

    def inline_for(self, test: str, size: int) -> int:
        """Bytes sent inline: what was asked, else perftest's default (ib_*_lat inline up to 220 B)."""
        limit = self.inline_size if self.inline_size is not None else (PERFTEST_LAT_INLINE if tests.get(test).latency else 0)
        return limit if size <= limit else 0

    def slots_for(self, test: str, size: int) -> int:
        """Message buffers per QP (0: one per queue slot, i.e. depth).

        Latency tests: two, as perftest's ping-pongs (one message is in flight at a time: it is polled
        for in one buffer and sent from the other); registering depth x size there took 1 GiB per end
        at 8 MiB. Bandwidth tests: as asked, else perftest's rule: write_bw and read_bw messages above
        half a page all use one buffer at each end (ib_write_bw/ib_read_bw only step the address below
        that), unless every payload is validated, which needs one buffer per message in flight. Other
        tests: depth."""
        if tests.get(test).latency:
            return min(2, self.depth)
        if self.slots is not None:
            return self.slots
        if test in ("write_bw", "read_bw") and not self.validate and size > PERFTEST_CYCLE_BUFFER // 2:
            return 1
        return 0

    def registered_bytes(self, test: str, size: int) -> int:
        """What one end registers for (test, size): qps x buffers x size."""
        return self.qps * (self.slots_for(test, size) or self.depth) * size

    def to_dict(self) -> dict:
        return asdict(self)
