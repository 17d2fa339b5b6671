"""Verbs resources as explicit objects, after rdma-core's tests/base.py.

Layers, each adding one concern:

- ``Device``: device context, protection domain, port and GID facts.
- ``Buffer`` (an MR over a page-aligned buffer) and ``CompletionQueue``.
- ``RCQueuePair``: an RC QP with ``to_init`` / ``to_rtr(remote)`` / ``to_rts`` and
  helpers to post RDMA WRITE / READ / SEND / RECV.
- ``RCEndpoint``: Buffer + CQ + RC QP on one Device, what one side of a connection needs.

Every object is a context manager and ``close()`` is idempotent; composites close
their parts in reverse order of creation, also when setup fails half way.
``poll()`` waits for completions with a deadline and raises ``VerbsError`` instead
of hanging. ``PeerInfo`` is what two ends exchange to connect their QPs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import resource as _resource
import time
import weakref
from dataclasses import MISSING, asdict, dataclass

from rdmabench.errors import DeviceNotFound, NoDevices, RdmabenchError, VerbsError
from rdmabench.verbs import compat as c  # first: a clear error if pyverbs is missing

from pyverbs.addr import GID, AHAttr, GlobalRoute  # noqa: E402
from pyverbs.cq import CQ  # noqa: E402
from pyverbs.device import Context, get_device_list  # noqa: E402
from pyverbs.mr import MR  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.pyverbs_error import PyverbsError  # noqa: E402
from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr  # noqa: E402
from pyverbs.wr import SGE, RecvWR, SendWR  # noqa: E402

PAGE_SIZE = _resource.getpagesize()

# QP attributes, the values ibv_rc_pingpong and rdma-core's tests use.
TIMEOUT = 14  # local ACK timeout: 4.096 us * 2^14 = 67 ms (two emulated guests answer in ~0.5 ms)
RETRY_CNT = 7  # transport retries before IBV_WC_RETRY_EXC_ERR
RNR_RETRY = 7  # 7 = retry forever on receiver-not-ready
MIN_RNR_TIMER = 12  # 0.64 ms between RNR retries
MAX_RD_ATOMIC = 255  # outstanding RDMA READs: the device's maximum, as perftest (-o); the attribute is one byte
HOP_LIMIT = 64  # IP TTL of RoCEv2 packets

DEFAULT_ACCESS = c.ACCESS_LOCAL_WRITE | c.ACCESS_REMOTE_WRITE | c.ACCESS_REMOTE_READ

_MTU_ENUM_BY_BYTES = {256: c.MTU_256, 512: c.MTU_512, 1024: c.MTU_1024, 2048: c.MTU_2048, 4096: c.MTU_4096}


class SizeError(RdmabenchError):
    """A transfer size the device cannot move in one message (0, or above max_msg_sz)."""


# Every open wrapper, so tests (and curious users) can see nothing leaked.
_OPEN: "weakref.WeakSet[_Resource]" = weakref.WeakSet()


def open_resources() -> list[str]:
    """Descriptions of rdmabench verbs objects that are open right now."""
    return sorted(repr(r) for r in _OPEN)


class _Resource:
    """Context-manager plumbing: subclasses set up in __init__ and implement _close()."""

    closed = True

    def _opened(self) -> None:
        self.closed = False
        _OPEN.add(self)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        _OPEN.discard(self)
        self._close()

    def _close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        # The GC path: pyverbs would free the C objects anyway; keep our books straight.
        with contextlib.suppress(Exception):
            self.close()


def _verbs_call(what: str, fn, *args, **kwargs):
    """Run a pyverbs call; turn its error into a VerbsError that says what we were doing."""
    try:
        return fn(*args, **kwargs)
    except PyverbsError as exc:
        raise VerbsError(f"{what}: {exc}") from exc


# --------------------------------------------------------------------------- data exchanged


@dataclass(frozen=True)
class PeerInfo:
    """What one end tells the other to connect an RC QP and reach its buffer."""

    qpn: int  # QP number
    psn: int  # the sender's initial send PSN (the receiver uses it as rq_psn)
    gid: str  # 'xxxx:...:xxxx' (8 groups), the GID at the sender's gid_index
    lid: int  # 0 on RoCE
    addr: int  # buffer virtual address for RDMA
    rkey: int  # remote key of the buffer's MR
    size: int  # buffer length in bytes
    mtu: int  # the sender's port active MTU in bytes (256..4096)
    rd_atomic: int = 0  # RDMA READs the sender answers at once (its responder resources); 0: not said

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PeerInfo":
        try:
            fields = cls.__dataclass_fields__
            return cls(**{f: d[f] for f in fields if f in d or fields[f].default is MISSING})
        except (KeyError, TypeError) as exc:
            raise VerbsError(f"peer sent incomplete connection info {d!r}: missing {exc}") from exc


# --------------------------------------------------------------------------- payload checks


def first_mismatch(got: bytes, want: bytes) -> int | None:
    """Index of the first differing byte (or of the length difference), None when equal."""
    if got == want:
        return None
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return i
    return min(len(got), len(want))


# --------------------------------------------------------------------------- device


def device_names() -> list[str]:
    return [d.name.decode() if isinstance(d.name, bytes) else str(d.name) for d in get_device_list()]


class Device(_Resource):
    """An opened device context and a PD, with the port and GID facts connections need."""

    def __init__(self, name: str, port: int = 1, gid_index: int = 0):
        names = device_names()
        if not names:
            raise NoDevices("no RDMA device on this host (for soft-RoCE: modprobe rdma_rxe; rdma link add ...)")
        if name not in names:
            raise DeviceNotFound(f"RDMA device {name!r} not found; this host has: {', '.join(names)}")
        self.name = name
        self.port = port
        self.gid_index = gid_index
        self.ctx = _verbs_call(f"open device {name}", Context, name=name)
        try:
            self.device_attr = _verbs_call(f"query device {name}", self.ctx.query_device)
            self.port_attr = _verbs_call(f"query {name} port {port}", self.ctx.query_port, port)
            if self.port_attr.state != c.PORT_ACTIVE:
                raise VerbsError(f"{name} port {port} is not ACTIVE (state {self.port_attr.state})")
            gid = _verbs_call(f"query GID {gid_index} of {name} port {port}", self.ctx.query_gid, port, gid_index)
            self.gid = str(gid)
            if int(self.gid.replace(":", ""), 16) == 0:
                raise VerbsError(f"GID index {gid_index} of {name} port {port} is empty; pick one that holds "
                                 "the interface's address (rxe: the IPv4-mapped GID, usually index 1)")
            self.pd = _verbs_call(f"allocate PD on {name}", PD, self.ctx)
        except BaseException:
            self.ctx.close()
            raise
        self._opened()

    @property
    def is_roce(self) -> bool:
        return self.port_attr.link_layer == c.LINK_LAYER_ETHERNET

    @property
    def active_mtu(self) -> int:
        """Port active MTU in bytes."""
        return c.mtu_bytes(self.port_attr.active_mtu)

    @property
    def reads_answered(self) -> int:
        """RDMA READs one QP answers at once (responder resources): the device's, at most 255."""
        return min(self.device_attr.max_qp_rd_atom, MAX_RD_ATOMIC)

    @property
    def reads_issued(self) -> int:
        """RDMA READs one QP keeps in flight (initiator depth): the device's, at most 255."""
        return min(self.device_attr.max_qp_init_rd_atom, MAX_RD_ATOMIC)

    @property
    def max_msg_sz(self) -> int:
        return int(self.port_attr.max_msg_sz)

    def check_size(self, size: int) -> None:
        if size <= 0:
            raise SizeError(f"size must be at least 1 byte, got {size}")
        if size > self.max_msg_sz:
            raise SizeError(f"size {size} B is above {self.name} port {self.port}'s max message size "
                            f"{self.max_msg_sz} B; use a smaller size or split the transfer")

    def _close(self) -> None:
        self.pd.close()
        self.ctx.close()

    def __repr__(self) -> str:
        return f"Device({self.name!r}, port={self.port}, gid_index={self.gid_index})"


def gid_to_ip(gid: str) -> ipaddress._BaseAddress:
    """'0000:...:ffff:0a4d:0001' -> IPv4Address('10.77.0.1'); other GIDs -> their IPv6 address."""
    addr = ipaddress.IPv6Address(int(gid.replace(":", ""), 16))
    return addr.ipv4_mapped or addr


def find_gid_for_ip(ip: str, port: int = 1) -> tuple[str, int]:
    """The (device, gid_index) whose GID table holds ``ip`` (RoCE); raises VerbsError if none does."""
    want = ipaddress.ip_address(ip)
    names = device_names()
    if not names:
        raise NoDevices("no RDMA device on this host (for soft-RoCE: modprobe rdma_rxe; rdma link add ...)")
    for name in names:
        ctx = Context(name=name)
        try:
            for idx in range(ctx.query_port(port).gid_tbl_len):
                try:
                    gid = str(ctx.query_gid(port, idx))
                except PyverbsError:
                    continue
                if int(gid.replace(":", ""), 16) and gid_to_ip(gid) == want:
                    return name, idx
        finally:
            ctx.close()
    raise VerbsError(f"no RDMA device has a GID for {ip} (devices: {', '.join(names)}); "
                     "is the rxe link on the interface that holds this address?")


# --------------------------------------------------------------------------- MR, CQ


class Buffer(_Resource):
    """A page-aligned buffer registered as an MR with the given access flags."""

    def __init__(self, device: Device, size: int, access: int = DEFAULT_ACCESS):
        if size <= 0:
            raise SizeError(f"buffer size must be at least 1 byte, got {size}")
        # pyverbs allocates the buffer with posix_memalign(page size) and zeroes it.
        self.mr = _verbs_call(f"register a {size} B MR on {device.name}", MR, device.pd, size, access)
        self.size = size
        self.access = access
        if self.mr.buf % PAGE_SIZE:
            self.mr.close()
            raise VerbsError(f"MR buffer at {self.mr.buf:#x} is not page aligned")
        self._opened()

    addr = property(lambda self: self.mr.buf)
    lkey = property(lambda self: self.mr.lkey)
    rkey = property(lambda self: self.mr.rkey)

    def write(self, data: bytes, offset: int = 0) -> None:
        if offset + len(data) > self.size:
            raise ValueError(f"{len(data)} B at offset {offset} does not fit a {self.size} B buffer")
        self.mr.write(data, len(data), offset)

    def read(self, length: int | None = None, offset: int = 0) -> bytes:
        length = self.size - offset if length is None else length
        return bytes(self.mr.read(length, offset))

    def _close(self) -> None:
        self.mr.close()

    def __repr__(self) -> str:
        return f"Buffer(size={self.size})"


class CompletionQueue(_Resource):
    def __init__(self, device: Device, depth: int = 64):
        self.cq = _verbs_call(f"create a CQ of {depth} on {device.name}", CQ, device.ctx, depth)
        self.depth = depth
        self._opened()

    def _close(self) -> None:
        self.cq.close()

    def __repr__(self) -> str:
        return f"CompletionQueue(depth={self.depth})"


def poll(cq, count: int = 1, timeout_s: float = 5.0) -> list:
    """Poll ``count`` completions from ``cq`` (a CompletionQueue or a pyverbs CQ).

    Raises VerbsError naming the status (e.g. RETRY_EXC_ERR) on a failed completion, and
    VerbsError after ``timeout_s`` seconds if fewer than ``count`` arrived.
    """
    raw = getattr(cq, "cq", cq)
    start = time.monotonic()
    deadline = start + timeout_s
    wcs: list = []
    while len(wcs) < count:
        n, got = raw.poll(count - len(wcs))
        for wc in got:
            if wc.status != c.WC_SUCCESS:
                raise VerbsError(
                    f"completion of wr_id {wc.wr_id} failed with {c.wc_status_name(wc.status)} "
                    f"(status {wc.status}, vendor_err {wc.vendor_err})")
        wcs.extend(got)
        if n == 0:
            now = time.monotonic()
            if now >= deadline:
                raise VerbsError(f"timed out after {timeout_s:g} s waiting for {count} completion(s), "
                                 f"got {len(wcs)}")
            # spin for the first millisecond (latency), then back off so a shared CPU is not burnt
            if now - start > 0.001:
                time.sleep(0.0002)
    return wcs


# --------------------------------------------------------------------------- RC QP


class RCQueuePair(_Resource):
    """An RC QP. Created in RESET; ``to_init``, ``to_rtr(remote)``, ``to_rts`` walk it to RTS."""

    def __init__(self, device: Device, cq: CompletionQueue, max_send_wr: int = 16, max_recv_wr: int = 16,
                 max_inline_data: int = 0):
        self.device = device
        cap = QPCap(max_send_wr=max_send_wr, max_recv_wr=max_recv_wr, max_send_sge=1, max_recv_sge=1,
                    max_inline_data=max_inline_data)
        init_attr = QPInitAttr(qp_type=c.QPT_RC, scq=cq.cq, rcq=cq.cq, cap=cap, sq_sig_all=0)
        self.qp = _verbs_call(f"create an RC QP on {device.name}", QP, device.pd, init_attr)
        self.psn = random.getrandbits(24)
        self.path_mtu = device.port_attr.active_mtu
        self._opened()

    @property
    def qpn(self) -> int:
        return self.qp.qp_num

    @property
    def state(self) -> int:
        attr, _ = self.qp.query(c.QP_STATE)
        return attr.qp_state

    def to_init(self, access: int = DEFAULT_ACCESS) -> None:
        attr = QPAttr(qp_state=c.QPS_INIT)
        attr.qp_state = c.QPS_INIT
        attr.pkey_index = 0
        attr.port_num = self.device.port
        attr.qp_access_flags = access  # what the remote end may do to our MRs through this QP
        mask = c.QP_STATE | c.QP_PKEY_INDEX | c.QP_PORT | c.QP_ACCESS_FLAGS
        _verbs_call("modify QP RESET->INIT", self.qp.modify, attr, mask)

    def to_rtr(self, remote: PeerInfo) -> None:
        attr = QPAttr(qp_state=c.QPS_RTR)
        attr.qp_state = c.QPS_RTR
        # the smaller of our port's active MTU and the peer's
        self.path_mtu = min(self.device.port_attr.active_mtu, _MTU_ENUM_BY_BYTES.get(remote.mtu, c.MTU_1024))
        attr.path_mtu = self.path_mtu
        attr.dest_qp_num = remote.qpn
        attr.rq_psn = remote.psn  # the first PSN the peer will send
        attr.max_dest_rd_atomic = self.device.reads_answered
        attr.min_rnr_timer = MIN_RNR_TIMER
        if self.device.is_roce:
            # RoCE needs a GRH: which of our GIDs to send from, which GID to send to
            route = GlobalRoute(dgid=GID(remote.gid), sgid_index=self.device.gid_index, hop_limit=HOP_LIMIT)
            attr.ah_attr = AHAttr(port_num=self.device.port, is_global=1, gr=route, dlid=remote.lid)
        else:
            attr.ah_attr = AHAttr(port_num=self.device.port, is_global=0, dlid=remote.lid)
        mask = (c.QP_STATE | c.QP_AV | c.QP_PATH_MTU | c.QP_DEST_QPN | c.QP_RQ_PSN
                | c.QP_MAX_DEST_RD_ATOMIC | c.QP_MIN_RNR_TIMER)
        _verbs_call(f"modify QP INIT->RTR (remote qpn {remote.qpn}, gid {remote.gid})", self.qp.modify, attr, mask)

    def to_rts(self, remote: PeerInfo | None = None) -> None:
        attr = QPAttr(qp_state=c.QPS_RTS)
        attr.qp_state = c.QPS_RTS
        attr.sq_psn = self.psn  # what we told the peer in PeerInfo.psn
        attr.timeout = TIMEOUT
        attr.retry_cnt = RETRY_CNT
        attr.rnr_retry = RNR_RETRY
        attr.max_rd_atomic = self.device.reads_issued
        if remote is not None and remote.rd_atomic:  # no more READs in flight than the peer answers
            attr.max_rd_atomic = min(attr.max_rd_atomic, remote.rd_atomic)
        mask = c.QP_STATE | c.QP_SQ_PSN | c.QP_TIMEOUT | c.QP_RETRY_CNT | c.QP_RNR_RETRY | c.QP_MAX_QP_RD_ATOMIC
        _verbs_call("modify QP RTR->RTS", self.qp.modify, attr, mask)

    def connect(self, remote: PeerInfo, access: int = DEFAULT_ACCESS) -> None:
        """RESET -> INIT -> RTR -> RTS against ``remote``."""
        self.to_init(access)
        self.to_rtr(remote)
        self.to_rts(remote)

    # ----- posting

    def post_write(self, local: Buffer, remote: PeerInfo, size: int, local_offset: int = 0,
                   remote_offset: int = 0, wr_id: int = 1) -> None:
        self._post_rdma(c.WR_RDMA_WRITE, "RDMA WRITE", local, remote, size, local_offset, remote_offset, wr_id)

    def post_read(self, local: Buffer, remote: PeerInfo, size: int, local_offset: int = 0,
                  remote_offset: int = 0, wr_id: int = 2) -> None:
        self._post_rdma(c.WR_RDMA_READ, "RDMA READ", local, remote, size, local_offset, remote_offset, wr_id)

    def _post_rdma(self, opcode, name, local, remote, size, local_offset, remote_offset, wr_id):
        if local_offset + size > local.size or remote_offset + size > remote.size:
            raise SizeError(f"{name} of {size} B does not fit the local ({local.size} B) "
                            f"or remote ({remote.size} B) buffer at those offsets")
        sge = SGE(local.addr + local_offset, size, local.lkey)
        wr = SendWR(wr_id=wr_id, opcode=opcode, num_sge=1, sg=[sge], send_flags=c.SEND_SIGNALED)
        wr.set_wr_rdma(remote.rkey, remote.addr + remote_offset)
        _verbs_call(f"post {name} of {size} B", self.qp.post_send, wr)

    def post_send(self, local: Buffer, size: int, offset: int = 0, wr_id: int = 3) -> None:
        sge = SGE(local.addr + offset, size, local.lkey)
        wr = SendWR(wr_id=wr_id, opcode=c.WR_SEND, num_sge=1, sg=[sge], send_flags=c.SEND_SIGNALED)
        _verbs_call(f"post SEND of {size} B", self.qp.post_send, wr)

    def post_recv(self, local: Buffer, size: int, offset: int = 0, wr_id: int = 4) -> None:
        sge = SGE(local.addr + offset, size, local.lkey)
        _verbs_call(f"post RECV of {size} B", self.qp.post_recv, RecvWR(wr_id=wr_id, num_sge=1, sg=[sge]))

    def _close(self) -> None:
        self.qp.close()

    def __repr__(self) -> str:
        return f"RCQueuePair(qpn={self.qpn if not self.closed else '-'})"


# --------------------------------------------------------------------------- one end


class RCEndpoint(_Resource):
    """Buffer + CQ + RC QP on a Device: one end of a connection. Closes them in reverse order."""

    def __init__(self, device: Device, size: int, access: int = DEFAULT_ACCESS, cq_depth: int = 64,
                 max_send_wr: int = 16, max_recv_wr: int = 16):
        self.device = device
        with contextlib.ExitStack() as stack:
            self.buffer = stack.enter_context(Buffer(device, size, access))
            self.cq = stack.enter_context(CompletionQueue(device, cq_depth))
            self.qp = stack.enter_context(RCQueuePair(device, self.cq, max_send_wr, max_recv_wr))
            self._stack = stack.pop_all()  # success: keep them open, close later in reverse
        self._opened()

    def info(self) -> PeerInfo:
        return PeerInfo(qpn=self.qp.qpn, psn=self.qp.psn, gid=self.device.gid, lid=self.device.port_attr.lid,
                        addr=self.buffer.addr, rkey=self.buffer.rkey, size=self.buffer.size,
                        mtu=self.device.active_mtu,
                        rd_atomic=self.device.reads_answered)

    def connect(self, remote: PeerInfo) -> None:
        self.qp.connect(remote, self.buffer.access)

    def _close(self) -> None:
        self._stack.close()

    def __repr__(self) -> str:
        return f"RCEndpoint(size={self.buffer.size})"
