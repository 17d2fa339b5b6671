"""The latency loops of a run (write_lat, read_lat, send_lat): lat_run and its waits."""

from __future__ import annotations

import socket

from rdmabench.errors import VerbsError
from rdmabench.verbs import compat as c

from .protocol import _idle, _now, IDX_MASK, IMM_END, IMM_READY, WC_WITH_IMM, pattern_seed


class _LatLoops:
    """_Run's latency half (ep_lat.c's lat_run and its waits)."""

    # ----- latency

    def spin_one(self, cq, start: int, what: str, idle: bool = True):
        """Spin on `cq` until one completion arrives; past the timeout since `start`, fail naming `what`.

        idle lets the other endpoint's thread have the GIL between polls (not while timing a READ)."""
        poll = cq.poll
        while True:
            n, wcs = poll(1)
            if n:
                return wcs[0]
            if _now() - start > self.timeout_ns:
                raise self.timed_out(what)
            if idle:
                _idle()

    def wait_recv(self):
        """One receive completion on QP 0 (latency tests), spinning; receives are reposted."""
        ep = self.ep
        wc = self.spin_one(ep._rcq.cq, _now(), "QP 0: nothing received")
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
                        self.check_landed(0, 0, size - 1, pattern_seed(0, i), i)
                elif test == "send_lat":
                    t0 = _now()
                    self.post(0, c.WR_SEND, src, 0, None, sig, i + 1)
                    wc = self.wait_recv()
                    t1 = _now()
                    if validate:
                        self.check_landed(0, wc.wr_id & IDX_MASK, size, pattern_seed(0, i), i)
                else:  # read_lat: one READ at a time, post to completion
                    t0 = _now()
                    self.post(0, c.WR_RDMA_READ, 0, p.raddr, None, True, i + 1)
                    wc = self.spin_one(ep._scq.cq, t0, f"QP 0: READ {i} not complete", idle=False)
                    t1 = _now()
                    if wc.status != c.WC_SUCCESS:
                        raise self.failed(wc, "send")
                    p.sq_done = (wc.wr_id & IDX_MASK) + 1
                    p.data_done = i + 1
                    if validate:
                        self.check_landed(0, 0, size, pattern_seed(0, 0), i)
                if measured:
                    self._count(t0, t1)
                    self.record_sample(float(t1 - t0) if test == "read_lat" else (t1 - t0) / 2.0)
            else:  # server: wait for message i, answer it
                if test == "write_lat":
                    if not self.wait_written(poll_off, val, i):
                        break  # the end marker of a duration run
                    t0 = _now()
                    if validate:
                        self.check_landed(0, 0, size - 1, pattern_seed(0, i), i)
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
                        self.check_landed(0, wc.wr_id & IDX_MASK, size, pattern_seed(0, i), i)
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

    def _count(self, t_first: int, t_last: int) -> None:
        """One measured iteration: the run starts at the first one's t_first and ends at the last's t_last."""
        if not self.have_start:
            self.t_start = t_first
            self.have_start = True
        self.t_end = t_last
        self.lat_ops += 1

    def _served(self, measured: bool, t0: int) -> None:
        if measured:
            self._count(t0, t0)
