/* The bandwidth loop (write_bw, read_bw, send_bw), perftest's scheme. (see endpoint.h) */
#include "endpoint.h"


/*
 * One phase of a BW run: every QP sends (when this side sends) until `target` messages in total
 * per QP (iters mode) or until the duration is over, and receives (when this side receives)
 * until `target` or the peer's end marker. perftest's scheme: at most depth WRs in flight per
 * QP, QPs served round-robin, every cq_mod-th WR signaled (and the last), completions polled in
 * batches.
 */
int bw_phase(struct run *r, uint64_t target, uint64_t dur_ticks, int record, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	const int sends = r->client || r->bidir;
	const int recvs = (r->test == T_SEND_BW && (!r->client || r->bidir)) ||
			  (r->test == T_WRITE_BW && r->validate && !r->client);
	const int credits = r->test == T_WRITE_BW && r->validate && r->client;
	const int marker = r->test == T_SEND_BW || (r->test == T_WRITE_BW && r->validate);
	const int fill = r->validate && (r->test == T_SEND_BW || r->test == T_WRITE_BW);
	uint64_t phase_base[MAX_QPS];
	uint64_t t0 = ticks(), deadline = t0 + dur_ticks, now; /* ticks: rdtsc is cheap, an HPET read is not */
	uint32_t q, nq = (uint32_t)ep->nqps;
	int all_done, time_up = 0;

	r->recording = record;
	if (record) {
		r->done0 = r->tot_done;
		/* The warm-up's messages only (per QP the first `warmup`, they arrive in order): a sender
		 * whose warm-up completed may already have landed measured messages that the warm-up
		 * phase polled on its way to the last QP's warm-up. */
		r->recvd0 = 0;
		for (q = 0; q < nq; q++)
			r->recvd0 += r->s[q].recvd < r->warmup ? r->s[q].recvd : r->warmup;
	}
	for (q = 0; q < nq; q++) {
		r->s[q].send_finished = !sends || (dur_ticks == 0 && r->s[q].sent >= target);
		r->s[q].recv_finished = !recvs || (dur_ticks == 0 && r->s[q].recvd >= target);
		phase_base[q] = r->s[q].sent;
	}
	r->last_progress = t0;
	for (;;) {
		if (r->stop && !dur_ticks)
			return run_stopped(r, e); /* Ctrl-C: an iterations run has no clean early end */
		if (dur_ticks && !time_up)
			time_up = ticks() >= deadline || r->stop;
		for (q = 0; q < nq; q++) {
			struct bwq *s = &r->s[q];
			struct ep_qp *p = &ep->q[q];

			while (!s->send_finished) {
				uint64_t seq = s->sent;
				int last = dur_ticks ? time_up : seq + 1 >= target;
				int need = (last && dur_ticks && r->test == T_WRITE_BW && marker) ? 2 : 1;
				int sig;
				enum ibv_wr_opcode op;
				uint64_t raddr = p->raddr + (seq % p->rslots) * p->rsize;
				uint8_t *laddr = slot_addr(ep, q, seq);

				if (p->sq_posted - p->sq_done + (uint64_t)need > ep->depth)
					break;
				if (r->validate && seq - p->data_done >= ep->slots)
					break; /* a source/landing slot is still in use */
				if (credits && seq - s->granted >= p->rslots)
					break; /* the peer has not checked that slot yet */
				if (dur_ticks && time_up && !marker && seq == phase_base[q]) {
					s->send_finished = 1; /* nothing posted in this phase */
					break;
				}
				sig = last || ((seq + 1 - phase_base[q]) % ep->cq_mod) == 0;
				if (fill) {
					fill_pattern(laddr, ep->size, pattern_seed(q, seq));
					if ((int64_t)seq == ep->corrupt_seq)
						laddr[ep->size / 2] ^= 0x5a;
				}
				if (record && !r->have_start) {
					r->t_start = ticks();
					r->have_start = 1;
					win_begin(r, r->t_start);
				}
				if (r->test == T_READ_BW) {
					op = IBV_WR_RDMA_READ;
					if (post_one(ep, q, op, laddr, ep->size, raddr, 0, 0, sig, seq + 1, e))
						return -1;
				} else if (r->test == T_WRITE_BW) {
					op = r->validate ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE;
					if (post_one(ep, q, op, laddr, ep->size, raddr, r->validate,
						     (uint32_t)seq, sig, seq + 1, e))
						return -1;
					if (last && dur_ticks && marker &&
					    post_one(ep, q, IBV_WR_SEND, NULL, 0, 0, 1, IMM_END, 1, seq + 1, e))
						return -1;
				} else {
					int end = last && dur_ticks;

					op = end ? IBV_WR_SEND_WITH_IMM : IBV_WR_SEND;
					if (post_one(ep, q, op, laddr, ep->size, 0, end, IMM_END, sig, seq + 1, e))
						return -1;
				}
				s->sent = seq + 1;
				if (last)
					s->send_finished = 1;
			}
		}
		if (sends && poll_send(r, e) < 0)
			return -1;
		if (recvs || credits) {
			if (poll_recv(r, e) < 0)
				return -1;
			for (q = 0; q < nq; q++) {
				struct bwq *s = &r->s[q];

				if (recvs && !s->recv_finished && dur_ticks == 0 && s->recvd >= target)
					s->recv_finished = 1;
				if (r->test == T_WRITE_BW && r->validate && !r->client) {
					if (maybe_credit(r, q, s->recv_finished, e))
						return -1;
					if (ep->q[q].sq_posted > ep->q[q].sq_done && poll_send(r, e) < 0)
						return -1;
				}
			}
		}
		all_done = 1;
		for (q = 0; q < nq && all_done; q++) {
			struct bwq *s = &r->s[q];
			struct ep_qp *p = &ep->q[q];

			if (!s->send_finished || p->data_done < s->sent)
				all_done = 0;
			else if (credits && s->granted < s->sent)
				all_done = 0;
			else if (!s->recv_finished)
				all_done = 0;
			else if (r->test == T_WRITE_BW && r->validate && !r->client &&
				 s->credited < s->recvd)
				all_done = 0;
		}
		if (all_done)
			break;
		now = ticks(); /* one clock read for the window and the progress check */
		if (record && sends)
			win_poll(r, now, r->tot_done - r->done0);
		if (now - r->last_progress > r->timeout_ticks) {
			for (q = 0; q < nq; q++) {
				struct bwq *s = &r->s[q];

				if (!s->send_finished || ep->q[q].data_done < s->sent ||
				    (credits && s->granted < s->sent) || !s->recv_finished)
					break;
			}
			if (q == nq)
				q = 0;
			rt_set(e, RT_TIMEOUT, ETIMEDOUT,
			       "%s %s: no progress for %d ms on QP %u (sent %llu, completed %llu, "
			       "received %llu%s)",
			       test_names[r->test], r->client ? "client" : "server", r->timeout_ms, q,
			       (unsigned long long)r->s[q].sent,
			       (unsigned long long)ep->q[q].data_done,
			       (unsigned long long)r->s[q].recvd,
			       credits ? ", waiting for credits" : "");
			return -1;
		}
	}
	for (q = 0; q < nq; q++)
		if (drain_sq(r, q, e))
			return -1;
	return 0;
}

/* Fill every slot with its pattern (read tests' server side, for the reader to check). */
void fill_read_slots(Endpoint *ep)
{
	uint32_t q, sl;

	for (q = 0; q < (uint32_t)ep->nqps; q++)
		for (sl = 0; sl < ep->slots; sl++)
			fill_pattern(slot_addr(ep, q, sl), ep->size, pattern_seed(q, sl));
}
