"""One run() of the python engine: its state, posting and polling, draining, and the run record.
The loops themselves are in bw.py and lat.py."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from rdmabench.errors import VerbsError
from rdmabench.verbs import compat as c

from pyverbs.pyverbs_error import PyverbsError  # noqa: E402

from .bw import _BwLoops
from .lat import _LatLoops
from .protocol import _idle, _now, BW_TESTS, IDX_MASK, POLL_BATCH, WR_SEND_WITH_IMM, pattern, pattern_seed

if TYPE_CHECKING:
    from .endpoint import Endpoint


# --------------------------------------------------------------------------- the run


class _Run(_BwLoops, _LatLoops):
    """One run(): endpoint.h's struct run and its loops (ep_bw.c's bw_phase, ep_lat.c's lat_run), line for line where it
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

    def check_landed(self, q: int, slot: int, length: int, seed: int, seq: int) -> None:
        """--validate: count the check; message `seq` is corrupt unless the slot holds `seed`'s pattern."""
        self.validated += 1
        if not self.check(q, slot, length, seed):
            self.note_corrupt(seq)

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
                    self.check_landed(q, seq, ep.size, pattern_seed(q, seq % p.rslots), seq)
                    self.checked[q] += 1
            if self.recording and (self.client or self.bidir):
                self.record_completion(t, self.tot_done - self.done0)
                self.t_end = t
        self.last_progress = t
        return n

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
