"""The wire protocol the python engine shares with the native one: test names, limits, the
control-message immediates, the verbs opcodes it posts and polls, and the payload pattern."""

from __future__ import annotations

import functools
import struct
import time

from rdmabench.verbs import compat as c

TESTS = ("write_bw", "read_bw", "send_bw", "write_lat", "read_lat", "send_lat")
BW_TESTS = TESTS[:3]
MAX_QPS = 256
MAX_BUFFER = 64 << 30
POLL_BATCH = 32
IMM_END = 0xFFFFFFFF
IMM_READY = 0xFFFFFFFE
IDX_MASK = (1 << 48) - 1
_M64 = (1 << 64) - 1


def _verbs_enum(enum_class: str, member: str) -> int:
    return c._lookup(c.verbs_module, enum_class, member)  # the shim's lookup, both pyverbs layouts


WR_RDMA_WRITE_WITH_IMM = _verbs_enum("ibv_wr_opcode", "IBV_WR_RDMA_WRITE_WITH_IMM")
WR_SEND_WITH_IMM = _verbs_enum("ibv_wr_opcode", "IBV_WR_SEND_WITH_IMM")
WC_RECV_RDMA_WITH_IMM = _verbs_enum("ibv_wc_opcode", "IBV_WC_RECV_RDMA_WITH_IMM")
WC_WITH_IMM = _verbs_enum("ibv_wc_flags", "IBV_WC_WITH_IMM")
_MTU_ENUM = {256: c.MTU_256, 512: c.MTU_512, 1024: c.MTU_1024, 2048: c.MTU_2048, 4096: c.MTU_4096}

_now = time.perf_counter_ns
_idle = functools.partial(time.sleep, 0)  # let another thread (the other endpoint) have the GIL


# --------------------------------------------------------------------------- payload pattern


def pattern_seed(qp: int, seq: int) -> int:
    """Seed of message ``seq`` on QP ``qp``: splitmix64, as native/common.c pattern_seed."""
    z = ((qp << 48) ^ seq ^ 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


@functools.lru_cache(maxsize=128)
def pattern(size: int, seed: int) -> bytes:
    """``size`` bytes of xorshift64* words (little endian), as native/common.c fill_pattern."""
    x = seed | 1
    words = []
    append = words.append
    for _ in range((size + 7) // 8):
        x ^= x >> 12
        x = (x ^ (x << 25)) & _M64
        x ^= x >> 27
        append((x * 0x2545F4914F6CDD1D) & _M64)
    return struct.pack(f"<{len(words)}Q", *words)[:size]
