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
its protocol exactly (native/endpoint.c, native/common.c):

- Memory: one MR of qps * slots * size bytes (slots 0 -> depth); QP q's slot k starts at
  base + (q * slots + k) * size. Every QP keeps min(depth, slots) receives posted, receive i in slot
  i % slots. local_info() dicts: qpn, psn, gid (32 hex), lid, addr (the QP's slot 0), rkey, size,
  slots, mtu.
- Control messages are zero-byte SENDs with immediate data (network order): IMM_END 0xFFFFFFFF ends a
  duration run, IMM_READY 0xFFFFFFFE tells a write_lat client the server has zeroed its byte, any
  other immediate on a write_bw-validate writer is a credit (messages checked so far, mod 2^32).
- Payload pattern: xorshift64* words seeded with splitmix64((qp << 48) ^ seq) (``pattern_seed`` /
  ``pattern`` below, the same functions as common.c), so a python receiver checks a native sender.
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

import contextlib
import ctypes
import functools
import random
import socket
import struct
import time

from rdmabench.errors import DeviceNotFound, NoDevices, VerbsError
from rdmabench.verbs import compat as c
from rdmabench.verbs import resources as res
from rdmabench.verbs.cm import EventChannel

from pyverbs.cmid import CMID, AddrInfo, CMEvent, ConnParam  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.pyverbs_error import PyverbsError  # noqa: E402
from pyverbs.qp import QP, QPCap, QPInitAttr  # noqa: E402
from pyverbs.wr import SGE, RecvWR, SendWR  # noqa: E402

__all__ = ["Endpoint", "open_endpoint", "cm_listen", "cm_connect", "TESTS", "pattern", "pattern_seed"]

TESTS = ("write_bw", "read_bw", "send_bw", "write_lat", "read_lat", "send_lat")
BW_TESTS = TESTS[:3]
MAX_QPS = 256
MAX_BUFFER = 64 << 30
POLL_BATCH = 32
IMM_END = 0xFFFFFFFF
IMM_READY = 0xFFFFFFFE
IDX_MASK = (1 << 48) - 1
_M64 = (1 << 64) - 1

# rdma_cm private data, byte for byte the native engine's (endpoint.c cm_pack)
PD_MAGIC = 0x5244424E  # "RDBN"
PD_VERSION = 1
PD_FMT = "!IB3xIIQQII"  # magic, version, QP index, slots, size, addr, rkey, qps = 40 bytes


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


# --------------------------------------------------------------------------- verbs objects


class _QueuePair(res.RCQueuePair):
    """resources.RCQueuePair with separate send and receive CQs and the engine's queue sizes."""

    def __init__(self, device: res.Device, scq: res.CompletionQueue, rcq: res.CompletionQueue, depth: int,
                 inline_size: int):
        self.device = device
        cap = QPCap(max_send_wr=depth, max_recv_wr=depth, max_send_sge=1, max_recv_sge=1,
                    max_inline_data=inline_size)
        init_attr = QPInitAttr(qp_type=c.QPT_RC, scq=scq.cq, rcq=rcq.cq, cap=cap, sq_sig_all=0)
        self.qp = res._verbs_call(f"create an RC QP on {device.name}", QP, device.pd, init_attr)
        self.psn = random.getrandbits(24)
        self.path_mtu = device.port_attr.active_mtu
        self._opened()


class _CMDevice(res.Device):
    """The device rdma_cm resolved an address to, opened by name (our own context and PD; the QPs are
    ours, rdma_cm only runs the connection). Its GID is index 0's, as the native engine reports."""

    def __init__(self, name: str, port: int):
        self.name, self.port, self.gid_index = name, port, 0
        self.ctx = res._verbs_call(f"open device {name}", Context, name=name)
        try:
            self.device_attr = res._verbs_call(f"query device {name}", self.ctx.query_device)
            self.port_attr = res._verbs_call(f"query {name} port {port}", self.ctx.query_port, port)
            try:
                self.gid = str(self.ctx.query_gid(port, 0))
            except PyverbsError:
                self.gid = "0000:0000:0000:0000:0000:0000:0000:0000"
            self.pd = res._verbs_call(f"allocate PD on {name}", PD, self.ctx)
        except BaseException:
            self.ctx.close()
            raise
        self._opened()


class _Q:
    """Per-QP bookkeeping, the fields of endpoint.c's struct ep_qp."""

    __slots__ = ("qp", "psn", "raddr", "rkey", "rslots", "rsize", "path_mtu", "sq_posted", "sq_done",
                 "rq_posted", "rq_done", "sq_data", "data_done", "last_signaled", "swr", "ctrl", "rwr",
                 "cmid")

    def __init__(self, depth: int):
        self.qp = None
        self.cmid = None
        self.psn = 0
        self.raddr = self.rkey = self.rslots = self.rsize = 0
        self.path_mtu = 0
        self.sq_posted = self.sq_done = self.rq_posted = self.rq_done = 0
        self.sq_data = [0] * depth
        self.data_done = 0
        self.last_signaled = False
        self.swr: list = []
        self.ctrl = None
        self.rwr: list = []


def _check_args(qps, size, depth, slots, mtu, cq_mod, inline_size) -> None:
    if not 1 <= qps <= MAX_QPS:
        raise ValueError(f"qps must be between 1 and {MAX_QPS}, got {qps}")
    if not 0 < size <= 0xFFFFFFFF:
        raise ValueError(f"size must be between 1 byte and 4 GiB, got {size}")
    if not 1 <= depth <= 65536:
        raise ValueError(f"depth must be between 1 and 65536, got {depth}")
    if slots < 0:
        raise ValueError(f"slots must be >= 0 (0 means depth), got {slots}")
    if mtu and mtu not in _MTU_ENUM:
        raise ValueError(f"mtu must be 0 (the port's) or 256/512/1024/2048/4096, got {mtu}")
    if cq_mod < 1:
        raise ValueError(f"cq_mod must be >= 1, got {cq_mod}")
    if inline_size < 0:
        raise ValueError(f"inline_size must be >= 0, got {inline_size}")
    if qps * (slots or depth) * size > MAX_BUFFER:
        raise ValueError(f"qps * slots * size = {qps * (slots or depth) * size} bytes is more than the "
                         f"{MAX_BUFFER >> 30} GiB this engine registers")


class Endpoint:
    """RC QPs on one device with one registered buffer, and the benchmark loops in Python."""

    def __init__(self, qps=1, size=65536, depth=128, slots=0, mtu=0, cq_mod=100, inline_size=0):
        _check_args(qps, size, depth, slots, mtu, cq_mod, inline_size)
        self.qps, self.size, self.depth = qps, size, depth
        self.slots = slots or depth
        self.req_mtu = mtu
        self.cq_mod = min(cq_mod, depth)
        self.inline_size = inline_size
        self.recv_target = min(depth, self.slots)
        self.connected = False
        self.closed = False
        self.busy = False
        self.corrupt_seq = -1
        self._q = [_Q(depth) for _ in range(qps)]
        self._stack = contextlib.ExitStack()
        self._cm_ids: list = []
        self._cm_events = None
        self._dev = None

    # ----- setup

    def _setup(self, dev: res.Device) -> None:
        """CQs, the buffer and its pre-built work requests on ``dev`` (owned: closed with the endpoint)."""
        self._dev = dev
        self._stack.callback(dev.close)
        if self.size > dev.max_msg_sz:
            raise ValueError(f"size {self.size} exceeds the maximum message size of {dev.name} port {dev.port} "
                             f"({dev.max_msg_sz} bytes)")
        if self.depth > dev.device_attr.max_qp_wr:
            raise ValueError(f"depth {self.depth} exceeds {dev.name}'s max_qp_wr ({dev.device_attr.max_qp_wr})")
        cqe = min(self.qps * self.depth + 16, dev.device_attr.max_cqe)
        self._scq = self._stack.enter_context(res.CompletionQueue(dev, cqe))
        self._rcq = self._stack.enter_context(res.CompletionQueue(dev, cqe))
        self._buf = self._stack.enter_context(res.Buffer(dev, self.qps * self.slots * self.size))
        # direct access to the registered memory: pattern fills, checks and the write_lat spin
        raw = (ctypes.c_ubyte * self._buf.size).from_address(self._buf.addr)
        self._mem = memoryview(raw).cast("B")
        self._stack.callback(self._mem.release)
        lkey = self._buf.lkey
        for qi, p in enumerate(self._q):
            for k in range(self.slots):
                addr = self._slot(qi, k)
                p.swr.append(SendWR(num_sge=1, sg=[SGE(addr, self.size, lkey)], send_flags=0))
                p.rwr.append(RecvWR(num_sge=1, sg=[SGE(addr, self.size, lkey)]))
            p.ctrl = SendWR(num_sge=1, sg=[SGE(self._slot(qi, 0), 0, lkey)], send_flags=0)
            p.ctrl.num_sge = 0  # zero-byte: credits, markers, the drain write

    def _create_qps(self) -> None:
        for p in self._q:
            qp = self._stack.enter_context(_QueuePair(self._dev, self._scq, self._rcq, self.depth,
                                                      self.inline_size))
            p.qp, p.psn = qp, qp.psn
            p.path_mtu = self._dev.active_mtu

    def _slot(self, q: int, k: int) -> int:
        return self._buf.addr + (q * self.slots + k % self.slots) * self.size

    def _off(self, q: int, k: int) -> int:
        return (q * self.slots + k % self.slots) * self.size

    def _post_recvs(self, q: int) -> None:
        p = self._q[q]
        while p.rq_posted - p.rq_done < self.recv_target:
            idx = p.rq_posted
            wr = p.rwr[idx % self.slots]
            wr.wr_id = (q << 48) | (idx & IDX_MASK)
            try:
                p.qp.qp.post_recv(wr)
            except PyverbsError as exc:
                raise VerbsError(f"ibv_post_recv(QP {q}) failed: {exc}") from exc
            p.rq_posted += 1

    def _usable(self, connected: bool) -> None:
        if self.closed:
            raise RuntimeError("the endpoint is closed")
        if self.busy:
            raise RuntimeError("the endpoint is running in another thread")
        if connected and not self.connected:
            raise RuntimeError("the endpoint is not connected: call connect() first")

    # ----- attributes

    @property
    def device(self) -> str:
        return self._dev.name if self._dev else ""

    @property
    def port(self) -> int:
        return self._dev.port if self._dev else 1

    @property
    def gid_index(self) -> int:
        return self._dev.gid_index if self._dev else 0

    @property
    def mtu(self) -> int:
        if self.closed or not self._dev:
            return 0
        if self.connected:
            return c.mtu_bytes(self._q[0].path_mtu)
        active = self._dev.active_mtu
        return min(self.req_mtu, active) if self.req_mtu else active

    @property
    def registered_bytes(self) -> int:
        return self._buf.size if self._dev and not self.closed else 0

    @property
    def raw(self):
        """Itself: the native face's ``raw`` carries the test hooks; here they are on the endpoint."""
        return self

    # ----- connection

    def local_info(self) -> list[dict]:
        self._usable(False)
        gid = self._dev.gid.replace(":", "")
        return [{"qpn": p.qp.qpn, "psn": p.psn, "gid": gid, "lid": int(self._dev.port_attr.lid),
                 "addr": self._slot(i, 0), "rkey": self._buf.rkey, "size": self.size, "slots": self.slots,
                 "mtu": self.mtu} for i, p in enumerate(self._q)]

    def connect(self, remote: list[dict]) -> None:
        self._usable(False)
        if self.connected or self._cm_ids:
            raise RuntimeError("the endpoint is already connected")
        remote = list(remote)
        if len(remote) != self.qps:
            raise ValueError(f"remote describes {len(remote)} QPs, this endpoint has {self.qps}")
        peers = [_parse_remote(r, i, self.size) for i, r in enumerate(remote)]
        for i, (p, r) in enumerate(zip(self._q, peers)):
            mtu = min(r["mtu"] or 4096, self.req_mtu or 4096)
            gid = ":".join(r["gid"][k:k + 4] for k in range(0, 32, 4))
            info = res.PeerInfo(qpn=r["qpn"], psn=r["psn"], gid=gid, lid=r["lid"], addr=r["addr"],
                                rkey=r["rkey"], size=r["size"], mtu=mtu)
            p.qp.to_init(res.DEFAULT_ACCESS)
            self._post_recvs(i)
            p.qp.to_rtr(info)
            p.qp.to_rts()
            p.path_mtu = p.qp.path_mtu
            p.raddr, p.rkey, p.rslots, p.rsize = r["addr"], r["rkey"], r["slots"], r["size"]
        self.connected = True

    # ----- test hooks (the native Endpoint's)

    def _inject_corruption(self, seq: int) -> None:
        """The sender corrupts the payload of this sequence number (-1: none)."""
        self.corrupt_seq = int(seq)

    def _flip_byte(self, qp: int, slot: int, offset: int) -> None:
        """Flip one byte of a local slot (e.g. the read server's pattern)."""
        self._usable(False)
        if not (0 <= qp < self.qps and 0 <= slot < self.slots and 0 <= offset < self.size):
            raise ValueError("qp, slot or offset out of range")
        i = self._off(qp, slot) + offset
        self._mem[i] ^= 0x5A

    # ----- run

    def run(self, test: str, role: str, iters: int = 0, duration_s: float = 0.0, warmup: int = 0,
            bidir: bool = False, validate: bool = False, max_samples: int = 1_000_000,
            timeout_ms: int = 10000) -> dict:
        if test not in TESTS:
            raise ValueError(f"unknown test '{test}': {', '.join(TESTS)}")
        if role not in ("client", "server"):
            raise ValueError(f"role must be 'client' or 'server', got '{role}'")
        if (iters > 0) == (duration_s > 0) or iters < 0 or duration_s < 0 or duration_s > 1e6:
            raise ValueError("give exactly one of iters > 0 or duration_s > 0")
        if warmup < 0 or max_samples < 0 or timeout_ms <= 0:
            raise ValueError("warmup and max_samples must be >= 0, timeout_ms positive")
        is_lat = test not in BW_TESTS
        if bidir and (validate or is_lat):
            raise ValueError("bidir is for the BW tests, without validate (both directions would share "
                             "the slots being checked)")
        if test == "write_lat" and self.slots < 2 and validate:
            raise ValueError("write_lat with validate needs slots >= 2")
        self._usable(True)
        client = role == "client"
        r = _Run(self, test, client, bool(bidir), bool(validate), int(iters), int(warmup), float(duration_s),
                 int(max_samples), int(timeout_ms))
        passive = (not client and not bidir
                   and ((test == "write_bw" and not validate) or test in ("read_bw", "read_lat")))
        if passive:
            if validate:
                for q in range(self.qps):
                    for k in range(self.slots):
                        o = self._off(q, k)
                        self._mem[o:o + self.size] = pattern(self.size, pattern_seed(q, k))
        else:
            self.busy = True
            try:
                for p in self._q:
                    p.data_done = 0
                if is_lat:
                    r.lat_run()
                else:
                    if r.warmup:
                        r.bw_phase(r.warmup, 0, False)
                    r.bw_phase(0 if r.dur_ns else r.warmup + r.iters, r.dur_ns, True)
            finally:
                self.busy = False
        return r.record(passive)

    # ----- close

    def close(self) -> None:
        if self.busy:
            raise RuntimeError("cannot close: the endpoint is running in another thread")
        if self.closed:
            return
        self.closed = True
        self.connected = False
        for cmid in self._cm_ids:
            with contextlib.suppress(PyverbsError):
                cmid.disconnect()
        try:
            for p in self._q:  # our SendWR/RecvWR own malloc'd SGE lists: free them now
                for wr in p.swr + p.rwr + ([p.ctrl] if p.ctrl else []):
                    wr.close()
                p.swr, p.rwr, p.ctrl = [], [], None
            self._stack.close()  # QPs, MR, CQs, then PD and context (reverse order of creation)
        finally:
            for cmid in reversed(self._cm_ids):
                with contextlib.suppress(PyverbsError):
                    cmid.close()
            self._cm_ids = []
            if self._cm_events is not None:
                self._cm_events.close()
                self._cm_events = None

    def __enter__(self):
        self._usable(False)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):
            if not self.busy:
                self.close()

    def __repr__(self) -> str:
        return f"python.Endpoint({self.device!r}, qps={self.qps}, size={self.size}, depth={self.depth})"


def _parse_remote(d, i: int, size: int) -> dict:
    if not isinstance(d, dict):
        raise TypeError(f"remote[{i}] must be a dict")
    out = {}
    for key, hi in (("qpn", 0xFFFFFF), ("psn", 0xFFFFFF), ("lid", 0xFFFF), ("addr", _M64), ("rkey", 0xFFFFFFFF),
                    ("size", 0xFFFFFFFF), ("slots", 0xFFFFFFFF), ("mtu", 4096)):
        if key not in d:
            raise ValueError(f"remote[{i}] has no '{key}'")
        v = d[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"remote[{i}]['{key}'] must be a non-negative int")
        if v > hi:
            raise ValueError(f"remote[{i}]['{key}'] out of range")
        out[key] = v
    gid = d.get("gid")
    if not isinstance(gid, str) or len(gid) != 32:
        raise ValueError(f"remote[{i}]['gid'] must be 32 hex characters")
    try:
        int(gid, 16)
    except ValueError:
        raise ValueError(f"remote[{i}]['gid'] is not hex") from None
    out["gid"] = gid.lower()
    if not out["slots"] or not out["size"]:
        raise ValueError(f"remote[{i}] has no slots")
    if out["size"] < size:
        raise ValueError(f"remote[{i}] slots are {out['size']} bytes, smaller than this size ({size})")
    return out


# --------------------------------------------------------------------------- the run


class _Run:
    """One run(): endpoint.c's struct run and its loops (bw_phase, lat_run), line for line where it
    matters for the protocol."""

    def __init__(self, ep: Endpoint, test, client, bidir, validate, iters, warmup, duration_s, max_samples,
                 timeout_ms):
        self.ep = ep
        self.test, self.client, self.bidir, self.validate = test, client, bidir, validate
        self.iters, self.warmup, self.duration_s = iters, warmup, duration_s
        self.dur_ns = int(duration_s * 1e9) if duration_s > 0 else 0
        self.max_samples = max_samples
        self.timeout_ms = timeout_ms
        self.timeout_ns = timeout_ms * 1_000_000
        self.recording = False
        self.tot_done = self.tot_recvd = self.done0 = self.recvd0 = 0
        self.t_start = self.t_end = 0
        self.have_start = False
        self.c_t: list[int] = []
        self.c_ops: list[int] = []
        self.samples: list[float] = []
        self.truncated = False
        self.validated = self.corrupt = 0
        self.first_corrupt = -1
        self.lat_ops = 0
        self.last_progress = _now()
        nq = ep.qps
        # per QP: sent, checked, granted, recvd, credited, send_finished, recv_finished
        self.sent = [0] * nq
        self.checked = [0] * nq
        self.granted = [0] * nq
        self.recvd = [0] * nq
        self.credited = [0] * nq
        self.send_finished = [False] * nq
        self.recv_finished = [False] * nq
        if test in BW_TESTS:
            cap = (iters * nq // ep.cq_mod + nq + 1) if iters else max_samples
            self.ccap = min(cap, max_samples)
            self.scap = 0
        else:
            self.ccap = 0
            self.scap = (min(iters, max_samples) if iters else max_samples) if client else 0

    # ----- bookkeeping

    def note_corrupt(self, seq: int) -> None:
        if self.corrupt == 0:
            self.first_corrupt = seq
        self.corrupt += 1

    def check(self, q: int, slot: int, length: int, seed: int) -> bool:
        ep = self.ep
        o = ep._off(q, slot)
        return ep._mem[o:o + length] == pattern(ep.size, seed)[:length]

    def fill(self, q: int, slot: int, seed: int, seq: int) -> None:
        ep = self.ep
        o = ep._off(q, slot)
        ep._mem[o:o + ep.size] = pattern(ep.size, seed)
        if seq >= 0 and seq == ep.corrupt_seq:
            half = ep.size // 2
            if self.test not in BW_TESTS and half >= ep.size - 1:
                half = 0  # latency: the last byte is the ping-pong's flag
            ep._mem[o + half] ^= 0x5A

    def record_completion(self, t: int, ops: int) -> None:
        if not self.recording:
            return
        if len(self.c_t) < self.ccap:
            self.c_t.append(t)
            self.c_ops.append(ops)
        else:
            self.truncated = True

    def record_sample(self, ns: float) -> None:
        if len(self.samples) < self.scap:
            self.samples.append(ns)
        else:
            self.truncated = True

    def timed_out(self, what: str) -> VerbsError:
        return VerbsError(f"{self.test} {'client' if self.client else 'server'}: {what} "
                          f"(no progress for {self.timeout_ms} ms)")

    # ----- posting and polling

    def post(self, q: int, op: int, slot, raddr: int, imm, signaled: bool, data_after: int) -> None:
        ep = self.ep
        p = ep._q[q]
        if slot is None:
            wr = p.ctrl
            flags = 0
        else:
            wr = p.swr[slot % ep.slots]
            flags = c.SEND_INLINE if (ep.size <= ep.inline_size and op != c.WR_RDMA_READ) else 0
        if imm is not None:
            op = WR_SEND_WITH_IMM if op == c.WR_SEND else op
            wr.imm_data = socket.htonl(imm)
        wr.opcode = op
        wr.wr_id = (q << 48) | (p.sq_posted & IDX_MASK)
        wr.send_flags = flags | (c.SEND_SIGNALED if signaled else 0)
        wr.set_wr_rdma(p.rkey, raddr)
        p.sq_data[p.sq_posted % ep.depth] = data_after
        try:
            p.qp.qp.post_send(wr)
        except PyverbsError as exc:
            raise VerbsError(f"ibv_post_send(QP {q}, WR {p.sq_posted}) failed: {exc}") from exc
        p.sq_posted += 1
        p.last_signaled = signaled

    @staticmethod
    def failed(wc, side: str) -> VerbsError:
        return VerbsError(f"QP {wc.wr_id >> 48}: {side} work request {wc.wr_id & IDX_MASK} failed: "
                          f"{c.wc_status_name(wc.status)} (wc status {wc.status}, vendor_err {wc.vendor_err:#x})")

    def poll_send(self) -> int:
        ep = self.ep
        n, wcs = ep._scq.cq.poll(POLL_BATCH)
        if not n:
            return 0
        t = _now()
        depth = ep.depth
        for wc in wcs:
            if wc.status != c.WC_SUCCESS:
                raise self.failed(wc, "send")
            q = wc.wr_id >> 48
            if q >= ep.qps:
                continue
            idx = wc.wr_id & IDX_MASK
            p = ep._q[q]
            p.sq_done = idx + 1
            d = p.sq_data[idx % depth]
            if d > p.data_done:
                self.tot_done += d - p.data_done
                p.data_done = d
            if self.validate and self.test == "read_bw":
                while self.checked[q] < p.data_done:
                    seq = self.checked[q]
                    self.validated += 1
                    if not self.check(q, seq, ep.size, pattern_seed(q, seq % p.rslots)):
                        self.note_corrupt(seq)
                    self.checked[q] += 1
            if self.recording and (self.client or self.bidir):
                self.record_completion(t, self.tot_done - self.done0)
                self.t_end = t
        self.last_progress = t
        return n

    def poll_recv(self) -> int:
        ep = self.ep
        n, wcs = ep._rcq.cq.poll(POLL_BATCH)
        if not n:
            return 0
        t = _now()
        for wc in wcs:
            if wc.status != c.WC_SUCCESS:
                raise self.failed(wc, "receive")
            q = wc.wr_id >> 48
            if q >= ep.qps:
                continue
            widx = wc.wr_id & IDX_MASK
            has_imm = bool(wc.wc_flags & WC_WITH_IMM)
            imm = socket.ntohl(wc.imm_data) if has_imm else 0
            ep._q[q].rq_done = widx + 1
            data = False
            if wc.opcode == WC_RECV_RDMA_WITH_IMM:
                seq = self.recvd[q]
                data = True
                if self.validate:
                    self.validated += 1
                    if imm != seq & 0xFFFFFFFF or not self.check(q, seq, ep.size, pattern_seed(q, seq)):
                        self.note_corrupt(seq)
            elif self.test == "send_bw":
                seq = self.recvd[q]
                data = True
                if self.validate:
                    self.validated += 1
                    if wc.byte_len != ep.size or not self.check(q, widx, ep.size, pattern_seed(q, seq)):
                        self.note_corrupt(seq)
                if has_imm and imm == IMM_END:
                    self.recv_finished[q] = True
            elif has_imm and imm == IMM_END:
                self.recv_finished[q] = True  # write_bw validate: the writer is done
            elif has_imm:
                g = self.granted[q]
                self.granted[q] = g + ((imm - g) & 0xFFFFFFFF)  # a credit: checked so far, mod 2^32
            if data:
                self.recvd[q] += 1
                self.tot_recvd += 1
                if self.recording and not self.client and not self.bidir:
                    if not self.have_start:
                        self.t_start = t
                        self.have_start = True
                    self.t_end = t
                    if (self.tot_recvd - self.recvd0) % ep.cq_mod == 0:
                        self.record_completion(t, self.tot_recvd - self.recvd0)
            ep._post_recvs(q)
        self.last_progress = t
        return n

    def maybe_credit(self, q: int, force: bool) -> None:
        ep = self.ep
        p = ep._q[q]
        step = ep.slots // 2 or 1
        got, given = self.recvd[q], self.credited[q]
        if got == given or (not force and got - given < step):
            return
        if p.sq_posted - p.sq_done >= ep.depth:
            return  # retried on the next pass
        self.post(q, c.WR_SEND, None, 0, got & 0xFFFFFFFF, True, p.data_done)
        self.credited[q] = got

    def drain_sq(self, q: int) -> None:
        """Every posted WR completes (a trailing unsignaled one gets a signaled zero-byte WRITE behind it)."""
        ep = self.ep
        p = ep._q[q]
        if p.sq_posted > p.sq_done and not p.last_signaled:
            while p.sq_posted - p.sq_done >= ep.depth:
                if not self.poll_send():
                    if _now() - self.last_progress > self.timeout_ns:
                        raise self.timed_out(f"QP {q}: {p.sq_done} of {p.sq_posted} send work requests completed")
                    _idle()
            self.post(q, c.WR_RDMA_WRITE, None, p.raddr, None, True, p.data_done)
            prev = p.sq_data[(p.sq_posted - 2) % ep.depth] if p.sq_posted >= 2 else 0
            p.sq_data[(p.sq_posted - 1) % ep.depth] = prev
        while p.sq_done < p.sq_posted:
            if not self.poll_send():
                if _now() - self.last_progress > self.timeout_ns:
                    raise self.timed_out(f"QP {q}: {p.sq_done} of {p.sq_posted} send work requests completed")
                _idle()

    # ----- bandwidth

    def bw_phase(self, target: int, dur_ns: int, record: bool) -> None:
        ep = self.ep
        test, validate, client = self.test, self.validate, self.client
        sends = client or self.bidir
        recvs = (test == "send_bw" and (not client or self.bidir)) or (test == "write_bw" and validate and not client)
        credits = test == "write_bw" and validate and client
        marker = test == "send_bw" or (test == "write_bw" and validate)
        fill = validate and test in ("send_bw", "write_bw")
        giver = test == "write_bw" and validate and not client
        nq = ep.qps
        depth, slots, size, cq_mod = ep.depth, ep.slots, ep.size, ep.cq_mod
        self.recording = record
        if record:
            self.done0, self.recvd0 = self.tot_done, self.tot_recvd
        base = list(self.sent)
        for q in range(nq):
            self.send_finished[q] = not sends or (dur_ns == 0 and self.sent[q] >= target)
            self.recv_finished[q] = not recvs or (dur_ns == 0 and self.recvd[q] >= target)
        deadline = _now() + dur_ns
        self.last_progress = _now()
        time_up = False
        if test == "read_bw":
            opcode = c.WR_RDMA_READ
        elif test == "write_bw":
            opcode = WR_RDMA_WRITE_WITH_IMM if validate else c.WR_RDMA_WRITE
        else:
            opcode = c.WR_SEND
        while True:
            if dur_ns and not time_up:
                time_up = _now() >= deadline
            for q in range(nq):
                p = ep._q[q]
                while not self.send_finished[q]:
                    seq = self.sent[q]
                    last = time_up if dur_ns else seq + 1 >= target
                    need = 2 if (last and dur_ns and test == "write_bw" and marker) else 1
                    if p.sq_posted - p.sq_done + need > depth:
                        break
                    if validate and seq - p.data_done >= slots:
                        break  # a source/landing slot is still in use
                    if credits and seq - self.granted[q] >= p.rslots:
                        break  # the peer has not checked that slot yet
                    if dur_ns and time_up and not marker and seq == base[q]:
                        self.send_finished[q] = True  # nothing posted in this phase
                        break
                    sig = last or (seq + 1 - base[q]) % cq_mod == 0
                    if fill:
                        self.fill(q, seq, pattern_seed(q, seq), seq)
                    if record and not self.have_start:
                        self.t_start = _now()
                        self.have_start = True
                    raddr = p.raddr + (seq % p.rslots) * p.rsize
                    if test == "read_bw":
                        self.post(q, opcode, seq, raddr, None, sig, seq + 1)
                    elif test == "write_bw":
                        self.post(q, opcode, seq, raddr, (seq & 0xFFFFFFFF) if validate else None, sig, seq + 1)
                        if last and dur_ns and marker:
                            self.post(q, c.WR_SEND, None, 0, IMM_END, True, seq + 1)
                    else:
                        end = bool(last and dur_ns)
                        self.post(q, c.WR_SEND, seq, 0, IMM_END if end else None, sig, seq + 1)
                    self.sent[q] = seq + 1
                    if last:
                        self.send_finished[q] = True
            progress = 0
            if sends:
                progress += self.poll_send()
            if recvs or credits:
                progress += self.poll_recv()
                for q in range(nq):
                    if recvs and not self.recv_finished[q] and not dur_ns and self.recvd[q] >= target:
                        self.recv_finished[q] = True
                    if giver:
                        self.maybe_credit(q, self.recv_finished[q])
                        if ep._q[q].sq_posted > ep._q[q].sq_done:
                            progress += self.poll_send()
            if self._all_done(credits, giver):
                break
            if not progress:
                if _now() - self.last_progress > self.timeout_ns:
                    q = next((q for q in range(nq) if not self._qp_done(q, credits, giver)), 0)
                    raise self.timed_out(
                        f"QP {q}: sent {self.sent[q]}, completed {ep._q[q].data_done}, received "
                        f"{self.recvd[q]}" + (", waiting for credits" if credits else ""))
                _idle()
        for q in range(nq):
            self.drain_sq(q)

    def _qp_done(self, q: int, credits: bool, giver: bool) -> bool:
        p = self.ep._q[q]
        if not self.send_finished[q] or p.data_done < self.sent[q]:
            return False
        if credits and self.granted[q] < self.sent[q]:
            return False
        if not self.recv_finished[q]:
            return False
        return not (giver and self.credited[q] < self.recvd[q])

    def _all_done(self, credits: bool, giver: bool) -> bool:
        return all(self._qp_done(q, credits, giver) for q in range(self.ep.qps))

    # ----- latency

    def wait_recv(self):
        """One receive completion on QP 0 (latency tests), spinning; receives are reposted."""
        ep = self.ep
        start = _now()
        poll = ep._rcq.cq.poll
        while True:
            n, wcs = poll(1)
            if n:
                break
            if _now() - start > self.timeout_ns:
                raise self.timed_out("QP 0: nothing received")
            _idle()
        wc = wcs[0]
        if wc.status != c.WC_SUCCESS:
            raise self.failed(wc, "receive")
        ep._q[0].rq_done = (wc.wr_id & IDX_MASK) + 1
        ep._post_recvs(0)
        return wc

    def sq_room(self) -> None:
        ep = self.ep
        p = ep._q[0]
        start = _now()
        while p.sq_posted - p.sq_done >= ep.depth:
            if not self.poll_send():
                if _now() - start > self.timeout_ns:
                    raise self.timed_out("QP 0: send queue full")
                _idle()

    def lat_run(self) -> None:
        ep = self.ep
        p = ep._q[0]
        size, mem = ep.size, ep._mem
        poll_off = ep._off(0, 0) + size - 1
        src = 1 if ep.slots > 1 else 0
        src_last = ep._off(0, src) + size - 1
        test, client, validate = self.test, self.client, self.validate
        total = self.warmup + self.iters
        dur = self.dur_ns
        deadline = 0
        self.recording = False
        self.last_progress = _now()
        if test == "write_lat":
            mem[poll_off] = 0
            if client:
                while True:  # the server zeroed its byte and says so before we write into it
                    wc = self.wait_recv()
                    if wc.wc_flags & WC_WITH_IMM and socket.ntohl(wc.imm_data) == IMM_READY:
                        break
            else:
                self.sq_room()
                self.post(0, c.WR_SEND, None, 0, IMM_READY, True, p.data_done)
        i = 0
        while True:
            val = (i + 1) & 0xFF
            measured = i >= self.warmup
            if not dur and i >= total:
                break
            if i == self.warmup and dur:
                deadline = _now() + dur
            sig = (not dur and i + 1 == total) or (i + 1) % ep.cq_mod == 0
            if client:
                if dur and measured and _now() >= deadline:
                    if test != "read_lat":
                        self.sq_room()
                        self.post(0, c.WR_SEND, None, 0, IMM_END, True, p.data_done)
                    break
                if validate and test != "read_lat":
                    self.fill(0, src, pattern_seed(0, i), i)
                self.sq_room()
                if test == "write_lat":
                    mem[src_last] = val
                    t0 = _now()
                    self.post(0, c.WR_RDMA_WRITE, src, p.raddr, None, sig, i + 1)
                    spins = 0
                    while mem[poll_off] != val:
                        spins += 1
                        if spins & 63 == 0:
                            if _now() - t0 > self.timeout_ns:
                                raise VerbsError(f"write_lat client: QP 0: no reply to message {i} for "
                                                 f"{self.timeout_ms} ms")
                            _idle()
                    t1 = _now()
                    if validate:
                        self.validated += 1
                        if not self.check(0, 0, size - 1, pattern_seed(0, i)):
                            self.note_corrupt(i)
                elif test == "send_lat":
                    t0 = _now()
                    self.post(0, c.WR_SEND, src, 0, None, sig, i + 1)
                    wc = self.wait_recv()
                    t1 = _now()
                    if validate:
                        self.validated += 1
                        if not self.check(0, wc.wr_id & IDX_MASK, size, pattern_seed(0, i)):
                            self.note_corrupt(i)
                else:  # read_lat: one READ at a time, post to completion
                    t0 = _now()
                    self.post(0, c.WR_RDMA_READ, 0, p.raddr, None, True, i + 1)
                    poll = ep._scq.cq.poll
                    while True:
                        n, wcs = poll(1)
                        if n:
                            break
                        if _now() - t0 > self.timeout_ns:
                            raise VerbsError(f"read_lat client: QP 0: READ {i} not complete after "
                                             f"{self.timeout_ms} ms")
                    t1 = _now()
                    wc = wcs[0]
                    if wc.status != c.WC_SUCCESS:
                        raise self.failed(wc, "send")
                    p.sq_done = (wc.wr_id & IDX_MASK) + 1
                    p.data_done = i + 1
                    if validate:
                        self.validated += 1
                        if not self.check(0, 0, size, pattern_seed(0, 0)):
                            self.note_corrupt(i)
                if measured:
                    if not self.have_start:
                        self.t_start = t0
                        self.have_start = True
                    self.t_end = t1
                    self.lat_ops += 1
                    self.record_sample(float(t1 - t0) if test == "read_lat" else (t1 - t0) / 2.0)
            else:  # server: wait for message i, answer it
                if test == "write_lat":
                    if not self.wait_written(poll_off, val, i):
                        break  # the end marker of a duration run
                    t0 = _now()
                    if validate:
                        self.validated += 1
                        if not self.check(0, 0, size - 1, pattern_seed(0, i)):
                            self.note_corrupt(i)
                        self.fill(0, src, pattern_seed(0, i), -1)
                    mem[src_last] = val
                    self.sq_room()
                    self.post(0, c.WR_RDMA_WRITE, src, p.raddr, None, sig, i + 1)
                    self._served(measured, t0)
                else:  # send_lat
                    wc = self.wait_recv()
                    if wc.wc_flags & WC_WITH_IMM and socket.ntohl(wc.imm_data) == IMM_END:
                        break
                    t0 = _now()
                    if validate:
                        self.validated += 1
                        if not self.check(0, wc.wr_id & IDX_MASK, size, pattern_seed(0, i)):
                            self.note_corrupt(i)
                        self.fill(0, src, pattern_seed(0, i), -2)
                    self.sq_room()
                    self.post(0, c.WR_SEND, src, 0, None, sig, i + 1)
                    self._served(measured, t0)
            i += 1
        self.last_progress = _now()
        self.drain_sq(0)

    def wait_written(self, poll_off: int, val: int, i: int) -> bool:
        """write_lat server: spin until the client's write of message i lands; False on an end marker."""
        ep = self.ep
        mem, p = ep._mem, ep._q[0]
        spins = 0
        start = _now()
        while mem[poll_off] != val:
            spins += 1
            if spins & 63:
                continue
            if self.dur_ns:
                n, wcs = ep._rcq.cq.poll(1)
                if n:
                    wc = wcs[0]
                    if wc.status != c.WC_SUCCESS:
                        raise self.failed(wc, "receive")
                    p.rq_done = (wc.wr_id & IDX_MASK) + 1
                    ep._post_recvs(0)
                    if wc.wc_flags & WC_WITH_IMM and socket.ntohl(wc.imm_data) == IMM_END:
                        return False
            if _now() - start > self.timeout_ns:
                raise VerbsError(f"write_lat server: QP 0: message {i} not written within {self.timeout_ms} ms")
            _idle()
        return True

    def _served(self, measured: bool, t0: int) -> None:
        if measured:
            if not self.have_start:
                self.t_start = t0
                self.have_start = True
            self.t_end = t0
            self.lat_ops += 1

    # ----- the record

    def record(self, passive: bool) -> dict:
        ep = self.ep
        is_lat = self.test not in BW_TESTS
        ops = recv_ops = 0
        if not passive:
            if is_lat:
                ops = self.lat_ops
            elif self.client or self.bidir:
                ops = self.tot_done - self.done0
                recv_ops = self.tot_recvd - self.recvd0
            else:
                ops = self.tot_recvd - self.recvd0
        if self.test == "read_lat":
            sample = "post to completion"
        elif is_lat:
            sample = "half round trip"
        else:
            sample = None
        return {
            "test": self.test, "role": "client" if self.client else "server", "iters": self.iters,
            "warmup": self.warmup, "duration_s": self.duration_s, "bidir": self.bidir, "qps": ep.qps,
            "size": ep.size, "ops": ops, "bytes": ops * ep.size, "recv_ops": recv_ops,
            "t_start_ns": self.t_start if self.have_start else 0, "t_end_ns": self.t_end if self.have_start else 0,
            "tsc_hz": 1e9, "completions_ns": self.c_t, "completions_ops": self.c_ops, "samples_ns": self.samples,
            "sample": sample, "samples_truncated": self.truncated, "validated": self.validated,
            "corrupt": self.corrupt, "first_corrupt_seq": self.first_corrupt, "passive": passive,
        }


# --------------------------------------------------------------------------- entry points


def open_endpoint(device: str, gid_index: int, port: int = 1, qps: int = 1, size: int = 65536, depth: int = 128,
                  slots: int = 0, mtu: int = 0, cq_mod: int = 100, inline_size: int = 0) -> Endpoint:
    """An endpoint on ``device``, not yet connected: pass local_info() to the peer, then connect()."""
    ep = Endpoint(qps, size, depth, slots, mtu, cq_mod, inline_size)
    if not 1 <= port <= 255:
        raise ValueError(f"port must be between 1 and 255, got {port}")
    if not 0 <= gid_index <= 255:
        raise ValueError(f"gid_index must be between 0 and 255, got {gid_index}")
    try:
        ep._setup(res.Device(device, port, gid_index))
        ep._create_qps()
    except NoDevices as exc:
        ep.close()
        raise DeviceNotFound(f"no RDMA device named '{device}': {exc}") from exc
    except BaseException:
        ep.close()
        raise
    return ep


class _Events:
    """The endpoint's rdma_cm event channel (verbs.cm.EventChannel: waits with a deadline)."""

    def __init__(self):
        self.chan = EventChannel()

    def get(self, deadline: float, what: str) -> CMEvent:
        return self.chan.get(deadline - time.monotonic(), what)

    def expect(self, want: int, deadline: float, what: str) -> bytes:
        """Wait for event ``want``; return its private data. TIMEWAIT/DISCONNECTED of others are skipped."""
        while True:
            event = self.get(deadline, f"{c.cm_event_name(want)} ({what})")
            etype = event.event_type
            private = b""
            if etype in (c.CM_EVENT_ESTABLISHED, c.CM_EVENT_CONNECT_RESPONSE, c.CM_EVENT_CONNECT_REQUEST,
                         c.CM_EVENT_REJECTED):
                private = event.private_data or b""
            event.close()
            if etype == want:
                return private
            if etype in (c.CM_EVENT_TIMEWAIT_EXIT, c.CM_EVENT_DISCONNECTED):
                continue
            reason = " (nothing listening there?)" if etype == c.CM_EVENT_REJECTED else ""
            raise VerbsError(f"rdma_cm {what}: {c.cm_event_name(etype)} instead of {c.cm_event_name(want)}{reason}")

    def close(self) -> None:
        self.chan.close()


def _pack(ep: Endpoint, qi: int) -> bytes:
    return struct.pack(PD_FMT, PD_MAGIC, PD_VERSION, qi, ep.slots, ep.size, ep._slot(qi, 0), ep._buf.rkey, ep.qps)


def _unpack(data: bytes, ep: Endpoint) -> dict:
    n = struct.calcsize(PD_FMT)
    if not data or len(data) < n:
        raise VerbsError(f"rdma_cm peer sent no rdmabench private data ({len(data or b'')} bytes): not an "
                         "rdmabench endpoint or another version")
    magic, version, qi, slots, size, addr, rkey, qps = struct.unpack(PD_FMT, data[:n])
    if magic != PD_MAGIC or version != PD_VERSION:
        raise VerbsError("rdma_cm peer sent no rdmabench private data: not an rdmabench endpoint or another version")
    if qps != ep.qps or qi >= ep.qps:
        raise ValueError(f"rdma_cm peer has {qps} QPs (this one: {ep.qps}), QP index {qi}")
    if size < ep.size or slots == 0:
        raise ValueError(f"rdma_cm peer's slots are {size} bytes, smaller than size {ep.size}")
    return {"qp": qi, "slots": slots, "size": size, "addr": addr, "rkey": rkey}


def _cm_param(ep: Endpoint, qi: int) -> ConnParam:
    rd = min(ep._dev.device_attr.max_qp_rd_atom, res.MAX_RD_ATOMIC) or 1
    data = _pack(ep, qi)
    kw = dict(resources=rd, depth=rd, retry=7, rnr_retry=7, qp_num=ep._q[qi].qp.qpn)
    try:
        param = ConnParam(data_len=len(data), **kw)  # rdma-core 44
    except TypeError:
        param = ConnParam(**kw)  # later pyverbs size the private data themselves
    param.set_private_data(data)
    return param


def _cm_modify(ep: Endpoint, qi: int, cmid: CMID, state: int, name: str) -> None:
    """Walk our QP qi to ``state`` with the attributes rdma_cm negotiated (rdma_init_qp_attr)."""
    p = ep._q[qi]
    try:
        attr, mask = cmid.init_qp_attr(state)
        if state == c.QPS_INIT:
            attr.qp_access_flags = res.DEFAULT_ACCESS  # rdma_cm gives 0 before the connection exists
            mask |= c.QP_ACCESS_FLAGS
        p.qp.qp.modify(attr, mask)
    except PyverbsError as exc:
        raise VerbsError(f"rdma_cm: QP {qi} to {name}: {exc}") from exc
    if state == c.QPS_RTR:
        p.path_mtu = attr.path_mtu
    if state == c.QPS_RTS:
        p.psn = attr.sq_psn


def _cm_first(ep: Endpoint, cmid: CMID) -> None:
    """The first connection says which device: open it and set up the endpoint there."""
    name = cmid.dev_name
    name = name.decode() if isinstance(name, bytes) else str(name)
    ep._setup(_CMDevice(name, cmid.port_num or 1))
    ep._create_qps()


def _cm_peer(ep: Endpoint, qi: int, peer: dict) -> None:
    p = ep._q[qi]
    p.raddr, p.rkey, p.rslots, p.rsize = peer["addr"], peer["rkey"], peer["slots"], peer["size"]


def _cm_check(bind_or_peer: str, port: int, timeout_ms: int) -> None:
    if not 1 <= port <= 65535 or timeout_ms <= 0:
        raise ValueError(f"port must be 1..65535 and timeout_ms positive (got {port}, {timeout_ms})")


def cm_listen(bind_ip: str, port: int, qps: int = 1, size: int = 65536, depth: int = 128, slots: int = 0,
              cq_mod: int = 100, inline_size: int = 0, timeout_ms: int = 10000) -> Endpoint:
    """Wait up to timeout_ms for a cm_connect peer (either engine) on bind_ip:port; a connected endpoint."""
    _cm_check(bind_ip, port, timeout_ms)
    ep = Endpoint(qps, size, depth, 0 if slots is None else slots, 0, cq_mod, inline_size)
    deadline = time.monotonic() + timeout_ms / 1000
    where = f"{bind_ip}:{port}"
    listener = None
    try:
        ep._cm_events = events = _Events()
        listener = CMID(events.chan.channel)
        try:
            addr = AddrInfo(src=bind_ip, src_service=str(port), port_space=c.PS_TCP, flags=c.RAI_PASSIVE)
            listener.bind_addr(addr)
            listener.listen(qps)
        except PyverbsError as exc:
            raise VerbsError(f"rdma_cm listen on {where} failed: {exc}") from exc
        done: set[int] = set()
        for k in range(qps):
            while True:
                if time.monotonic() >= deadline:
                    raise VerbsError(f"rdma_cm: no connection request on {where} within {timeout_ms} ms "
                                     f"({k} of {qps} QPs connected)")
                event = events.get(deadline, f"a connection request on {where}")
                if event.event_type == c.CM_EVENT_CONNECT_REQUEST:
                    break
                event.close()  # a late event of an earlier connection
            child = CMID(event, listen_id=listener)
            private = event.private_data or b""
            event.close()
            ep._cm_ids.append(child)
            try:
                peer = _unpack(private, ep)
                if k == 0:
                    _cm_first(ep, child)
                if peer["qp"] in done:
                    raise ValueError(f"rdma_cm peer connected QP {peer['qp']} twice")
            except BaseException:
                with contextlib.suppress(PyverbsError):
                    child.reject()
                raise
            qi = peer["qp"]
            done.add(qi)
            ep._q[qi].cmid = child
            _cm_modify(ep, qi, child, c.QPS_INIT, "INIT")
            ep._post_recvs(qi)
            _cm_modify(ep, qi, child, c.QPS_RTR, "RTR")
            _cm_modify(ep, qi, child, c.QPS_RTS, "RTS")
            _cm_peer(ep, qi, peer)
            try:
                child.accept(_cm_param(ep, qi))
            except PyverbsError as exc:
                raise VerbsError(f"rdma_accept (QP {qi}) failed: {exc}") from exc
            events.expect(c.CM_EVENT_ESTABLISHED, deadline, f"QP {qi} from {where}")
        ep.connected = True
    except BaseException:
        ep.close()
        raise
    finally:
        if listener is not None:
            with contextlib.suppress(PyverbsError):
                listener.close()
    return ep


def cm_connect(peer_ip: str, port: int, qps: int = 1, size: int = 65536, depth: int = 128, slots: int = 0,
               cq_mod: int = 100, inline_size: int = 0, timeout_ms: int = 10000) -> Endpoint:
    """Connect to a cm_listen peer (either engine) at peer_ip:port, one rdma_cm connection per QP."""
    _cm_check(peer_ip, port, timeout_ms)
    ep = Endpoint(qps, size, depth, slots, 0, cq_mod, inline_size)
    deadline = time.monotonic() + timeout_ms / 1000
    where = f"{peer_ip}:{port}"
    resolve_ms = min(2000, timeout_ms)
    try:
        ep._cm_events = events = _Events()
        for qi in range(qps):
            cmid = CMID(events.chan.channel)
            ep._cm_ids.append(cmid)
            try:
                addr = AddrInfo(dst=peer_ip, dst_service=str(port), port_space=c.PS_TCP)
                cmid.resolve_addr(addr, resolve_ms)
            except PyverbsError as exc:
                raise VerbsError(f"rdma_cm: resolve {where} failed: {exc} (is the address on an RDMA device?)") \
                    from exc
            events.expect(c.CM_EVENT_ADDR_RESOLVED, deadline, f"address of {where}")
            try:
                cmid.resolve_route(resolve_ms)
            except PyverbsError as exc:
                raise VerbsError(f"rdma_cm: route to {where} failed: {exc}") from exc
            events.expect(c.CM_EVENT_ROUTE_RESOLVED, deadline, f"route to {where}")
            if qi == 0:
                _cm_first(ep, cmid)
            ep._q[qi].cmid = cmid
            _cm_modify(ep, qi, cmid, c.QPS_INIT, "INIT")
            ep._post_recvs(qi)
            try:
                cmid.connect(_cm_param(ep, qi))
            except PyverbsError as exc:
                raise VerbsError(f"rdma_connect to {where} (QP {qi}) failed: {exc}") from exc
            private = events.expect(c.CM_EVENT_CONNECT_RESPONSE, deadline, f"QP {qi} to {where}")
            peer = _unpack(private, ep)
            _cm_modify(ep, qi, cmid, c.QPS_RTR, "RTR")
            _cm_modify(ep, qi, cmid, c.QPS_RTS, "RTS")
            try:
                cmid.establish()
            except PyverbsError as exc:
                raise VerbsError(f"rdma_establish (QP {qi}) failed: {exc}") from exc
            _cm_peer(ep, qi, peer)
        ep.connected = True
    except BaseException:
        ep.close()
        raise
    return ep
