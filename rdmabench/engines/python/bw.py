"""The bandwidth loops of a run (write_bw, read_bw, send_bw): receives, credits and bw_phase."""

from __future__ import annotations

import socket

from rdmabench.verbs import compat as c

from .protocol import (
    _idle, _now, IDX_MASK, IMM_END, POLL_BATCH, WC_RECV_RDMA_WITH_IMM, WC_WITH_IMM, WR_RDMA_WRITE_WITH_IMM,
    pattern_seed,
)


class _BwLoops:
    """_Run's bandwidth half (ep_bw.c's bw_phase and what only it uses)."""

    # ----- bandwidth

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
        depth, slots, cq_mod = ep.depth, ep.slots, ep.cq_mod
        self.recording = record
        if record:
            # the warm-up's messages only (per QP the first `warmup`, in order): a sender whose warm-up
            # completed may already have landed measured ones that the warm-up phase polled
            self.done0 = self.tot_done
            self.recvd0 = sum(min(got, self.warmup) for got in self.recvd)
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
