/*
 * rdmabench._native file transfer loops: a list of files (or one in-memory blob) moved as chunks
 * through a connected Endpoint's registered slots, disk I/O and digests on a thread of their own
 * (pipeline.c), the GIL released. Used by rdmabench/transports/rdma.py, which carries the control
 * messages (names, sizes, digests, verdicts) on its own TCP connection; both ends call the
 * matching function for the same files at the same time.
 *
 *   fx_push   rdma-write source        fx_recv   rdma-write destination
 *   fx_serve  rdma-read source         fx_pull   rdma-read destination
 *
 * The chunks, their order (`parallel` files at once) and their digests are pipeline.h's. With the
 * endpoint's Q = ep.qps QPs ("streams") and W = ep.slots slots per QP, chunk g travels on QP
 * g % Q through slot (g / Q) % W of that QP at both ends: the registered memory is Q x W x chunk
 * bytes, whatever the files' sizes. Every control message is a zero-byte SEND whose immediate is
 * the chunk number (mod 2^32), on the chunk's QP, so each QP's messages arrive in order.
 *
 * Push: the source's I/O thread preads and digests chunk g into its slot once chunk g - Q*W has
 * been credited; the loop posts an RDMA WRITE into the receiver's slot and a notice (SEND, imm g;
 * RC delivers it after the write). The receiver's I/O thread digests and pwrites the chunks in
 * order as their notices arrive, and the loop returns a credit (SEND, imm g) for each one written.
 * Pull: the destination requests chunk g (SEND, imm g) once its slot is free (chunk g - Q*W
 * written); the source's I/O thread loads chunk g, the loop answers "ready" (SEND, imm g); the
 * destination RDMA READs the slot, its I/O thread digests and writes it. END (imm 0xFFFFFFFF, QP 0)
 * ends the source's loop.
 * The loop that talks to the wire never waits on the disk: it posts what the I/O thread has
 * finished and moves the I/O thread's gate as completions arrive.
 *
 * Errors: a local failure (a disk error, a completion error, abort_after reached: a test hook
 * failing after that many chunks) sends ABORT (imm 0xFFFFFFFD) to the peer before raising, so the
 * peer's loop stops at once (ConnectionAbortedError) instead of waiting for its timeout; no
 * progress for timeout_ms raises TimeoutError. After an error the endpoint's queues are in an
 * unknown state: close it. corrupt_at (a test hook) flips a byte of that chunk at the source after
 * digesting it, so the destination's digest differs.
 */
#define _GNU_SOURCE
#include "endpoint.h"
#include "pipeline.h"

#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>

#define SPIN_IDLE 256 /* empty turns before the loop sleeps until a completion or the I/O thread wakes it */

enum fx_tag { FX_T_WRITE = 1, FX_T_SEND = 2, FX_T_READ = 3 };

struct fx {
	Endpoint *ep;
	struct pl pl;
	uint32_t nq, w;
	uint64_t n;
	_Atomic uint64_t gate;        /* what the I/O thread may process (with pl.gate_plus) */
	uint64_t count[MAX_QPS];      /* per QP, in order: credits / notices / requests / READs done */
	uint64_t ready[MAX_QPS];      /* pull: "ready" received per QP */
	uint64_t read_posted[MAX_QPS];/* pull: READs posted per QP */
	uint32_t *lens;               /* pull: length of the chunk requested into each slot */
	struct pl_sched sched;        /* the wire loop's own walk through the chunks (their lengths) */
	uint64_t timeout_ns, timeout_ticks, last_progress;
	uint64_t sends_posted, sends_done;
	unsigned idle;
	int armed;                    /* both CQs asked to signal their next completion on ep->cc */
	uint64_t done_seen;           /* the I/O thread's `done` when the loop last looked */
};

static uint8_t *fx_slot(const struct pl *p, uint64_t g)
{
	const Endpoint *ep = p->slot_ctx;

	return slot_addr(ep, (uint32_t)(g % ep->nqps), (g / ep->nqps) % ep->slots);
}

static uint32_t qp_of(const struct fx *x, uint64_t g)
{
	return (uint32_t)(g % x->nq);
}

/* The first chunk not yet counted on some QP: every chunk before it is counted. */
static uint64_t frontier(const struct fx *x)
{
	uint64_t m = UINT64_MAX;
	uint32_t q;

	for (q = 0; q < x->nq; q++) {
		uint64_t f = q + x->count[q] * x->nq;

		if (f < m)
			m = f;
	}
	return m;
}

static int room(const struct fx *x, uint32_t q, uint32_t wrs)
{
	const struct ep_qp *p = &x->ep->q[q];

	return p->sq_posted - p->sq_done + wrs <= x->ep->depth;
}

static int fx_post(struct fx *x, enum ibv_wr_opcode op, uint64_t g, uint32_t len, uint32_t imm, int has_imm,
		   enum fx_tag tag, struct rt_err *e)
{
	uint32_t q = qp_of(x, g);
	const struct ep_qp *p = &x->ep->q[q];
	uint8_t *laddr = op == IBV_WR_SEND ? NULL : fx_slot(&x->pl, g);
	uint64_t raddr = p->raddr + ((g / x->nq) % x->w) * p->rsize;

	if (post_one(x->ep, q, op, laddr, op == IBV_WR_SEND ? 0 : len, raddr, has_imm, imm, 1,
		     ((uint64_t)tag << 56) | (g & IDX_MASK), e))
		return -1;
	x->sends_posted++;
	return 0;
}

static int fx_stalled(struct fx *x, const char *what, struct rt_err *e)
{
	if (ticks() - x->last_progress > x->timeout_ticks) {
		rt_set(e, RT_TIMEOUT, ETIMEDOUT, "no progress for %llu ms while %s (%llu of %llu chunks through the disk)",
		       (unsigned long long)(x->timeout_ns / 1000000), what,
		       (unsigned long long)atomic_load(&x->pl.done), (unsigned long long)x->n);
		return -1;
	}
	return 0;
}

/* Nothing happened in this turn. After SPIN_IDLE such turns the loop sleeps (at most 10 ms, so stalls are
 * still seen) until a completion arrives on the endpoint's channel or the I/O thread finishes a chunk:
 * a spinning loop takes the CPU the I/O thread and the kernel need (on rxe, the kernel moves the bytes),
 * and its cost would be counted against the transfer. Both CQs are armed one turn before the loop sleeps,
 * so a completion that came before the arming is polled in that turn and one after it wakes the loop. */
static void fx_idle(struct fx *x, int progress)
{
	struct pollfd pfd[2];
	uint64_t done;

	if (progress) {
		x->idle = 0;
		return;
	}
	if (++x->idle < SPIN_IDLE)
		return;
	if (!x->ep->cc || x->pl.wake_fd < 0) {
		sched_yield();
		return;
	}
	if (!x->armed) {
		if (ibv_req_notify_cq(x->ep->scq, 0) || ibv_req_notify_cq(x->ep->rcq, 0)) {
			sched_yield();
			return;
		}
		x->armed = 1;
		x->done_seen = atomic_load(&x->pl.done);
		return;
	}
	atomic_store(&x->pl.wire_sleeping, 1);
	done = atomic_load(&x->pl.done);
	if (done == x->done_seen && !atomic_load(&x->pl.failed)) {
		pfd[0].fd = x->ep->cc->fd;
		pfd[0].events = POLLIN;
		pfd[1].fd = x->pl.wake_fd;
		pfd[1].events = POLLIN;
		pfd[0].revents = pfd[1].revents = 0;
		if (poll(pfd, 2, 10) > 0) {
			if (pfd[0].revents & POLLIN) {
				struct ibv_cq *cq;
				void *cq_ctx;

				while (ibv_get_cq_event(x->ep->cc, &cq, &cq_ctx) == 0)
					ibv_ack_cq_events(cq, 1);
				x->armed = 0;
			}
			if (pfd[1].revents & POLLIN) {
				uint64_t v;
				ssize_t rc = read(x->pl.wake_fd, &v, sizeof(v));

				(void)rc;
			}
		}
	}
	atomic_store(&x->pl.wire_sleeping, 0);
	x->done_seen = atomic_load(&x->pl.done);
}

/* Poll the send CQ (every WR of these loops is signaled); READ completions count per QP. */
static int fx_poll_send(struct fx *x, int *reads, struct rt_err *e)
{
	struct ibv_wc wc[POLL_BATCH];
	int n = ep_poll(x->ep, 0, wc, POLL_BATCH, e), i;

	for (i = 0; i < n; i++) {
		uint64_t tag = ep_send_done(x->ep, &wc[i]);

		x->sends_done++;
		x->last_progress = ticks();
		if ((tag >> 56) == FX_T_READ) {
			x->count[wc[i].wr_id >> 48]++;
			if (reads)
				(*reads)++;
		}
	}
	return n;
}

/* One message off the receive CQ: 1 with its QP and imm, 0 when none, -1 on error or ABORT. */
static int fx_poll_recv(struct fx *x, uint32_t *q, uint32_t *imm, struct rt_err *e)
{
	struct ibv_wc wc;
	int n = ep_poll(x->ep, 1, &wc, 1, e);

	if (n <= 0)
		return n;
	if (ep_recv_done(x->ep, &wc, e))
		return -1;
	x->last_progress = ticks();
	if (!(wc.wc_flags & IBV_WC_WITH_IMM)) {
		rt_set(e, RT_VALUE, EPROTO, "protocol error: a message without immediate data");
		return -1;
	}
	*q = (uint32_t)(wc.wr_id >> 48);
	*imm = ntohl(wc.imm_data);
	if (*imm == IMM_ABORT) {
		rt_set(e, RT_OS, ECONNABORTED, "the peer aborted the transfer");
		return -1;
	}
	return 1;
}

/* The next in-order message on QP q must be about chunk q + count[q] * Q. */
static int fx_expect(struct fx *x, uint32_t q, uint32_t imm, uint64_t counted, const char *what, struct rt_err *e)
{
	uint64_t g = q + counted * x->nq;

	if (g >= x->n || imm != (uint32_t)g) {
		rt_set(e, RT_VALUE, EPROTO, "protocol error: %s for chunk %u on QP %u, expected %llu of %llu", what, imm, q,
		       (unsigned long long)g, (unsigned long long)x->n);
		return -1;
	}
	return 0;
}

static int fx_io_failed(struct fx *x)
{
	return atomic_load(&x->pl.failed);
}

static int fx_drain(struct fx *x, struct rt_err *e)
{
	while (x->sends_done < x->sends_posted) {
		int n = fx_poll_send(x, NULL, e);

		if (n < 0 || (n == 0 && fx_stalled(x, "waiting for send completions", e)))
			return -1;
	}
	return 0;
}

/* A local failure: tell the peer (best effort, bounded) so it stops at once. */
static void fx_tell_abort(struct fx *x, const struct rt_err *why)
{
	struct rt_err ignored;
	uint64_t until;

	if (why->errnum == ECONNABORTED || why->kind == RT_TIMEOUT)
		return; /* the peer aborted, or is gone */
	memset(&ignored, 0, sizeof(ignored));
	if (!room(x, 0, 1))
		return;
	if (post_one(x->ep, 0, IBV_WR_SEND, NULL, 0, 0, 1, IMM_ABORT, 1, 0, &ignored))
		return;
	x->sends_posted++;
	until = now_ns() + 1000000000ull;
	while (x->sends_done < x->sends_posted && now_ns() < until)
		if (fx_poll_send(x, NULL, &ignored) < 0)
			break;
}

/* ------------------------------------------------------------------ the four loops */

static int fx_push(struct fx *x, struct rt_err *e)
{
	uint64_t posted = 0, credited = 0;
	struct pl_piece pc;

	x->pl.gate_plus = (uint64_t)x->nq * x->w; /* a chunk may load once the one before it in its slot is credited */
	while (credited < x->n) {
		int progress = 0, r;
		uint32_t q, imm;

		while (posted < atomic_load(&x->pl.done) && room(x, qp_of(x, posted), 2)) {
			pl_sched_next(&x->sched, &pc);
			/* RDMA WRITE, then a zero-byte SEND with imm = g: RC delivers the SEND after the write
			 * has landed. (WRITE_WITH_IMM failed across the two-guest link with "remote invalid
			 * request" on rxe, while it worked on one guest.) */
			if (fx_post(x, IBV_WR_RDMA_WRITE, posted, pc.len, 0, 0, FX_T_WRITE, e) ||
			    fx_post(x, IBV_WR_SEND, posted, 0, (uint32_t)posted, 1, FX_T_SEND, e))
				return -1;
			posted++;
			progress = 1;
		}
		if ((r = fx_poll_send(x, NULL, e)) < 0)
			return -1;
		progress |= r > 0;
		while ((r = fx_poll_recv(x, &q, &imm, e)) > 0) {
			if (fx_expect(x, q, imm, x->count[q], "credit", e))
				return -1;
			x->count[q]++;
			credited++;
			progress = 2;
		}
		if (r < 0 || fx_io_failed(x))
			return -1;
		if (progress == 2)
			pl_open_gate(&x->pl, &x->gate, frontier(x));
		if (!progress && fx_stalled(x, "pushing chunks", e))
			return -1;
		fx_idle(x, progress);
	}
	return fx_drain(x, e);
}

static int fx_recv(struct fx *x, struct rt_err *e)
{
	uint64_t credited = 0;

	while (credited < x->n) {
		int progress = 0, r;
		uint32_t q, imm;

		while ((r = fx_poll_recv(x, &q, &imm, e)) > 0) {
			if (fx_expect(x, q, imm, x->count[q], "notice", e))
				return -1;
			x->count[q]++;
			progress = 2;
		}
		if (r < 0 || fx_io_failed(x))
			return -1;
		if (progress == 2)
			pl_open_gate(&x->pl, &x->gate, frontier(x));
		while (credited < atomic_load(&x->pl.done) && room(x, qp_of(x, credited), 1)) {
			if (fx_post(x, IBV_WR_SEND, credited, 0, (uint32_t)credited, 1, FX_T_SEND, e))
				return -1;
			credited++;
			progress = 1;
		}
		if ((r = fx_poll_send(x, NULL, e)) < 0)
			return -1;
		progress |= r > 0;
		if (!progress && fx_stalled(x, "receiving chunks", e))
			return -1;
		fx_idle(x, progress);
	}
	return fx_drain(x, e);
}

static int fx_serve(struct fx *x, struct rt_err *e)
{
	uint64_t readied = 0;
	int ended = 0;

	while (!ended) {
		int progress = 0, r = 0;
		uint32_t q, imm;

		while (!ended && (r = fx_poll_recv(x, &q, &imm, e)) > 0) {
			progress = 1;
			if (imm == IMM_END) {
				ended = 1;
				break;
			}
			if (fx_expect(x, q, imm, x->count[q], "request", e))
				return -1;
			x->count[q]++;
			progress = 2;
		}
		if ((!ended && r < 0) || fx_io_failed(x))
			return -1;
		if (progress == 2)
			pl_open_gate(&x->pl, &x->gate, frontier(x));
		while (readied < atomic_load(&x->pl.done) && room(x, qp_of(x, readied), 1)) {
			if (fx_post(x, IBV_WR_SEND, readied, 0, (uint32_t)readied, 1, FX_T_SEND, e))
				return -1;
			readied++;
			progress = 1;
		}
		if ((r = fx_poll_send(x, NULL, e)) < 0)
			return -1;
		progress |= r > 0;
		if (!progress && fx_stalled(x, "serving chunks", e))
			return -1;
		fx_idle(x, progress);
	}
	return fx_drain(x, e);
}

static int fx_pull(struct fx *x, struct rt_err *e)
{
	uint64_t requested = 0, slots = (uint64_t)x->nq * x->w;
	struct pl_piece pc;

	while (atomic_load(&x->pl.done) < x->n) {
		int progress = 0, reads = 0, r;
		uint32_t q, imm;

		while (requested < x->n && requested < atomic_load(&x->pl.done) + slots && room(x, qp_of(x, requested), 1)) {
			pl_sched_next(&x->sched, &pc);
			x->lens[requested % slots] = pc.len;
			if (fx_post(x, IBV_WR_SEND, requested, 0, (uint32_t)requested, 1, FX_T_SEND, e))
				return -1;
			requested++;
			progress = 1;
		}
		while ((r = fx_poll_recv(x, &q, &imm, e)) > 0) {
			if (fx_expect(x, q, imm, x->ready[q], "ready", e))
				return -1;
			x->ready[q]++;
			progress = 1;
		}
		if (r < 0 || fx_io_failed(x))
			return -1;
		for (q = 0; q < x->nq; q++)
			while (x->read_posted[q] < x->ready[q] && room(x, q, 1)) {
				uint64_t g = q + x->read_posted[q] * x->nq;

				if (fx_post(x, IBV_WR_RDMA_READ, g, x->lens[g % slots], 0, 0, FX_T_READ, e))
					return -1;
				x->read_posted[q]++;
				progress = 1;
			}
		if ((r = fx_poll_send(x, &reads, e)) < 0)
			return -1;
		progress |= r > 0;
		if (reads)
			pl_open_gate(&x->pl, &x->gate, frontier(x));
		if (!progress && fx_stalled(x, "pulling chunks", e))
			return -1;
		fx_idle(x, progress);
	}
	if (!room(x, 0, 1) && fx_drain(x, e))
		return -1;
	if (post_one(x->ep, 0, IBV_WR_SEND, NULL, 0, 0, 1, IMM_END, 1, (uint64_t)FX_T_SEND << 56, e))
		return -1;
	x->sends_posted++;
	return fx_drain(x, e);
}

/* ------------------------------------------------------------------ entry */

int fx_transfer(Endpoint *ep, enum fx_kind kind, struct pl_file *files, uint32_t nfiles, uint32_t parallel,
		int timeout_ms, int64_t abort_after, int64_t corrupt_at, uint8_t (*digests)[16],
		struct fx_result *out, struct rt_err *e)
{
	static int (*const loops[])(struct fx *, struct rt_err *) = { fx_push, fx_recv, fx_serve, fx_pull };
	struct fx *x;
	uint64_t t0;
	uint32_t q;
	int rc = -1;

	if (timeout_ms <= 0) {
		rt_set(e, RT_VALUE, 0, "timeout_ms must be > 0");
		return -1;
	}
	for (q = 0; q < (uint32_t)ep->nqps; q++)
		if (ep->q[q].rslots < ep->slots || ep->q[q].rsize < ep->size) {
			rt_set(e, RT_VALUE, 0, "the peer's ring (%u slots of %llu bytes on QP %u) is smaller than ours (%u of %u)",
			       ep->q[q].rslots, (unsigned long long)ep->q[q].rsize, q, ep->slots, ep->size);
			return -1;
		}
	x = calloc(1, sizeof(*x));
	if (!x || !(x->lens = calloc((size_t)ep->nqps * ep->slots, sizeof(uint32_t)))) {
		free(x);
		rt_set(e, RT_NOMEM, ENOMEM, "no memory for the transfer's state");
		return -1;
	}
	x->ep = ep;
	x->nq = (uint32_t)ep->nqps;
	x->w = ep->slots;
	x->pl.role = kind == FX_PUSH || kind == FX_SERVE ? PL_READ : PL_WRITE;
	x->pl.files = files;
	x->pl.nfiles = nfiles;
	x->pl.parallel = parallel;
	x->pl.chunk = ep->size;
	x->pl.nslots = x->nq * x->w;
	x->pl.slot = fx_slot;
	x->pl.slot_ctx = ep;
	x->pl.gate = &x->gate;
	x->pl.abort_after = abort_after;
	x->pl.corrupt_at = corrupt_at;
	x->pl.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); /* -1: the loop spins instead of sleeping */
	if (pl_init(&x->pl, e))
		goto out;
	x->n = x->pl.n;
	if (x->n > FX_MAX_CHUNKS) {
		rt_set(e, RT_VALUE, 0, "%llu chunks: too many for the chunk size", (unsigned long long)x->n);
		goto out;
	}
	pl_sched_init(&x->sched, files, nfiles, ep->size, x->pl.parallel);
	x->timeout_ns = (uint64_t)timeout_ms * 1000000ull;
	x->timeout_ticks = ns_to_ticks(x->timeout_ns);
	t0 = now_ns();
	x->last_progress = ticks();
	if (pl_start(&x->pl, e))
		goto out;
	rc = loops[kind](x, e);
	if (pl_join(&x->pl, e))
		rc = -1;
	if (rc)
		fx_tell_abort(x, e);
	out->bytes = x->pl.bytes;
	out->chunks = x->n;
	out->ns = now_ns() - t0;
	out->io_ns = x->pl.busy_ns;
	out->io_wait_ns = x->pl.wait_ns;
	if (!rc)
		memcpy(digests, x->pl.digest, (size_t)nfiles * 16);
out:
	if (x->pl.started)
		pl_join(&x->pl, e);
	pl_free(&x->pl);
	if (x->pl.wake_fd >= 0)
		close(x->pl.wake_fd);
	free(x->lens);
	free(x);
	return rc;
}
