/*
 * endpoint.h: the C core's Endpoint, no Python in it (endpoint.c: resources, open and close;
 * ep_connect.c: out-of-band connect; ep_cm.c: rdma_cm; ep_poll.c: posting and polling;
 * ep_bw.c and ep_lat.c: the bandwidth and latency loops; ep_atomic.c: the atomic tests; ep_mem.c:
 * the buffer (NUMA node, huge pages); ep_knobs.c: traffic class and SL; ep_run.c: one run's setup and loop;
 * ep_window.c: windows and the latency histogram; filexfer.c: the file loops, on pipeline.c's file side).
 * The binding layer, the only code that converts Python objects, wraps it as the Python type below:
 * bindings.c (the module; its header comment maps the layer), py_common.h/c (what they share),
 * py_endpoint.c (the type), py_connect.c (local_info, connect), py_run.c (run), py_windows.c (a run's
 * tick and windows) and py_files.c (the file loops).
 *
 * rdmabench._native.Endpoint: verbs resources held open across runs, connected to a peer
 * (QP info exchanged by the caller, or through rdma_cm), and the benchmark loops in C.
 *
 *   Endpoint(device, gid_index, port=1, qps=1, size=65536, depth=128, slots=0, mtu=0,
 *            cq_mod=100, inline_size=0, tclass=0, sl=0, numa_node=-1, hugepages=False)
 *   Endpoint.cm_listen(bind_ip, port, qps=1, size=65536, depth=128, slots=0, cq_mod=100,
 *                      inline_size=0, timeout_ms=10000, tclass=0, sl=0, numa_node=-1,
 *                      hugepages=False)                          -> connected Endpoint
 *     (tclass: every QP's GRH traffic class, DSCP << 2 | ECN (rdma_cm: the id's TOS, set before
 *     the route is resolved); sl: the service level (out-of-band connect only: rdma_cm's kernel
 *     picks it from the TOS); numa_node: the buffer's pages preferred on that node before first
 *     touch; hugepages: the buffer from 2 MiB huge pages. ep.knobs() says what the device holds.)
 *   Endpoint.cm_connect(peer_ip, port, <same>)                   -> connected Endpoint
 *     (one rdma_cm connection per QP, the peer's addr/rkey/slots/size in the private data; the
 *     device is the one rdma_cm resolves the address to: ep.device; the path MTU is rdma_cm's;
 *     every wait is bounded by timeout_ms, address/route resolution by librdmacm's 2 s)
 *   ep.local_info() -> [ {qpn, psn, gid (32 hex), lid, addr, rkey, size, slots, mtu} ] one per QP
 *   ep.connect(remote_infos)   INIT -> RTR -> RTS for every QP
 *   ep.run(test, role, iters=0, duration_s=0.0, warmup=0, bidir=False, validate=False,
 *          max_samples=1000000, timeout_ms=10000, atomic="fetch_add", interval_s=1.0,
 *          on_window=None) -> dict
 *     (duration_s inf: until stopped; every interval_s the loop closes a window and calls
 *     on_window(dict) if given: t_s, seconds, ops, samples, size, latency, lat_{min,p50,p99,max}_ns;
 *     Ctrl-C there ends a duration run cleanly (interrupted True) and an iterations run with
 *     KeyboardInterrupt; an exception from on_window stops the run and is raised)
 *   ep.knobs() -> {tclass, sl, qp_traffic_class, qp_sl (QP 0's AV as queried), numa_node,
 *          memory_node (where the buffer's pages are), hugepages, atomic_cap}
 *   ep.close(); with Endpoint(...) as ep: ...
 *   attributes: device, port, qps, size, depth, slots, cq_mod, inline_size, mtu (path MTU in bytes
 *   once connected, else the port's active MTU), registered_bytes (== qps * slots * size), connected
 *
 * Memory: ONE registered buffer of qps * slots * size bytes (slots 0 -> depth), split per QP into
 * `slots` slots of `size` bytes. Control messages (credits, end markers, the write_lat handshake)
 * are zero-byte SENDs with immediate data, so they need no memory of their own. Every QP keeps
 * min(depth, slots) receives posted at all times (slot of receive i = i % slots).
 *
 * run() tests: write_bw read_bw send_bw write_lat read_lat send_lat atomic_bw atomic_lat; role
 * client | server; atomic="fetch_add" | "cmp_swap" for the atomic tests (8-byte operations on a
 * counter in the peer's slot 0 of each QP, every reply checked, the counter read back at the end).
 * iters is PER QP (perftest's -n): a BW client with qps=Q moves Q * iters messages.
 * Latency tests use QP 0 only.
 *
 * Keys of the dict run() returns:
 *   test, role, iters, warmup, duration_s, bidir, qps, size
 *   passive            True: this side did nothing (write_bw/read_bw server without validate,
 *                      read_lat server); only test/role/passive and the zeros are meaningful.
 *                      A read_bw/read_lat server told validate=True fills every slot with its
 *                      pattern (qp, slot) before returning: run it before the client.
 *   ops, bytes         messages (bytes) this side moved in the measured phase: sent and completed
 *                      for a sender, received for a receiver (send_bw server); recv_ops counts what a
 *                      bidirectional send_bw received
 *   t_start_ns         first post of the measured phase (receiver only: first receive completion)
 *   t_end_ns           last completion; both on the CLOCK_MONOTONIC_RAW scale, int ns
 *   tsc_hz             ticks per second of the clock used, calibrated once per process (1e9 when
 *                      no TSC: clock_gettime); the results context records the same figure
 *   completions_ns     array('q'): time (int ns, same scale) of each signaled completion (BW)
 *   completions_ops    array('Q'): messages completed in the measured phase at that time (BW)
 *   samples_ns         array('d'): latency samples in ns, at most min(iters, max_samples) (lat);
 *                      empty for BW
 *   sample             "half round trip" (write_lat, send_lat), "post to completion" (read_lat),
 *                      None for BW
 *   samples_truncated  True when completions/samples stopped being recorded: the array was full
 *   windows            {t_ns: array('q') each window's end, ns since the first operation; ops:
 *                      array('Q') operations done by then; last: array('B') 1 for the one the run's
 *                      end closed; latency client also samples and lat_{min,p50,p99,max}_ns
 *                      array('d') per window}; interval_s; windows_truncated (over 2^20 windows)
 *   lat_hist           latency client: {ns: bucket middles, count} of every sample (ep_window.c)
 *   interrupted        True when the tick stopped the run (Ctrl-C)
 *   validated          payloads checked (validate=True), warm-up included
 *   corrupt            payloads that did not match their pattern
 *   first_corrupt_seq  sequence number (per QP, counted from 0 at the run's first message,
 *                      warm-up included) of the first corrupt payload, -1 if none
 *   atomic tests also: atomic ("fetch_add"/"cmp_swap"), atomic_depth (operations in flight per
 *                      QP), atomic_signal_every, reply_byte_order ("host", "big-endian" or None:
 *                      not known), counters_ok / counters_bad (remote counters read back equal to
 *                      the operations done, or not); a wrong reply counts in corrupt
 *
 * Errors: ValueError (bad argument), LookupError (no such device), TimeoutError (no progress for
 * timeout_ms), OSError (a verbs/rdma_cm call or a completion failed: the message names the QP
 * index and ibv_wc_status_str), RuntimeError (endpoint closed, not connected or busy).
 */
#ifndef RDMABENCH_ENDPOINT_H
#define RDMABENCH_ENDPOINT_H

#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rdma/rdma_cma.h>
#include <rdma/rdma_verbs.h>

struct ep_qp {
	struct ibv_qp *qp;
	struct rdma_cm_id *cm_id;
	uint32_t psn;
	/* the peer's memory for this QP */
	uint64_t raddr;
	uint32_t rkey;
	uint32_t rslots;
	uint64_t rsize;
	enum ibv_mtu path_mtu;
	/* persistent across runs */
	uint64_t sq_posted, sq_done; /* send queue: WRs posted / known complete */
	uint64_t rq_posted, rq_done; /* receive WQEs posted / completed */
	uint64_t *sq_data;           /* ring[depth]: data messages posted up to WR i (incl.) */
	uint64_t data_done;          /* data messages completed (this run) */
	int last_signaled;
};

typedef struct endpoint {
	struct ibv_context *ctx;
	int own_ctx;
	struct ibv_pd *pd;
	struct ibv_cq *scq, *rcq;
	struct ibv_comp_channel *cc; /* both CQs' events, for loops that sleep when idle (filexfer.c); NULL: none */
	uint8_t *buf;
	size_t buf_len;
	struct ibv_mr *mr;
	struct ep_qp *q;
	int nqps, nqps_created;
	int port, gid_index;
	union ibv_gid gid;
	uint16_t lid;
	enum ibv_mtu active_mtu;
	int req_mtu;
	uint32_t size, depth, slots, cq_mod, inline_size, recv_target;
	uint32_t max_rd_atomic, max_dest_rd_atomic;
	/* production knobs (ep_knobs.c, ep_mem.c), set before open: traffic class (DSCP << 2 | ECN)
	 * and service level of every QP's address vector; the NUMA node the buffer is placed on (-1:
	 * no placement); the buffer from 2 MiB huge pages. atomic_cap: the device's (enum ibv_atomic_cap). */
	int tclass, sl, numa_node, hugepages, atomic_cap;
	size_t buf_map_len; /* bytes mmap()ed for buf (0: not mapped) */
	struct rdma_event_channel *cm_ch;
	char devname[64];
	int connected, closed, busy;
	int64_t corrupt_seq; /* test hook: the sender corrupts this sequence's payload; -1 none */
} Endpoint;

static inline uint8_t *slot_addr(const Endpoint *ep, uint32_t q, uint64_t slot)
{
	return ep->buf + ((size_t)q * ep->slots + (size_t)(slot % ep->slots)) * ep->size;
}

/* One QP's connection facts: what local_info() says of ours, and what connect() takes of the peer's. */
struct remote_qp {
	uint32_t qpn, psn, rkey, slots, mtu;
	uint32_t rd_atomic; /* 0: the peer did not say (an older rdmabench) */
	uint16_t lid;
	uint64_t addr, size;
	union ibv_gid gid;
};

/* The wire protocol of the run loops and the file loops (rdmabench/engines/python/protocol.py
 * speaks the run loops' part): control messages are zero-byte SENDs whose immediate is the message. */
#define MAX_QPS 256
#define POLL_BATCH 32
#define IMM_END 0xFFFFFFFFu   /* last message of a duration run; file loops: the puller is done */
#define IMM_READY 0xFFFFFFFEu /* write_lat: the server is ready to be written to */
#define IMM_ABORT 0xFFFFFFFDu /* file loops: the sender failed, stop now */
#define FX_MAX_CHUNKS 0xFFFFFF00ull /* file loops: chunk numbers stay below the markers */
#define IDX_MASK 0xFFFFFFFFFFFFull /* wr_id = QP index << 48 | WR index */
#define MAX_BUFFER (64ull << 30)
#define MAX_RD_ATOMIC 255 /* keep in step with rdmabench/verbs/resources.py */

enum test_kind { T_WRITE_BW, T_READ_BW, T_SEND_BW, T_WRITE_LAT, T_READ_LAT, T_SEND_LAT, T_ATOMIC_BW,
		 T_ATOMIC_LAT, N_TESTS };
extern const char *const test_names[];
enum atomic_op { A_FETCH_ADD, A_CMP_SWAP };

/* ------------------------------------------------------------------ the state of one run */

struct bwq {
	uint64_t sent;      /* data messages posted (run-wide sequence of the next one) */
	uint64_t checked;   /* read_bw validate: completed messages checked */
	uint64_t granted;   /* write_bw validate: messages the peer has checked (credits) */
	uint64_t recvd;     /* data messages received */
	uint64_t credited;  /* credits returned (cumulative count sent in the last credit) */
	int send_finished;  /* nothing more to post in this phase */
	int recv_finished;  /* got everything (iters) or the end marker */
};

/* One window of a measured run: when it closed, the operations done by then (cumulative), and for
 * a latency run its own samples' count, min, p50, p99 and max (ns; from the window's histogram). */
struct win {
	uint64_t t_end, ops;
	uint64_t n;
	double lat_min, lat_p50, lat_p99, lat_max;
	int last; /* the run's end closed it: shorter than the interval */
};

#define HIST_SUB 128 /* buckets per power of two: a bucket's middle is within 1/256 of its samples */
#define HIST_BUCKETS (HIST_SUB + 57 * HIST_SUB)
#define MAX_WINDOWS (1u << 20)

struct run {
	Endpoint *ep;
	int test, client, bidir, validate, passive, is_lat;
	uint64_t dur_ticks;
	uint64_t iters, warmup;
	double duration_s;
	uint64_t timeout_ticks;
	int timeout_ms;
	struct bwq *s;
	/* recording */
	int recording;
	uint64_t tot_done, tot_recvd, done0, recvd0;
	uint64_t t_start, t_end;
	int have_start;
	uint64_t *c_t, *c_ops;
	size_t nc, ccap;
	double *samp;
	size_t ns, scap;
	int truncated;
	uint64_t validated, corrupt;
	int64_t first_corrupt;
	uint64_t last_progress;
	uint64_t lat_ops; /* latency tests: measured iterations */
	/* atomic tests (ep_atomic.c) */
	int atomic_op;
	uint32_t atomic_depth, atomic_mod; /* in flight per QP (min of depth and the QP's max_rd_atomic); signal every */
	int reply_be;                      /* replies seen byte-swapped (big-endian): -1 not known yet, 0 host, 1 be */
	uint64_t counters_ok, counters_bad; /* remote counters read back after the run: as expected or not */
	/* windows and the whole-run latency histogram (ep_window.c) */
	uint64_t win_ticks, win_next;  /* a window's length; when the open one closes (0: none yet) */
	struct win *w;
	size_t nw, wcap;
	int w_truncated;
	uint64_t *hist, *win_hist; /* HIST_BUCKETS counts each: every latency sample, this window's */
	double win_min, win_max;
	uint64_t win_n;
	/* called with each closed window (without the GIL); nonzero asks the run to stop: a duration
	 * run ends as if its time were up, an iterations run fails with "interrupted" */
	int (*tick)(void *arg, const struct run *r, const struct win *w);
	void *tick_arg;
	int stop;
};

/* endpoint.c: resources, open and close (0, or -1 with e set; a failed open releases what it made) */
void ep_init(Endpoint *ep);
void ep_release(Endpoint *ep, struct rt_err *e);
int ep_check_args(Endpoint *ep, int qps, int64_t size, int depth, int slots, int mtu, int cq_mod,
		  int inline_size, struct rt_err *e);
int ep_setup_verbs(Endpoint *ep, struct rt_err *e);
void ep_qp_init_attr(Endpoint *ep, struct ibv_qp_init_attr *qia);
int ep_open(Endpoint *ep, const char *device, int gid_index, int port, int qps, int64_t size,
	    int depth, int slots, int mtu, int cq_mod, int inline_size, struct rt_err *e);
int ep_mtu_bytes(Endpoint *ep);
/* keep recv_target receives posted on QP q (receive i -> slot i % slots); post one WR (len 0: no
 * SGE; sq_data[sq_posted % depth] = data_after); record a failed completion */
int post_recvs(Endpoint *ep, uint32_t q, struct rt_err *e);
int post_one(Endpoint *ep, uint32_t q, enum ibv_wr_opcode op, uint8_t *laddr, uint32_t len,
	     uint64_t raddr, int has_imm, uint32_t imm, int signaled, uint64_t data_after,
	     struct rt_err *e);
int wc_failed(const struct ibv_wc *wc, const char *side, struct rt_err *e);

/* ep_mem.c: the registered buffer, mmap()ed (huge pages when ep->hugepages), placed on
 * ep->numa_node (preferred) before it is first touched; ep_buf_node: the node its pages are on
 * (-1 unknown, -2 pages on several nodes) */
int ep_buf_alloc(Endpoint *ep, struct rt_err *e);
void ep_buf_free(Endpoint *ep);
int ep_buf_node(const Endpoint *ep);
/* ep_knobs.c: the knobs checked; an rdma_cm id resolved to ip:port with the traffic class set
 * before the route; QP 0's address vector as the device holds it (-1 each when it cannot say) */
int ep_check_knobs(const Endpoint *ep, int cm, struct rt_err *e);
int ep_cm_create_id(Endpoint *ep, struct rdma_addrinfo *res, struct rdma_cm_id **id, struct rt_err *e);
int ep_set_tos(Endpoint *ep, struct rdma_cm_id *id, struct rt_err *e);
void ep_qp_av(const Endpoint *ep, int *traffic_class, int *sl);
const char *atomic_cap_name(int cap);

/* ep_atomic.c: atomic_bw / atomic_lat, the client's loop (the server is passive) */
int atomic_run(struct run *r, struct rt_err *e);

/* ep_connect.c: QP i's facts for the peer; every QP to RTS against the peer's (n == nqps) */
void ep_local_qp(const Endpoint *ep, int i, struct remote_qp *out);
int ep_connect_qps(Endpoint *ep, const struct remote_qp *r, int n, struct rt_err *e);
/* ep_cm.c: open and connect through rdma_cm (one connection per QP); releases on failure */
int ep_cm_open(Endpoint *ep, int listen, const char *ip, int port, int qps, int64_t size, int depth,
	       int slots, int cq_mod, int inline_size, int timeout_ms, struct rt_err *e);

/* ep_poll.c: polling for every loop (run's and the file loops): ep_poll fills wc with up to max
 * completions (-1 with e set when the poll or one failed); ep_send_done advances the QP's send queue
 * and returns the WR's sq_data entry; ep_recv_done reposts the receive once its slot is free. */
int ep_poll(Endpoint *ep, int recv, struct ibv_wc *wc, int max, struct rt_err *e);
uint64_t ep_send_done(Endpoint *ep, const struct ibv_wc *wc);
int ep_recv_done(Endpoint *ep, const struct ibv_wc *wc, struct rt_err *e);

/* ep_poll.c: the run loops' records, posting and polling */
void note_corrupt(struct run *r, uint64_t seq);
void check_landed(struct run *r, uint32_t q, uint64_t slot, uint32_t len, uint64_t seed, uint64_t seq);
void record_completion(struct run *r, uint64_t t, uint64_t ops);
void record_sample(struct run *r, double ns);
void record_latency(struct run *r, uint64_t t0, uint64_t t1, double ns);
int poll_send(struct run *r, struct rt_err *e);
int drain_sq(struct run *r, uint32_t q, struct rt_err *e);
int ep_wait_send(Endpoint *ep, struct ibv_wc *wc, uint64_t t0, const struct run *r, const char *what,
		 uint64_t index, struct rt_err *e);
int maybe_credit(struct run *r, uint32_t q, int force, struct rt_err *e);
int poll_recv(struct run *r, struct rt_err *e);

/* ep_bw.c, ep_lat.c: the loops (0, or -1 with e set) */
int bw_phase(struct run *r, uint64_t target, uint64_t dur_ticks, int record, struct rt_err *e);
void fill_read_slots(Endpoint *ep);
int lat_run(struct run *r, uint64_t dur_ticks, struct rt_err *e);

/* ep_window.c: windows every win_ticks (run_windows allocates; 0 or -1 with e set); win_begin at the
 * measured phase's first operation; win_poll closes the open window when its time is up (calls
 * tick); win_end closes the last one at the run's end; run_stopped sets the "interrupted" error;
 * hist_add / hist_value / hist_percentile: the log-linear latency histogram */
int run_windows(struct run *r, double interval_s, int (*tick)(void *, const struct run *, const struct win *),
		void *arg, struct rt_err *e);
void win_begin(struct run *r, uint64_t t);
void win_close(struct run *r, uint64_t now, uint64_t ops, int last);
static inline void win_poll(struct run *r, uint64_t now, uint64_t ops)
{
	if (r->win_next && now >= r->win_next)
		win_close(r, now, ops, 0);
}
void win_end(struct run *r);
int run_stopped(struct run *r, struct rt_err *e);
void hist_add(struct run *r, double ns);
double hist_value(size_t bucket);
double hist_percentile(const uint64_t *hist, uint64_t n, double p);

/* ep_run.c: run_setup checks the arguments and allocates the records (r->passive: nothing to
 * do); run_loop runs (touches only C state: called without the GIL); run_free frees the records */
int run_setup(struct run *r, Endpoint *ep, const char *test, const char *role, int64_t iters,
	      double duration_s, int64_t warmup, int bidir, int validate, int64_t max_samples,
	      int timeout_ms, const char *atomic, struct rt_err *e);
int run_loop(struct run *r, struct rt_err *e);
void run_free(struct run *r);

/* filexfer.c: files (or a blob) as chunks through a connected endpoint, Q = nqps streams, disk I/O
 * and digests on pipeline.c's thread. -> bytes, chunks, ns (wall), io_ns (the I/O thread busy),
 * io_wait_ns (the I/O thread waiting for the wire); digests[nfiles] (XXH3-128, canonical) on success */
#include "pipeline.h"
enum fx_kind { FX_PUSH, FX_RECV, FX_SERVE, FX_PULL };
struct fx_result {
	uint64_t bytes, chunks, ns, io_ns, io_wait_ns;
};
int fx_transfer(Endpoint *ep, enum fx_kind kind, struct pl_file *files, uint32_t nfiles, uint32_t parallel,
		int timeout_ms, int64_t abort_after, int64_t corrupt_at, uint8_t (*digests)[16],
		struct fx_result *out, struct rt_err *e);

#endif
