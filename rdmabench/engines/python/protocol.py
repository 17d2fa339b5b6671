"""The wire protocol the python engine shares with the native one: test names, limits, the
control-message immediates, the verbs opcodes it posts and polls; the payload pattern is
rdmabench/workloads/pattern.py's."""

from __future__ import annotations

import functools
import time

from rdmabench.engines import tests
from rdmabench.verbs import compat as c
from rdmabench.workloads.pattern import pattern, pattern_seed  # noqa: F401 - the one payload pattern

TESTS = tuple(name for name, kind in tests.TESTS.items() if kind.op != "atomic")  # no atomics here: native only
BW_TESTS = tuple(name for name in TESTS if not tests.TESTS[name].latency)
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
