"""rdma_cm connections for the python engine: cm_listen and cm_connect, one connection per QP,
with the native engine's private data."""

from __future__ import annotations

import contextlib
import struct
import time

from rdmabench.errors import VerbsError
from rdmabench.verbs import compat as c
from rdmabench.verbs import resources as res
from rdmabench.verbs.cm_channel import EventChannel

from pyverbs.cmid import CMID, AddrInfo, CMEvent, ConnParam  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.pyverbs_error import PyverbsError  # noqa: E402

from .endpoint import Endpoint

# rdma_cm private data, byte for byte the native engine's (ep_cm.c cm_pack)
PD_MAGIC = 0x5244424E  # "RDBN"
PD_VERSION = 1
PD_FMT = "!IB3xIIQQII"  # magic, version, QP index, slots, size, addr, rkey, qps = 40 bytes


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
    data = _pack(ep, qi)
    kw = dict(resources=ep._dev.reads_answered or 1, depth=ep._dev.reads_issued or 1, retry=7, rnr_retry=7,
              qp_num=ep._q[qi].qp.qpn)
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
