/* Posting and polling, shared by the loops: one WR out, send and receive completions in, records kept. (see endpoint.h) */
#include "endpoint.h"

void note_corrupt(struct run *r, uint64_t seq)
{
	if (r->corrupt == 0)
		r->first_corrupt = (int64_t)seq;
	r->corrupt++;
}

/* --validate: the first len bytes of QP q's slot hold the pattern of `seed`, else message seq is
 * counted corrupt. (write_lat leaves out the last byte: the sequence mark its loop spins on.) */
void check_landed(struct run *r, uint32_t q, uint64_t slot, uint32_t len, uint64_t seed, uint64_t seq)
{
	r->validated++;
	if (!check_pattern(slot_addr(r->ep, q, slot), len, seed))
		note_corrupt(r, seq);
}

void record_completion(struct run *r, uint64_t t, uint64_t ops)
{
	if (!r->recording)
		return;
	if (r->nc < r->ccap) {
		r->c_t[r->nc] = t;
		r->c_ops[r->nc] = ops;
		r->nc++;
	} else {
		r->truncated = 1;
	}
}

void record_sample(struct run *r, double ns)
{
	if (r->ns < r->scap)
		r->samp[r->ns++] = ns;
	else
		r->truncated = 1;
}

/* One measured latency operation that ran from t0 to t1: the run's span and count, and its sample (ns). */
void record_latency(struct run *r, uint64_t t0, uint64_t t1, double ns)
{
	if (!r->have_start) {
		r->t_start = t0;
		r->have_start = 1;
		win_begin(r, t0);
	}
	r->t_end = t1;
	r->lat_ops++;
	record_sample(r, ns);
	hist_add(r, ns);
	win_poll(r, t1, r->lat_ops);
}

/* Post one WR on QP q. len 0 -> no SGE (control messages). */
int post_one(Endpoint *ep, uint32_t q, enum ibv_wr_opcode op, uint8_t *laddr, uint32_t len,
		    uint64_t raddr, int has_imm, uint32_t imm, int signaled, uint64_t data_after,
		    struct rt_err *e)
{
	struct ep_qp *p = &ep->q[q];
	struct ibv_sge sge;
	struct ibv_send_wr wr, *bad = NULL;
	int rc;

	if (has_imm && op == IBV_WR_SEND)
		op = IBV_WR_SEND_WITH_IMM; /* credits, end markers, READY: the imm is the message */
	sge.addr = (uintptr_t)laddr;
	sge.length = len;
	sge.lkey = ep->mr->lkey;
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = ((uint64_t)q << 48) | (p->sq_posted & IDX_MASK);
	wr.sg_list = len ? &sge : NULL;
	wr.num_sge = len ? 1 : 0;
	wr.opcode = op;
	wr.send_flags = signaled ? IBV_SEND_SIGNALED : 0;
	if (len && len <= ep->inline_size && op != IBV_WR_RDMA_READ)
		wr.send_flags |= IBV_SEND_INLINE;
	if (has_imm)
		wr.imm_data = htonl(imm);
	wr.wr.rdma.remote_addr = raddr;
	wr.wr.rdma.rkey = p->rkey;
	p->sq_data[p->sq_posted % ep->depth] = data_after;
	rc = ibv_post_send(p->qp, &wr, &bad);
	if (rc) {
		rt_set(e, RT_OS, rc > 0 ? rc : EIO, "ibv_post_send(QP %u, WR %llu) failed: %s", q,
		       (unsigned long long)p->sq_posted, strerror(rc > 0 ? rc : EIO));
		return -1;
	}
	p->sq_posted++;
	p->last_signaled = signaled;
	return 0;
}

int wc_failed(const struct ibv_wc *wc, const char *side, struct rt_err *e)
{
	/* wc->opcode is undefined on an error completion: name the queue and the WR instead */
	rt_set(e, RT_OS, EIO,
	       "QP %u: %s work request %llu failed: %s (wc status %d, vendor_err 0x%x)",
	       (unsigned)(wc->wr_id >> 48), side, (unsigned long long)(wc->wr_id & IDX_MASK),
	       ibv_wc_status_str(wc->status), (int)wc->status, wc->vendor_err);
	return -1;
}

/* Poll up to max completions of the endpoint's send (recv 0) or receive CQ: how many, or -1 when
 * the poll or any completion failed (a failure ends the loop, so the good ones before it need no
 * handling). */
int ep_poll(Endpoint *ep, int recv, struct ibv_wc *wc, int max, struct rt_err *e)
{
	const char *side = recv ? "receive" : "send";
	int n = ibv_poll_cq(recv ? ep->rcq : ep->scq, max, wc), i;

	if (n < 0) {
		char call[32];

		snprintf(call, sizeof(call), "ibv_poll_cq(%s)", side);
		rt_set_os(e, call, -n);
		return -1;
	}
	for (i = 0; i < n; i++)
		if (wc[i].status != IBV_WC_SUCCESS)
			return wc_failed(&wc[i], side, e);
	return n;
}

/* One send completion, polled for until it comes or timeout_ms have passed since t0 (the one-at-a-time
 * loops: read_lat, atomic_lat): 0 with wc filled; -1 with e set, saying "<what> <index> not complete after
 * N ms" when it is late. */
int ep_wait_send(Endpoint *ep, struct ibv_wc *wc, uint64_t t0, const struct run *r, const char *what,
		 uint64_t index, struct rt_err *e)
{
	int n;

	do {
		n = ep_poll(ep, 0, wc, 1, e);
		if (n)
			return n < 0 ? -1 : 0;
	} while (ticks() - t0 <= r->timeout_ticks);
	rt_set(e, RT_TIMEOUT, ETIMEDOUT, "%s %llu not complete after %d ms", what, (unsigned long long)index,
	       r->timeout_ms);
	return -1;
}

/* A send completion: its QP's send queue is done up to that WR; the WR's sq_data entry. */
uint64_t ep_send_done(Endpoint *ep, const struct ibv_wc *wc)
{
	struct ep_qp *p = &ep->q[wc->wr_id >> 48];
	uint64_t idx = wc->wr_id & IDX_MASK;

	p->sq_done = idx + 1;
	return p->sq_data[idx % ep->depth];
}

/* A receive completion handled: its slot may take the next message; keep recv_target posted. */
int ep_recv_done(Endpoint *ep, const struct ibv_wc *wc, struct rt_err *e)
{
	uint32_t q = (uint32_t)(wc->wr_id >> 48);

	ep->q[q].rq_done = (wc->wr_id & IDX_MASK) + 1;
	return post_recvs(ep, q, e);
}

/* Poll the send CQ once. Updates sq_done / data_done; read_bw validate checks landed data;
 * records a sample per signaled completion while recording. Returns completions seen or -1. */
int poll_send(struct run *r, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	struct ibv_wc wc[POLL_BATCH];
	int n, i;

	n = ep_poll(ep, 0, wc, POLL_BATCH, e);
	if (n <= 0)
		return n;
	uint64_t t = ticks();

	for (i = 0; i < n; i++) {
		uint32_t q = (uint32_t)(wc[i].wr_id >> 48);
		struct ep_qp *p;
		uint64_t d;

		if (q >= (uint32_t)ep->nqps)
			continue;
		p = &ep->q[q];
		d = ep_send_done(ep, &wc[i]);
		if (d > p->data_done) {
			r->tot_done += d - p->data_done;
			p->data_done = d;
		}
		if (r->s && r->validate && r->test == T_READ_BW) {
			struct bwq *s = &r->s[q];

			for (; s->checked < p->data_done; s->checked++)
				check_landed(r, q, s->checked, ep->size,
					     pattern_seed(q, s->checked % p->rslots), s->checked);
		}
		if (r->recording && (r->client || r->bidir)) {
			record_completion(r, t, r->tot_done - r->done0);
			r->t_end = t;
		}
	}
	r->last_progress = t;
	return n;
}

/* Make sure every posted WR has completed (a trailing unsignaled WR gets a signaled zero-byte
 * RDMA WRITE behind it). */
int drain_sq(struct run *r, uint32_t q, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	struct ep_qp *p = &ep->q[q];

	if (p->sq_posted > p->sq_done && !p->last_signaled) {
		while (p->sq_posted - p->sq_done >= ep->depth) {
			if (poll_send(r, e) < 0)
				return -1;
			if (ticks() - r->last_progress > r->timeout_ticks)
				goto timeout;
		}
		if (post_one(ep, q, IBV_WR_RDMA_WRITE, NULL, 0, p->raddr, 0, 0, 1, p->data_done, e))
			return -1;
		/* data_after of the flush WR: what was posted before it */
		ep->q[q].sq_data[(p->sq_posted - 1) % ep->depth] =
			p->sq_posted >= 2 ? p->sq_data[(p->sq_posted - 2) % ep->depth] : 0;
	}
	while (p->sq_done < p->sq_posted) {
		if (poll_send(r, e) < 0)
			return -1;
		if (ticks() - r->last_progress > r->timeout_ticks)
			goto timeout;
	}
	return 0;
timeout:
	rt_set(e, RT_TIMEOUT, ETIMEDOUT,
	       "%s: QP %u: %llu of %llu send work requests completed, no progress for %d ms",
	       test_names[r->test], q, (unsigned long long)p->sq_done,
	       (unsigned long long)p->sq_posted, r->timeout_ms);
	return -1;
}

/* Post a credit (write_bw validate receiver): imm = messages checked so far. */
int maybe_credit(struct run *r, uint32_t q, int force, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	struct bwq *s = &r->s[q];
	struct ep_qp *p = &ep->q[q];
	uint64_t step = ep->slots / 2 ? ep->slots / 2 : 1;

	if (s->recvd == s->credited || (!force && s->recvd - s->credited < step))
		return 0;
	if (p->sq_posted - p->sq_done >= ep->depth)
		return 0; /* retried on the next pass */
	if (post_one(ep, q, IBV_WR_SEND, NULL, 0, 0, 1, (uint32_t)s->recvd, 1, p->data_done, e))
		return -1;
	s->credited = s->recvd;
	return 0;
}

/* Poll the receive CQ once: data (send_bw), write-with-imm (write_bw validate), credits, markers. */
int poll_recv(struct run *r, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	struct ibv_wc wc[POLL_BATCH];
	int n, i;

	n = ep_poll(ep, 1, wc, POLL_BATCH, e);
	if (n <= 0)
		return n;
	uint64_t t = ticks();

	for (i = 0; i < n; i++) {
		uint32_t q = (uint32_t)(wc[i].wr_id >> 48);
		uint64_t widx = wc[i].wr_id & IDX_MASK;
		int has_imm = (wc[i].wc_flags & IBV_WC_WITH_IMM) != 0;
		uint32_t imm = has_imm ? ntohl(wc[i].imm_data) : 0;
		struct bwq *s;
		int data = 0;

		if (q >= (uint32_t)ep->nqps)
			continue;
		s = &r->s[q];
		if (wc[i].opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
			uint64_t seq = s->recvd;

			data = 1;
			if (r->validate) {
				r->validated++;
				if (imm != (uint32_t)seq ||
				    !check_pattern(slot_addr(ep, q, seq), ep->size, pattern_seed(q, seq)))
					note_corrupt(r, seq);
			}
		} else if (r->test == T_SEND_BW) {
			uint64_t seq = s->recvd;

			data = 1;
			if (r->validate) {
				r->validated++;
				if (wc[i].byte_len != ep->size ||
				    !check_pattern(slot_addr(ep, q, widx), ep->size, pattern_seed(q, seq)))
					note_corrupt(r, seq);
			}
			if (has_imm && imm == IMM_END)
				s->recv_finished = 1;
		} else if (has_imm && imm == IMM_END) {
			s->recv_finished = 1; /* write_bw validate: the writer is done */
		} else if (has_imm) {
			/* a credit: the peer has checked this many (mod 2^32) */
			s->granted += (uint32_t)(imm - (uint32_t)s->granted);
		}
		if (data) {
			s->recvd++;
			r->tot_recvd++;
			if (r->recording && !r->client && !r->bidir) {
				if (!r->have_start) {
					r->t_start = t;
					r->have_start = 1;
				}
				r->t_end = t;
				if ((r->tot_recvd - r->recvd0) % ep->cq_mod == 0)
					record_completion(r, t, r->tot_recvd - r->recvd0);
			}
		}
		if (ep_recv_done(ep, &wc[i], e))
			return -1;
	}
	r->last_progress = t;
	return n;
}
