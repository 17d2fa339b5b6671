/* The atomic tests, perftest's ib_atomic_bw and ib_atomic_lat (-A FETCH_AND_ADD | CMP_AND_SWAP):
 * 8-byte operations on a counter in the peer's slot 0 of each QP; the server is passive. (see endpoint.h)
 *
 * atomic_bw keeps min(depth, the QP's max_rd_atomic) operations in flight per QP: the responder
 * answers no more atomics at once than its max_qp_rd_atom, which connect() already negotiated into
 * the QP, queried here, never assumed. atomic_lat posts one operation at a time on QP 0 and times it
 * from post to completion.
 *
 * Every run checks what it measured. It zeroes each QP's remote counter first (an RDMA WRITE of 8
 * zero bytes; zero reads the same in either byte order), so operation i (from 0, warm-up included)
 * must return i: fetch_add adds 1, cmp_swap swaps i for i + 1 (and fails, returning something else,
 * if an earlier operation went missing). A device hands the original value back in host order or
 * big-endian (the wire's order: what ConnectX writes); the first reply that tells them apart decides
 * and every later one must agree. At the end the client reads each counter back with an RDMA READ:
 * it must equal the operations done. A wrong reply counts as corrupt, a wrong counter as counters_bad. */
#include "endpoint.h"

static uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static void check_reply(struct run *r, uint64_t seq, uint64_t got)
{
	uint64_t be = __builtin_bswap64(seq);

	r->validated++;
	if (got == seq && got == be)
		return; /* 0: either order */
	if (r->reply_be != 1 && got == seq) {
		r->reply_be = 0;
		return;
	}
	if (r->reply_be != 0 && got == be) {
		r->reply_be = 1;
		return;
	}
	note_corrupt(r, seq);
}

static int post_atomic(struct run *r, uint32_t q, uint64_t seq, int signaled, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	struct ep_qp *p = &ep->q[q];
	struct ibv_sge sge;
	struct ibv_send_wr wr, *bad = NULL;
	int rc;

	sge.addr = (uintptr_t)slot_addr(ep, q, seq);
	sge.length = 8;
	sge.lkey = ep->mr->lkey;
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = ((uint64_t)q << 48) | (p->sq_posted & IDX_MASK);
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.send_flags = signaled ? IBV_SEND_SIGNALED : 0;
	wr.wr.atomic.remote_addr = p->raddr;
	wr.wr.atomic.rkey = p->rkey;
	if (r->atomic_op == A_FETCH_ADD) {
		wr.opcode = IBV_WR_ATOMIC_FETCH_AND_ADD;
		wr.wr.atomic.compare_add = 1;
	} else {
		wr.opcode = IBV_WR_ATOMIC_CMP_AND_SWP;
		wr.wr.atomic.compare_add = seq;
		wr.wr.atomic.swap = seq + 1;
	}
	if ((int64_t)seq == ep->corrupt_seq) /* test hook: add 2 / compare with a wrong value, once */
		wr.wr.atomic.compare_add++;
	p->sq_data[p->sq_posted % ep->depth] = seq + 1;
	rc = ibv_post_send(p->qp, &wr, &bad);
	if (rc) {
		rt_set(e, RT_OS, rc > 0 ? rc : EIO, "ibv_post_send(QP %u, atomic %llu) failed: %s", q,
		       (unsigned long long)seq, strerror(rc > 0 ? rc : EIO));
		return -1;
	}
	p->sq_posted++;
	p->last_signaled = signaled;
	return 0;
}

/* One signaled 8-byte RDMA WRITE (len: from slot 0) or READ (into slot 0) of QP q's remote counter,
 * waited for. */
static int counter_op(struct run *r, uint32_t q, enum ibv_wr_opcode op, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	struct ep_qp *p = &ep->q[q];
	uint64_t start = ticks();
	struct ibv_wc wc;
	int n;

	if (post_one(ep, q, op, slot_addr(ep, q, 0), 8, p->raddr, 0, 0, 1, p->data_done, e))
		return -1;
	while (p->sq_done < p->sq_posted) {
		n = ep_poll(ep, 0, &wc, 1, e);
		if (n < 0)
			return -1;
		if (n)
			ep_send_done(ep, &wc);
		else if (ticks() - start > r->timeout_ticks) {
			rt_set(e, RT_TIMEOUT, ETIMEDOUT, "%s: QP %u: the counter's RDMA %s not complete after %d ms",
			       test_names[r->test], q, op == IBV_WR_RDMA_READ ? "READ" : "WRITE", r->timeout_ms);
			return -1;
		}
	}
	return 0;
}

static int atomic_phase(struct run *r, uint64_t target, uint64_t dur_ticks, int record, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	uint64_t phase_base[MAX_QPS];
	uint64_t t0 = ticks(), deadline = t0 + dur_ticks, now;
	uint32_t q, nq = (uint32_t)ep->nqps;
	int time_up = 0, all_done;

	r->recording = record;
	if (record)
		r->done0 = r->tot_done;
	for (q = 0; q < nq; q++) {
		r->s[q].send_finished = dur_ticks == 0 && r->s[q].sent >= target;
		phase_base[q] = r->s[q].sent;
	}
	r->last_progress = t0;
	for (;;) {
		if (r->stop && !dur_ticks)
			return run_stopped(r, e);
		if (dur_ticks && !time_up)
			time_up = ticks() >= deadline || r->stop;
		for (q = 0; q < nq; q++) {
			struct bwq *s = &r->s[q];
			struct ep_qp *p = &ep->q[q];

			while (!s->send_finished) {
				uint64_t seq = s->sent;
				int last = dur_ticks ? time_up : seq + 1 >= target, sig;

				if (dur_ticks && time_up && seq == phase_base[q]) {
					s->send_finished = 1;
					break;
				}
				if (p->sq_posted - p->sq_done >= r->atomic_depth || seq - s->checked >= ep->slots)
					break;
				sig = last || ((seq + 1 - phase_base[q]) % r->atomic_mod) == 0;
				if (record && !r->have_start) {
					r->t_start = ticks();
					r->have_start = 1;
					win_begin(r, r->t_start);
				}
				if (post_atomic(r, q, seq, sig, e))
					return -1;
				s->sent = seq + 1;
				if (last)
					s->send_finished = 1;
			}
		}
		if (poll_send(r, e) < 0)
			return -1;
		all_done = 1;
		for (q = 0; q < nq; q++) {
			struct bwq *s = &r->s[q];
			struct ep_qp *p = &ep->q[q];

			for (; s->checked < p->data_done; s->checked++)
				check_reply(r, s->checked, load64(slot_addr(ep, q, s->checked)));
			if (!s->send_finished || p->data_done < s->sent)
				all_done = 0;
		}
		if (all_done)
			return 0;
		now = ticks(); /* one clock read for the window and the progress check */
		if (record)
			win_poll(r, now, r->tot_done - r->done0);
		if (now - r->last_progress > r->timeout_ticks) {
			for (q = 0; q < nq && r->s[q].send_finished && ep->q[q].data_done >= r->s[q].sent; q++)
				;
			q = q < nq ? q : 0;
			rt_set(e, RT_TIMEOUT, ETIMEDOUT,
			       "atomic_bw client: no progress for %d ms on QP %u (posted %llu, completed %llu)",
			       r->timeout_ms, q, (unsigned long long)r->s[q].sent,
			       (unsigned long long)ep->q[q].data_done);
			return -1;
		}
	}
}

static int atomic_lat(struct run *r, uint64_t *done, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	struct ep_qp *p = &ep->q[0];
	const uint64_t total = r->warmup + r->iters;
	uint64_t i, t0, t1, deadline = 0;
	struct ibv_wc wc;

	for (i = 0;; i++) {
		int measured = i >= r->warmup;

		if (!r->dur_ticks && i >= total)
			break;
		if (i == r->warmup && r->dur_ticks)
			deadline = ticks() + r->dur_ticks;
		if (r->stop && !r->dur_ticks)
			return run_stopped(r, e);
		if (r->dur_ticks && measured && (ticks() >= deadline || r->stop))
			break;
		t0 = ticks();
		if (post_atomic(r, 0, i, 1, e))
			return -1;
		if (ep_wait_send(ep, &wc, t0, r, "atomic_lat client: QP 0: operation", i, e))
			return -1;
		t1 = ticks();
		ep_send_done(ep, &wc);
		p->data_done = i + 1;
		check_reply(r, i, load64(slot_addr(ep, 0, i)));
		if (measured)
			record_latency(r, t0, t1, ticks_span_ns(t1 - t0));
	}
	*done = i;
	return 0;
}

int atomic_run(struct run *r, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	uint32_t q, nq = r->is_lat ? 1 : (uint32_t)ep->nqps;
	uint64_t done[MAX_QPS];
	struct ibv_qp_attr attr;
	struct ibv_qp_init_attr init;
	int rc = 0;

	/* in flight: the QP's own max_rd_atomic (what connect or rdma_cm negotiated with the peer) */
	r->atomic_depth = ep->max_rd_atomic;
	if (ibv_query_qp(ep->q[0].qp, &attr, IBV_QP_MAX_QP_RD_ATOMIC, &init) == 0)
		r->atomic_depth = attr.max_rd_atomic;
	if (r->atomic_depth < 1)
		r->atomic_depth = 1;
	if (r->atomic_depth > ep->depth)
		r->atomic_depth = ep->depth;
	r->atomic_mod = ep->cq_mod < r->atomic_depth ? ep->cq_mod : r->atomic_depth;
	for (q = 0; q < nq; q++) {
		memset(slot_addr(ep, q, 0), 0, 8);
		if (counter_op(r, q, IBV_WR_RDMA_WRITE, e))
			return -1;
	}
	if (r->is_lat) {
		rc = atomic_lat(r, &done[0], e);
	} else {
		if (r->warmup)
			rc = atomic_phase(r, r->warmup, 0, 0, e);
		if (rc == 0)
			rc = atomic_phase(r, r->dur_ticks ? 0 : r->warmup + r->iters, r->dur_ticks, 1, e);
		for (q = 0; q < nq; q++)
			done[q] = r->s[q].sent;
	}
	if (rc)
		return -1;
	for (q = 0; q < nq; q++) {
		uint64_t got;

		if (counter_op(r, q, IBV_WR_RDMA_READ, e))
			return -1;
		got = load64(slot_addr(ep, q, 0));
		if (got == done[q] || got == __builtin_bswap64(done[q]))
			r->counters_ok++;
		else
			r->counters_bad++;
	}
	return 0;
}
