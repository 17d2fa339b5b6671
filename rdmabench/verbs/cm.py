"""Connections through rdma_cm with pyverbs' CMID: listen/accept and resolve/connect.

Both sides use an event channel (asynchronous rdma_cm) so every wait has a deadline:
pyverbs keeps the GIL while it blocks in ``rdma_get_cm_event``, so a thread cannot
rescue a hung call. ``cm_channel.EventChannel`` ``select()``s on the channel's
descriptor before it lets pyverbs read an event.

The RC QP is created through the CMID (``rdma_create_qp``) with our own CQs, so completions
are polled with ``resources.poll`` and its timeout. The buffer's addr/rkey/size travel in
the connection's private data:

- connect (client -> server, <= 56 bytes): ``CONNECT_FMT`` magic, version, size wanted
- accept (server -> client, <= 196 bytes): ``ACCEPT_FMT`` magic, version, addr, rkey, size

After ESTABLISHED, each side has a small control MR for JSON messages over SEND/RECV.

pyverbs caveats handled here: ``CMID.close`` nulls the Context and PD objects it handed
out (they belong to librdmacm) so those are never closed by us; a child CMID from a
connect request gets its own Context/PD wrappers so closing it leaves the listener's alone.
"""

from __future__ import annotations

import contextlib
import struct
import time
from collections import deque

from rdmabench.errors import VerbsError
from rdmabench.verbs import compat as c
from rdmabench.verbs.cm_channel import EventChannel
from rdmabench.verbs.cm_channel import cm_call as _cm
from rdmabench.errors import PeerUnavailable
from rdmabench import wire
from rdmabench.verbs.resources import DEFAULT_ACCESS, PeerInfo, SizeError, poll

from pyverbs.cmid import CMID, AddrInfo, CMEvent, ConnParam  # noqa: E402
from pyverbs.cq import CQ  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.mr import MR  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.pyverbs_error import PyverbsError  # noqa: E402
from pyverbs.qp import QPCap, QPInitAttr  # noqa: E402

MAGIC = b"RDBN"
VERSION = 1
CONNECT_FMT = "!4sBxxxQ"  # magic, version, buffer size the client wants
ACCEPT_FMT = "!4sBxxxQIxxxxQ"  # magic, version, addr, rkey, size
CTRL_SIZE = 4096  # control-message MR (JSON over SEND/RECV)
RD_ATOMIC = 16  # responder_resources / initiator_depth offered in ConnParam
RETRY = 7
RNR_RETRY = 7

def _expect(events: EventChannel, want: int, timeout_s: float, where: str, unrelated=None,
            timeout_error=VerbsError) -> bytes:
    """Wait for event ``want``; return its private data. Other events raise, except those
    ``unrelated`` accepts (it gets the un-acked event and returns True if it took care of it).
    A timeout raises ``timeout_error`` (PeerUnavailable while connecting: nothing exchanged yet)."""
    deadline = time.monotonic() + timeout_s
    name = c.cm_event_name(want)
    while True:
        event = events.get(deadline - time.monotonic(), f"{name} from {where}", timeout_error)
        etype = event.event_type
        if unrelated is not None and etype != want and unrelated(event):
            continue
        private = event.private_data if etype in (c.CM_EVENT_ESTABLISHED, c.CM_EVENT_CONNECT_REQUEST,
                                                  c.CM_EVENT_REJECTED) else b""
        event.close()  # ack
        if etype == want:
            return private
        got = c.cm_event_name(etype)
        if etype in (c.CM_EVENT_REJECTED, c.CM_EVENT_UNREACHABLE, c.CM_EVENT_ADDR_ERROR,
                     c.CM_EVENT_ROUTE_ERROR, c.CM_EVENT_CONNECT_ERROR):
            hint = " (nothing listening there?)" if etype == c.CM_EVENT_REJECTED else ""
            raise PeerUnavailable(f"rdma_cm {where}: got {got} while waiting for {name}{hint}")
        if etype in (c.CM_EVENT_TIMEWAIT_EXIT,):
            continue
        raise VerbsError(f"rdma_cm {where}: got {got} while waiting for {name}")


class _CMSide:
    """What both ends hold once connected: a CMID with an RC QP, CQs, a data MR and control MRs."""

    cmid: CMID
    where: str

    def _setup_qp_and_mrs(self, size: int, access: int, buffers: int = 1, max_wr: int = 16) -> None:
        self._stack = contextlib.ExitStack()
        ctx: Context = self.cmid.context
        pd: PD = self.cmid.pd
        self.device_name = self.cmid.dev_name
        # closed last (after the CMID has destroyed the QP that uses them)
        self.send_cq = _cm("create send CQ", CQ, ctx, 2 * max_wr)
        self._stack.callback(self.send_cq.close)
        self.recv_cq = _cm("create recv CQ", CQ, ctx, 2 * max_wr)
        self._stack.callback(self.recv_cq.close)
        self._stack.callback(self.cmid.close)  # rdma_destroy_qp + rdma_destroy_id
        cap = QPCap(max_send_wr=max_wr, max_recv_wr=max_wr, max_send_sge=1, max_recv_sge=1)
        init = QPInitAttr(qp_type=c.QPT_RC, scq=self.send_cq, rcq=self.recv_cq, cap=cap, sq_sig_all=0)
        _cm(f"create an RC QP through the CMID ({self.where})", self.cmid.create_qp, init)
        # closed first
        self.mrs = []
        for i in range(buffers):
            mr = _cm(f"register {size} B", MR, pd, size, access)
            self._stack.callback(mr.close)
            self.mrs.append(mr)
        self.mr = self.mrs[0]
        self.ctrl_send = _cm("register control send MR", MR, pd, CTRL_SIZE, c.ACCESS_LOCAL_WRITE)
        self._stack.callback(self.ctrl_send.close)
        self.ctrl_recv = _cm("register control recv MR", MR, pd, CTRL_SIZE, c.ACCESS_LOCAL_WRITE)
        self._stack.callback(self.ctrl_recv.close)
        self.size = size

    @property
    def qpn(self) -> int:
        return self.cmid.qpn

    # ----- data path

    def write(self, data: bytes, offset: int = 0, buf: int = 0) -> None:
        self.mrs[buf].write(data, len(data), offset)

    def read(self, length: int, offset: int = 0, buf: int = 0) -> bytes:
        return bytes(self.mrs[buf].read(length, offset))

    def post_write(self, remote: PeerInfo, size: int, buf: int = 0, remote_offset: int = 0) -> None:
        """RDMA WRITE the first ``size`` bytes of local buffer ``buf`` to the remote buffer."""
        self._check(size, remote, remote_offset)
        _cm(f"post RDMA WRITE of {size} B to {self.where}", self.cmid.post_write, self.mrs[buf], size,
            remote.addr + remote_offset, remote.rkey, c.SEND_SIGNALED)

    def post_read(self, remote: PeerInfo, size: int, buf: int = 0, remote_offset: int = 0) -> None:
        """RDMA READ ``size`` bytes of the remote buffer into the start of local buffer ``buf``."""
        self._check(size, remote, remote_offset)
        _cm(f"post RDMA READ of {size} B from {self.where}", self.cmid.post_read, self.mrs[buf], size,
            remote.addr + remote_offset, remote.rkey, c.SEND_SIGNALED)

    def _check(self, size, remote, remote_offset):
        if size <= 0 or size > self.size or remote_offset + size > remote.size:
            raise SizeError(f"{size} B does not fit the local ({self.size} B) or remote ({remote.size} B) buffer")

    def wait_send(self, timeout_s: float = 5.0):
        return poll(self.send_cq, 1, timeout_s)[0]

    # ----- control messages (JSON over SEND/RECV)

    def post_ctrl_recv(self) -> None:
        _cm("post control RECV", self.cmid.post_recv, self.ctrl_recv, CTRL_SIZE)

    def send_ctrl(self, msg: dict, timeout_s: float = 5.0) -> None:
        data = wire.encode(msg)
        if len(data) > CTRL_SIZE:
            raise VerbsError(f"control message of {len(data)} B is over {CTRL_SIZE} B")
        self.ctrl_send.write(data, len(data), 0)
        _cm("post control SEND", self.cmid.post_send, self.ctrl_send, c.SEND_SIGNALED, len(data))
        poll(self.send_cq, 1, timeout_s)

    def recv_ctrl(self, timeout_s: float = 5.0, repost: bool = True) -> dict:
        wc = poll(self.recv_cq, 1, timeout_s)[0]
        raw = bytes(self.ctrl_recv.read(wc.byte_len, 0))
        if repost:
            self.post_ctrl_recv()
        try:
            return wire.decode(raw, self.where)
        except wire.WireError as exc:
            raise VerbsError(str(exc)) from None

    def close(self) -> None:
        stack, self._stack = getattr(self, "_stack", None), None
        if stack is not None:
            stack.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CMClient(_CMSide):
    """Active side: resolve, create the QP through the CMID, connect, learn the server's buffer."""

    def __init__(self, peer_ip: str, port: int, size: int, timeout_s: float = 5.0, src_ip: str | None = None,
                 access: int = DEFAULT_ACCESS, buffers: int = 2):
        self.where = f"{peer_ip}:{port}"
        self.timeout_s = timeout_s
        self.remote: PeerInfo | None = None
        self.events = EventChannel()
        try:
            self.cmid = _cm("create a CMID", CMID, self.events.channel)
            self._connect(peer_ip, port, size, src_ip, access, buffers)
        except BaseException:
            self.close()
            raise

    def _connect(self, peer_ip, port, size, src_ip, access, buffers) -> None:
        ms = int(self.timeout_s * 1000)
        addr = _cm(f"rdma_getaddrinfo {self.where}", AddrInfo, src=src_ip, dst=peer_ip, dst_service=str(port),
                   port_space=c.PS_TCP, error=PeerUnavailable)
        _cm(f"resolve address {self.where}", self.cmid.resolve_addr, addr, ms, error=PeerUnavailable)
        # a little past rdma_cm's own timeout, so its ADDR_ERROR / ROUTE_ERROR is what we report
        _expect(self.events, c.CM_EVENT_ADDR_RESOLVED, self.timeout_s + 1, self.where,
                timeout_error=PeerUnavailable)
        _cm(f"resolve route {self.where}", self.cmid.resolve_route, ms, error=PeerUnavailable)
        _expect(self.events, c.CM_EVENT_ROUTE_RESOLVED, self.timeout_s + 1, self.where,
                timeout_error=PeerUnavailable)
        self._setup_qp_and_mrs(size, access, buffers)
        self.post_ctrl_recv()  # before connecting: the server may answer as soon as it is established
        hello = struct.pack(CONNECT_FMT, MAGIC, VERSION, size)
        param = ConnParam(resources=RD_ATOMIC, depth=RD_ATOMIC, retry=RETRY, rnr_retry=RNR_RETRY,
                          data_len=len(hello))
        param.set_private_data(hello)
        _cm(f"connect to {self.where}", self.cmid.connect, param, error=PeerUnavailable)
        private = _expect(self.events, c.CM_EVENT_ESTABLISHED, self.timeout_s, self.where,
                          timeout_error=PeerUnavailable)
        self.remote = _parse_accept(private, self.where)

    def disconnect(self, timeout_s: float = 2.0) -> None:
        with contextlib.suppress(PyverbsError):
            self.cmid.disconnect()
            with contextlib.suppress(VerbsError):
                _expect(self.events, c.CM_EVENT_DISCONNECTED, timeout_s, self.where)

    def close(self) -> None:
        super().close()
        cmid = getattr(self, "cmid", None)
        if cmid is not None:
            cmid.close()  # no-op if the stack already closed it
        events, self.events = getattr(self, "events", None), None
        if events is not None:
            events.close()


def _parse_accept(private: bytes, where: str) -> PeerInfo:
    n = struct.calcsize(ACCEPT_FMT)
    if len(private) < n:
        raise VerbsError(f"{where} accepted with {len(private)} B of private data, expected {n} "
                         "(is it an rdmabench peer?)")
    magic, version, addr, rkey, size = struct.unpack(ACCEPT_FMT, private[:n])
    if magic != MAGIC or version != VERSION:
        raise VerbsError(f"{where} is not an rdmabench v{VERSION} peer (magic {magic!r}, version {version})")
    return PeerInfo(qpn=0, psn=0, gid="", lid=0, addr=addr, rkey=rkey, size=size, mtu=0)


class CMServerConnection(_CMSide):
    """Passive side of one accepted connection (made by ``CMListener.accept``)."""

    def __init__(self, listener: "CMListener", child: CMID, size: int, access: int, timeout_s: float, where: str):
        self.where = where
        self.listener = listener
        self.cmid = child
        try:
            # our own wrappers: closing this CMID must not null the listener's Context/PD
            Context(cmid=child)
            PD(child)
            self._setup_qp_and_mrs(size, access)
            self.post_ctrl_recv()
            reply = struct.pack(ACCEPT_FMT, MAGIC, VERSION, self.mr.buf, self.mr.rkey, size)
            param = ConnParam(resources=RD_ATOMIC, depth=RD_ATOMIC, retry=RETRY, rnr_retry=RNR_RETRY,
                              data_len=len(reply))
            param.set_private_data(reply)
            _cm(f"accept {where}", child.accept, param)
            _expect(listener.events, c.CM_EVENT_ESTABLISHED, timeout_s, where, unrelated=listener._absorb)
        except BaseException:
            if getattr(self, "_stack", None) is None:
                with contextlib.suppress(PyverbsError):
                    child.reject()
            self.close()
            raise

    def wait_disconnect(self, timeout_s: float) -> None:
        with contextlib.suppress(VerbsError):
            _expect(self.listener.events, c.CM_EVENT_DISCONNECTED, timeout_s, self.where,
                    unrelated=self.listener._queue_request)
        with contextlib.suppress(PyverbsError):
            self.cmid.disconnect()

    def close(self) -> None:
        super().close()
        if getattr(self, "cmid", None) is not None:
            self.cmid.close()


class CMListener:
    """A listening CMID bound to ``bind_ip:port``; ``accept`` returns one CMServerConnection."""

    def __init__(self, bind_ip: str, port: int, backlog: int = 8):
        self.where = f"{bind_ip}:{port}"
        self.events = EventChannel()
        self._pending: deque[tuple[CMID, bytes]] = deque()
        try:
            self.cmid = _cm("create a listening CMID", CMID, self.events.channel)
            addr = _cm(f"rdma_getaddrinfo {self.where}", AddrInfo, src=bind_ip, src_service=str(port),
                       port_space=c.PS_TCP, flags=c.RAI_PASSIVE)
            _cm(f"bind rdma_cm to {self.where}", self.cmid.bind_addr, addr)
            _cm(f"listen on {self.where}", self.cmid.listen, backlog)
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        return self.events.fileno()

    def _queue_request(self, event: CMEvent) -> bool:
        """A connect request that arrived while we were busy: keep it for the next accept."""
        if event.event_type != c.CM_EVENT_CONNECT_REQUEST:
            return False
        child = CMID(event, listen_id=self.cmid)
        private = event.private_data
        event.close()
        self._pending.append((child, private))
        return True

    def _absorb(self, event: CMEvent) -> bool:
        """While waiting for one connection's ESTABLISHED: keep new requests, drop late
        DISCONNECTED / TIMEWAIT_EXIT of earlier connections (pyverbs cannot tell us whose)."""
        if self._queue_request(event):
            return True
        if event.event_type in (c.CM_EVENT_DISCONNECTED, c.CM_EVENT_TIMEWAIT_EXIT):
            event.close()
            return True
        return False

    def has_pending(self) -> bool:
        return bool(self._pending)

    def accept(self, timeout_s: float = 30.0, max_size: int = 1 << 30, access: int = DEFAULT_ACCESS,
               op_timeout_s: float = 10.0) -> CMServerConnection:
        """Wait up to ``timeout_s`` for a client; set up a buffer of the size it asks for and accept."""
        if not self._pending:
            deadline = time.monotonic() + timeout_s
            while not self._pending:
                event = self.events.get(deadline - time.monotonic(), f"a connection to {self.where}")
                if not self._queue_request(event):
                    event.close()  # a late event of an earlier connection
        child, private = self._pending.popleft()
        n = struct.calcsize(CONNECT_FMT)
        try:
            magic, version, size = struct.unpack(CONNECT_FMT, private[:n])
        except struct.error:
            magic, version, size = b"", 0, 0
        where = f"client of {self.where}"
        if magic != MAGIC or version != VERSION or not 0 < size <= max_size:
            with contextlib.suppress(PyverbsError):
                child.reject()
            child.close()
            raise VerbsError(f"{where}: rejected a connect request (magic {magic!r}, version {version}, "
                             f"size {size}, max {max_size})")
        return CMServerConnection(self, child, size, access, op_timeout_s, where)

    def close(self) -> None:
        while self._pending:
            child, _ = self._pending.popleft()
            with contextlib.suppress(PyverbsError):
                child.reject()
            child.close()
        cmid = getattr(self, "cmid", None)
        if cmid is not None:
            cmid.close()
        events, self.events = getattr(self, "events", None), None
        if events is not None:
            events.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
