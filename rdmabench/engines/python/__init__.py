"""The pyverbs reference engine: the native engine's endpoint, wire protocol and run record, in Python.

It exists to cross-check the native engine's correctness and to measure how much a Python hot
loop costs per operation; it cannot run at line rate (pyverbs builds a Python object per
completion and every post goes through the interpreter). Never use its figures as bandwidth.

    ep = open_endpoint(device="rxe0", gid_index=1, qps=1, size=65536, depth=128)
    peer.connect(ep.local_info()); ep.connect(peer.local_info())   # info travels as JSON
    record = ep.run("write_bw", "client", iters=5000)

or ``cm_listen(bind_ip, port, ...)`` / ``cm_connect(peer_ip, port, ...)`` (same arguments as the native
engine's: qps, size, depth, slots, cq_mod, inline_size, timeout_ms; no mtu, rdma_cm's route decides).

Interoperable with the native engine (one end may be native, the other python), because it copies
its protocol exactly (native/endpoint.h and the ep_*.c loops, native/common.c):

- Memory: one MR of qps * slots * size bytes (slots 0 -> depth); QP q's slot k starts at
  base + (q * slots + k) * size. Every QP keeps min(depth, slots) receives posted, receive i in slot
  i % slots. local_info() dicts: qpn, psn, gid (32 hex), lid, addr (the QP's slot 0), rkey, size,
  slots, mtu.
- Control messages are zero-byte SENDs with immediate data (network order): IMM_END 0xFFFFFFFF ends a
  duration run, IMM_READY 0xFFFFFFFE tells a write_lat client the server has zeroed its byte, any
  other immediate on a write_bw-validate writer is a credit (messages checked so far, mod 2^32).
- Payload pattern: xorshift64* words seeded with splitmix64((qp << 48) ^ seq) (``pattern_seed`` /
  ``pattern``: rdmabench/workloads/pattern.py's, which common.c implements), so a python receiver
  checks a native sender.
- write_bw validate: RDMA WRITE WITH IMM (imm = sequence) so the receiver sees every message;
  it checks the slot, and returns credits every slots/2 messages; the writer never runs more than
  the peer's slots ahead of the credits. read_bw/read_lat validate: the passive server fills every
  slot k with pattern(qp, k) and the reader checks message seq against slot seq % slots.
  write_lat/send_lat validate: both ends fill their payload with pattern(0, i) and check the other's.
- rdma_cm: one connection per QP, the 40-byte private data of the native engine ("RDBN", v1, QP index,
  slots, size, addr, rkey, qps). The QPs here are created outside rdma_cm (pyverbs' CMID cannot hand
  out its QP for arbitrary work requests) and walked to RTS with rdma_init_qp_attr; on the wire this
  is the same connection.

Differences from the native engine: times are time.perf_counter_ns (tsc_hz reported as 1e9), the
record's arrays are lists, errors are rdmabench's directly (VerbsError for verbs failures and
timeouts, DeviceNotFound, ValueError for bad arguments, RuntimeError for a closed/busy endpoint).
Idle spins call time.sleep(0) so that two endpoints in one process (tests) both make progress.
"""

from __future__ import annotations

from .cm import cm_connect, cm_listen
from .endpoint import Endpoint, open_endpoint
from .protocol import TESTS, pattern, pattern_seed

# the other public names of the single module this package replaced, still importable from here
from .cm import PD_FMT, PD_MAGIC, PD_VERSION  # noqa: F401
from .protocol import (  # noqa: F401
    BW_TESTS, IDX_MASK, IMM_END, IMM_READY, MAX_BUFFER, MAX_QPS, POLL_BATCH, WC_RECV_RDMA_WITH_IMM, WC_WITH_IMM,
    WR_RDMA_WRITE_WITH_IMM, WR_SEND_WITH_IMM,
)

__all__ = ["Endpoint", "open_endpoint", "cm_listen", "cm_connect", "TESTS", "pattern", "pattern_seed"]
