/* The latency loops: write_lat and send_lat ping-pong, read_lat post to completion. (see endpoint.h) */
#include "endpoint.h"

/* Wait for one receive completion on QP 0 (latency tests); returns its wc. */
static int wait_recv(struct run *r, struct ibv_wc *out, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	uint64_t start = ticks();
	int n;

	for (;;) {
		n = ep_poll(ep, 1, out, 1, e);
		if (n > 0)
			break;
		if (n < 0)
			return -1;
		if (ticks() - start > r->timeout_ticks) {
			rt_set(e, RT_TIMEOUT, ETIMEDOUT,
			       "%s %s: QP 0: nothing received for %d ms", test_names[r->test],
			       r->client ? "client" : "server", r->timeout_ms);
			return -1;
		}
	}
	return ep_recv_done(ep, out, e);
}

/* Room for one more WR on QP 0's send queue. */
static int sq_room(struct run *r, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	struct ep_qp *p = &ep->q[0];
	uint64_t start = ticks();

	while (p->sq_posted - p->sq_done >= ep->depth) {
		if (poll_send(r, e) < 0)
			return -1;
		if (ticks() - start > r->timeout_ticks) {
			rt_set(e, RT_TIMEOUT, ETIMEDOUT, "%s: QP 0: send queue full for %d ms",
			       test_names[r->test], r->timeout_ms);
			return -1;
		}
	}
	return 0;
}

/* write_lat / send_lat ping-pong and read_lat, on QP 0. total = warmup + iters (iters mode). */
int lat_run(struct run *r, uint64_t dur_ticks, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	struct ep_qp *p = &ep->q[0];
	const uint32_t size = ep->size;
	volatile uint8_t *poll_byte = slot_addr(ep, 0, 0) + size - 1;
	uint8_t *src = slot_addr(ep, 0, ep->slots > 1 ? 1 : 0);
	const uint64_t total = r->warmup + r->iters;
	uint64_t i, t0, t1, deadline = 0;
	struct ibv_wc wc;
	int sig, n;

	r->recording = 0;
	r->last_progress = ticks();
	if (r->test == T_WRITE_LAT) {
		*poll_byte = 0;
		if (r->client) {
			/* the server zeroed its byte and says so before we write into it */
			for (;;) {
				if (wait_recv(r, &wc, e))
					return -1;
				if ((wc.wc_flags & IBV_WC_WITH_IMM) && ntohl(wc.imm_data) == IMM_READY)
					break;
			}
		} else {
			if (sq_room(r, e) ||
			    post_one(ep, 0, IBV_WR_SEND, NULL, 0, 0, 1, IMM_READY, 1, p->data_done, e))
				return -1;
		}
	}
	for (i = 0;; i++) {
		uint8_t val = (uint8_t)(i + 1);
		int measured = i >= r->warmup;

		if (!dur_ticks && i >= total)
			break;
		if (r->stop && !dur_ticks)
			return run_stopped(r, e);
		if (i == r->warmup && dur_ticks)
			deadline = ticks() + dur_ticks;
		sig = (dur_ticks == 0 && i + 1 == total) || ((i + 1) % ep->cq_mod) == 0;
		if (r->client) {
			if (dur_ticks && measured && (ticks() >= deadline || r->stop)) {
				if (r->test != T_READ_LAT) {
					if (sq_room(r, e) || post_one(ep, 0, IBV_WR_SEND, NULL, 0, 0, 1,
								       IMM_END, 1, p->data_done, e))
						return -1;
				}
				break;
			}
			if (r->validate && r->test != T_READ_LAT)
				fill_pattern(src, size, pattern_seed(0, i));
			if (r->validate && (int64_t)i == ep->corrupt_seq && r->test != T_READ_LAT)
				src[size / 2 < size - 1 ? size / 2 : 0] ^= 0x5a;
			if (sq_room(r, e))
				return -1;
			if (r->test == T_WRITE_LAT) {
				src[size - 1] = val;
				t0 = ticks();
				if (post_one(ep, 0, IBV_WR_RDMA_WRITE, src, size, p->raddr, 0, 0, sig, i + 1, e))
					return -1;
				uint64_t spins = 0, start = t0;

				while (*poll_byte != val) {
					if ((++spins & 1023) == 0 && ticks() - start > r->timeout_ticks) {
						rt_set(e, RT_TIMEOUT, ETIMEDOUT,
						       "write_lat client: QP 0: no reply to message %llu for %d ms",
						       (unsigned long long)i, r->timeout_ms);
						return -1;
					}
				}
				t1 = ticks();
				if (r->validate)
					check_landed(r, 0, 0, size - 1, pattern_seed(0, i), i);
			} else if (r->test == T_SEND_LAT) {
				t0 = ticks();
				if (post_one(ep, 0, IBV_WR_SEND, src, size, 0, 0, 0, sig, i + 1, e))
					return -1;
				if (wait_recv(r, &wc, e))
					return -1;
				t1 = ticks();
				if (r->validate)
					check_landed(r, 0, wc.wr_id & IDX_MASK, size, pattern_seed(0, i), i);
			} else { /* read_lat: one READ at a time, post to completion */
				uint8_t *dst = slot_addr(ep, 0, 0);

				t0 = ticks();
				if (post_one(ep, 0, IBV_WR_RDMA_READ, dst, size, p->raddr, 0, 0, 1, i + 1, e))
					return -1;
				if (ep_wait_send(ep, &wc, t0, r, "read_lat client: QP 0: READ", i, e))
					return -1;
				t1 = ticks();
				ep_send_done(ep, &wc);
				p->data_done = i + 1;
				if (r->validate)
					check_landed(r, 0, 0, size, pattern_seed(0, 0), i);
			}
			if (measured) /* a READ's is one way and back; a ping-pong's is half its round trip */
				record_latency(r, t0, t1, r->test == T_READ_LAT ? ticks_span_ns(t1 - t0)
									: ticks_span_ns(t1 - t0) / 2.0);
		} else { /* server: wait for message i, answer it */
			if (r->test == T_WRITE_LAT) {
				uint64_t spins = 0, start = ticks();

				while (*poll_byte != val) {
					if ((++spins & 1023) == 0) {
						if (dur_ticks && (n = ep_poll(ep, 1, &wc, 1, e)) != 0) {
							if (n < 0 || ep_recv_done(ep, &wc, e))
								return -1;
							if ((wc.wc_flags & IBV_WC_WITH_IMM) &&
							    ntohl(wc.imm_data) == IMM_END)
								goto server_done;
						}
						if (ticks() - start > r->timeout_ticks) {
							rt_set(e, RT_TIMEOUT, ETIMEDOUT,
							       "write_lat server: QP 0: message %llu not "
							       "written within %d ms",
							       (unsigned long long)i, r->timeout_ms);
							return -1;
						}
					}
				}
				t0 = ticks();
				if (r->validate) {
					check_landed(r, 0, 0, size - 1, pattern_seed(0, i), i);
					fill_pattern(src, size, pattern_seed(0, i));
				}
				src[size - 1] = val;
				if (sq_room(r, e) ||
				    post_one(ep, 0, IBV_WR_RDMA_WRITE, src, size, p->raddr, 0, 0, sig, i + 1, e))
					return -1;
			} else { /* send_lat */
				if (wait_recv(r, &wc, e))
					return -1;
				if ((wc.wc_flags & IBV_WC_WITH_IMM) && ntohl(wc.imm_data) == IMM_END)
					goto server_done;
				t0 = ticks();
				if (r->validate) {
					check_landed(r, 0, wc.wr_id & IDX_MASK, size, pattern_seed(0, i), i);
					fill_pattern(src, size, pattern_seed(0, i));
				}
				if (sq_room(r, e) ||
				    post_one(ep, 0, IBV_WR_SEND, src, size, 0, 0, 0, sig, i + 1, e))
					return -1;
			}
			if (measured) {
				if (!r->have_start) {
					r->t_start = t0;
					r->have_start = 1;
				}
				r->t_end = t0;
				r->lat_ops++;
			}
		}
	}
server_done:
	r->last_progress = ticks();
	return drain_sq(r, 0, e);
}
