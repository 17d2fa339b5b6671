"""Verbs resources inside one soft-RoCE guest: lifetimes, QP states, the python roundtrip,
poll timeouts, the OOB exchange and rdma_cm to the guest's own address.

Run through the lab (it sets the environment):
    rdmabench lab -- 'python -m pytest tests/lab/one_host'
"""

import threading
import time

import pytest

from rdmabench.errors import RdmabenchError, VerbsError


@pytest.fixture(scope="module")
def lab(lab_env):  # tests/lab/conftest.py: fails (never skips) outside the lab
    return lab_env


@pytest.fixture
def r():
    from rdmabench.verbs import resources

    assert resources.open_resources() == [], "a previous test leaked verbs objects"
    yield resources
    assert resources.open_resources() == [], "this test leaked verbs objects"


@pytest.fixture
def close_log(monkeypatch, r):
    """Record the order in which our wrappers close."""
    log = []
    for cls in (r.Device, r.Buffer, r.CompletionQueue, r.RCQueuePair):
        original = cls._close

        def wrapped(self, _original=original, _name=cls.__name__):
            log.append(_name)
            return _original(self)

        monkeypatch.setattr(cls, "_close", wrapped)
    return log


# --------------------------------------------------------------------------- lifetimes


def test_outstanding_reads_are_the_devices_and_perftest_is_given_them(lab):
    from rdmabench import devices
    from rdmabench.perf import perftest

    most = devices.describe(lab["device"]).max_qp_rd_atom
    assert most and most >= 1
    args = perftest.argv("read_bw", lab["device"], lab["gid_index"], 65536, 100)
    assert args[args.index("-o") + 1] == str(min(most, 255))


def test_device_opens_and_closes(r, lab):
    with r.Device(lab["device"], gid_index=lab["gid_index"]) as dev:
        assert dev.pd is not None
        assert dev.is_roce
        assert dev.active_mtu in (1024, 4096)
        assert dev.max_msg_sz >= 1 << 20
        assert r.gid_to_ip(dev.gid) == __import__("ipaddress").ip_address(lab["ip"])
        assert r.open_resources() == [repr(dev)]
    assert dev.closed


def test_endpoint_closes_in_reverse_order(r, lab, close_log):
    with r.Device(lab["device"], gid_index=lab["gid_index"]) as dev:
        with r.RCEndpoint(dev, 4096) as ep:
            assert ep.buffer.addr % r.PAGE_SIZE == 0
        assert close_log == ["RCQueuePair", "CompletionQueue", "Buffer"]
    assert close_log[-1] == "Device"


def test_no_leak_when_setup_fails_mid_way(r, lab, close_log):
    with r.Device(lab["device"], gid_index=lab["gid_index"]) as dev:
        too_many = dev.device_attr.max_qp_wr + 1
        with pytest.raises(VerbsError, match="create an RC QP"):
            r.RCEndpoint(dev, 4096, max_send_wr=too_many)  # Buffer and CQ exist, the QP fails
        assert close_log == ["CompletionQueue", "Buffer"]
        assert r.open_resources() == [repr(dev)]


def test_unknown_device_lists_the_real_ones(r, lab):
    from rdmabench.errors import DeviceNotFound

    with pytest.raises(DeviceNotFound, match=lab["device"]):
        r.Device("no_such_dev0")


def test_empty_gid_index_is_refused(r, lab):
    with pytest.raises(VerbsError, match="empty|GID"):
        r.Device(lab["device"], gid_index=100)


# --------------------------------------------------------------------------- QP states


def test_qp_state_transitions_reach_rts(r, lab):
    from rdmabench.verbs import compat as c

    with r.Device(lab["device"], gid_index=lab["gid_index"]) as dev, \
            r.RCEndpoint(dev, 4096) as a, r.RCEndpoint(dev, 4096) as b:
        assert a.qp.state == c.QPS_RESET
        a.qp.to_init()
        assert a.qp.state == c.QPS_INIT
        a.qp.to_rtr(b.info())
        assert a.qp.state == c.QPS_RTR
        a.qp.to_rts()
        assert a.qp.state == c.QPS_RTS
        b.connect(a.info())
        assert b.qp.state == c.QPS_RTS
        assert a.qp.path_mtu == dev.port_attr.active_mtu


def test_send_recv_between_two_qps(r, lab):
    with r.Device(lab["device"], gid_index=lab["gid_index"]) as dev, \
            r.RCEndpoint(dev, 4096) as a, r.RCEndpoint(dev, 4096) as b:
        a.connect(b.info())
        b.connect(a.info())
        b.qp.post_recv(b.buffer, 4096)
        a.buffer.write(b"hello over SEND")
        a.qp.post_send(a.buffer, 15)
        r.poll(a.cq, 1, 5.0)
        (wc,) = r.poll(b.cq, 1, 5.0)
        assert wc.byte_len == 15
        assert b.buffer.read(15) == b"hello over SEND"


def test_bad_rkey_is_reported_by_name(r, lab):
    with r.Device(lab["device"], gid_index=lab["gid_index"]) as dev, \
            r.RCEndpoint(dev, 4096) as a, r.RCEndpoint(dev, 4096) as b:
        a.connect(b.info())
        b.connect(a.info())
        bad = r.PeerInfo(**{**b.info().to_dict(), "rkey": b.info().rkey ^ 0x5A5A00})
        a.qp.post_write(a.buffer, bad, 64)
        with pytest.raises(VerbsError, match="REM_ACCESS_ERR"):
            r.poll(a.cq, 1, 5.0)


def test_poll_timeout_raises_within_bound(r, lab):
    with r.Device(lab["device"], gid_index=lab["gid_index"]) as dev, r.CompletionQueue(dev) as cq:
        t0 = time.monotonic()
        with pytest.raises(VerbsError, match="timed out after 0.5 s"):
            r.poll(cq, 1, 0.5)
        elapsed = time.monotonic() - t0
        assert 0.5 <= elapsed < 1.5


# --------------------------------------------------------------------------- roundtrip


@pytest.mark.parametrize("size", [1, 64 << 10, 8 << 20], ids=["1B", "64KiB", "8MiB"])
def test_python_roundtrip_verifies(r, lab, size):
    from rdmabench.verbs.roundtrip import roundtrip

    res = roundtrip(lab["device"], lab["gid_index"], size=size, timeout_s=30.0)
    assert res["write_verified"] and res["read_verified"], res
    assert res["engine"] == "python" and res["size"] == size and res["device"] == lab["device"]
    assert res["write_us"] > 0 and res["read_us"] > 0
    assert res["active_mtu"] in (1024, 4096)


def test_roundtrip_refuses_bad_sizes(r, lab):
    from rdmabench.verbs.roundtrip import roundtrip

    with pytest.raises(RdmabenchError, match="at least 1 byte"):
        roundtrip(lab["device"], lab["gid_index"], size=0)
    with r.Device(lab["device"], gid_index=lab["gid_index"]) as dev:
        too_big = dev.max_msg_sz + 1
    with pytest.raises(RdmabenchError, match="max message size"):
        roundtrip(lab["device"], lab["gid_index"], size=too_big)


# --------------------------------------------------------------------------- OOB and rdma_cm to our own IP


def _peer_service(lab):
    """The "verbs-peer" service of `rdmabench serve`, on this host's link address."""
    from rdmabench.verbs import peer
    from rdmabench.wire import Server

    service = peer.PeerService(lab["ip"], lab["device"], lab["gid_index"])
    return service, Server(lab["ip"], 0, {"verbs-peer": (service.handle, dict)}, log=lambda m: None)


def test_peer_check_over_oob_and_cm_to_own_ip(r, lab):
    from rdmabench.verbs import peer

    service, server = _peer_service(lab)
    try:
        res_cm = peer.check(lab["ip"], server.port, size=64 << 10, mode="cm", timeout_s=10.0, cm_port=7481)
        res_oob = peer.check(lab["ip"], server.port, size=1 << 20, mode="oob", device=lab["device"],
                             gid_index=lab["gid_index"], timeout_s=10.0)
    finally:
        server.close()
    assert res_cm["ok"], res_cm
    assert res_oob["ok"], res_oob
    assert res_cm["device"] == lab["device"]
    assert [s["mode"] for s in service.served] == ["cm", "oob"]
    assert all(s["ok"] for s in service.served), service.served


def test_peer_refuses_a_client_with_the_wrong_secret_over_oob_and_cm(r, lab, monkeypatch):
    from rdmabench.verbs import peer
    from rdmabench.wire import WireError

    service, server = _peer_service(lab)  # it has read the right secret
    monkeypatch.setenv("RDMABENCH_SECRET", "a-different-secret-" * 2)
    try:
        for mode in ("cm", "oob"):
            with pytest.raises(WireError, match="authentication failed"):
                peer.check(lab["ip"], server.port, size=4096, mode=mode, device=lab["device"],
                           gid_index=lab["gid_index"], timeout_s=10.0, cm_port=7484)
    finally:
        server.close()
    assert service.served == []  # refused before any service ran


def test_cm_connect_to_port_without_listener_fails_fast(r, lab):
    from rdmabench.errors import PeerUnavailable
    from rdmabench.verbs.cm import CMClient

    t0 = time.monotonic()
    with pytest.raises(PeerUnavailable, match="REJECTED|UNREACHABLE"):
        CMClient(lab["ip"], 7398, 4096, timeout_s=5.0)
    assert time.monotonic() - t0 < 8.0


def test_cm_listener_accept_times_out(r, lab):
    from rdmabench.verbs.cm import CMListener

    with CMListener(lab["ip"], 7483) as listener:
        assert listener.events.fd is not None, "rdma_cm channel descriptor not found: waits could hang"
        t0 = time.monotonic()
        with pytest.raises(VerbsError, match="timed out"):
            listener.accept(timeout_s=0.5)
        assert time.monotonic() - t0 < 1.5


def test_event_channel_finds_its_descriptor_while_another_thread_opens_rdma_cm(lab):
    """The native engine opens and closes rdma_cm descriptors without the GIL while a python
    endpoint in the same process creates its channel; the channel must still wait on its own
    descriptor (a wrong or missing one left pyverbs blocked with the GIL: the whole process hung)."""
    import os

    from pyverbs.cmid import CMID, AddrInfo

    from rdmabench.verbs import compat as c
    from rdmabench.verbs import cm_channel
    from rdmabench.verbs.cm_channel import EventChannel

    assert cm_channel._LAYOUT_KNOWN, "pyverbs' CMEventChannel layout changed: check cm_channel"
    stop, opened = threading.Event(), [0]

    def churn():
        while not stop.is_set():
            os.close(os.open("/dev/infiniband/rdma_cm", os.O_RDWR))
            opened[0] += 1

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for _ in range(100):
            ch = EventChannel()
            try:
                assert os.readlink(f"/proc/self/fd/{ch.fd}") == "/dev/infiniband/rdma_cm"
                assert ch.fd == cm_channel._fd_from_struct(ch.channel)
            finally:
                ch.close()
    finally:
        stop.set()
        thread.join()
    assert opened[0] > 100, "the other thread never ran: nothing was raced"

    # and it is the channel's own: an event on it wakes the wait, an idle one times out
    ch = EventChannel()
    cmid = CMID(ch.channel)
    try:
        with pytest.raises(VerbsError, match="timed out"):
            ch.get(0.2, "nothing")
        cmid.resolve_addr(AddrInfo(dst=lab["ip"], dst_service="7490", port_space=c.PS_TCP), 2000)
        event = ch.get(10, "ADDR_RESOLVED")
        assert event.event_type == c.CM_EVENT_ADDR_RESOLVED
        event.close()
    finally:
        cmid.close()
        ch.close()
