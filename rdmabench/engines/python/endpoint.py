"""The python engine's endpoint: its verbs resources (CQs, one registered buffer, RC QPs),
local_info/connect, the test hooks, run() and close(); and open_endpoint."""

from __future__ import annotations

import contextlib
import ctypes
import random

from rdmabench.engines import tests
from rdmabench.errors import DeviceNotFound, NoDevices, VerbsError
from rdmabench.verbs import compat as c
from rdmabench.verbs import resources as res

from pyverbs.pyverbs_error import PyverbsError  # noqa: E402
from pyverbs.qp import QP, QPCap, QPInitAttr  # noqa: E402
from pyverbs.wr import SGE, RecvWR, SendWR  # noqa: E402

from .protocol import _M64, _MTU_ENUM, BW_TESTS, IDX_MASK, MAX_BUFFER, MAX_QPS, TESTS, pattern, pattern_seed
from .run import _Run


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


class _Q:
    """Per-QP bookkeeping, the fields of common.h's struct ep_qp."""

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
                 "mtu": self.mtu, "rd_atomic": self._dev.reads_answered or 1} for i, p in enumerate(self._q)]

    @property
    def outstanding_reads(self) -> int:
        """RDMA READs in flight per QP: what QP 0 was given once connected, before that the device's cap."""
        if self.connected and not self.closed:
            attr, _ = self._q[0].qp.qp.query(c.QP_MAX_QP_RD_ATOMIC)
            return attr.max_rd_atomic
        return (self._dev.reads_issued or 1) if self._dev and not self.closed else 0

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
                                rkey=r["rkey"], size=r["size"], mtu=mtu, rd_atomic=r["rd_atomic"])
            p.qp.to_init(res.DEFAULT_ACCESS)
            self._post_recvs(i)
            p.qp.to_rtr(info)
            p.qp.to_rts(info)
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
            if test in tests.TESTS:
                raise ValueError(f"the python engine cannot run {test}: the atomic tests are the native engine's")
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
    rd = d.get("rd_atomic", 0)  # absent from an older rdmabench's info
    if not isinstance(rd, int) or isinstance(rd, bool) or not 0 <= rd <= 255:
        raise ValueError(f"remote[{i}]['rd_atomic'] must be an int 0..255")
    out["rd_atomic"] = rd
    out["gid"] = gid.lower()
    if not out["slots"] or not out["size"]:
        raise ValueError(f"remote[{i}] has no slots")
    if out["size"] < size:
        raise ValueError(f"remote[{i}] slots are {out['size']} bytes, smaller than this size ({size})")
    return out


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
