/*
 * Shared by the C sources of rdmabench._native: the error record that code running
 * without the GIL fills in (raised as a Python exception once the GIL is back), the
 * clocks (rdtsc calibrated against CLOCK_MONOTONIC_RAW at module init), the payload
 * pattern used for validation and small verbs helpers.
 */
#ifndef RDMABENCH_COMMON_H
#define RDMABENCH_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <infiniband/verbs.h>

/* ------------------------------------------------------------------ errors */

enum rt_err_kind { RT_OK = 0, RT_OS, RT_TIMEOUT, RT_VALUE, RT_LOOKUP, RT_NOMEM };

struct rt_err {
	enum rt_err_kind kind;
	int errnum;
	char msg[768];
};

/* Only the first error is kept: later ones (cleanup after a failure) are consequences. */
void rt_set(struct rt_err *e, enum rt_err_kind kind, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* A verbs call failed. Most verbs return the errno value; some return -1 and set errno. */
void rt_set_os(struct rt_err *e, const char *call, int rc);
/* Raise the recorded error as OSError / TimeoutError / ValueError / LookupError / MemoryError. */
PyObject *rt_raise(const struct rt_err *e);

/* ------------------------------------------------------------------ clocks */

uint64_t now_ns(void); /* CLOCK_MONOTONIC_RAW in ns */

/* Choose and calibrate the hot loops' clock once per process (module init); the rate never
 * changes after that, so every result of the process carries the same tsc_hz() (and the results
 * context records it). tsc_hz() is 1e9 where no usable TSC exists: then ticks() is now_ns(). */
void clock_calibrate(void);
double tsc_hz(void);
/* Which clock ticks() reads ("tsc (invariant)", "tsc (rate checked; ...)", "clock_gettime") and
 * what one clock_gettime costs here in ns: both go into every result's context. */
const char *timer_name(void);
double clock_read_ns(void);
/* ticks -> ns on the CLOCK_MONOTONIC_RAW scale (comparable with now_ns()). */
int64_t ticks_to_ns(uint64_t t);
/* a duration in ticks -> ns */
double ticks_span_ns(uint64_t dt);
uint64_t ns_to_ticks(uint64_t ns);

extern int g_use_tsc;

static inline uint64_t ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
	if (g_use_tsc) {
		uint32_t lo, hi;

		__asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
		return ((uint64_t)hi << 32) | lo;
	}
#endif
	return now_ns();
}

/* ------------------------------------------------------------------ payload pattern */

/* Deterministic, position-dependent bytes (xorshift64*), different per seed. */
void fill_pattern(uint8_t *buf, size_t len, uint64_t seed);
/* Seed of the payload of message `seq` on QP `qp` (splitmix64 of both). */
uint64_t pattern_seed(uint32_t qp, uint64_t seq);
/* 1 when buf holds fill_pattern(seed) exactly. */
int check_pattern(const uint8_t *buf, size_t len, uint64_t seed);

/* ------------------------------------------------------------------ verbs helpers */

static inline int mtu_bytes(enum ibv_mtu mtu)
{
	return 128 << (int)mtu; /* IBV_MTU_256 == 1 ... IBV_MTU_4096 == 5 */
}
enum ibv_mtu mtu_enum(int bytes); /* 0 when not one of 256..4096 */
int gid_is_zero(const union ibv_gid *gid);
/* The address vector to a RoCE peer: global (every packet carries a GRH), hop limit 64, SL 0. */
void roce_ah(struct ibv_ah_attr *ah, const union ibv_gid *dgid, int sgid_index, uint16_t dlid, int port);
/* Find the device by name; on a miss, say which devices exist (RT_LOOKUP). */
struct ibv_device *find_device(struct ibv_device **devs, int ndev, const char *name,
			       struct rt_err *e);

/* ------------------------------------------------------------------ the Endpoint type */

int endpoint_register(PyObject *module); /* endpoint.c: adds Endpoint to the module */

/* ------------------------------------------------------------------ the Endpoint, shared with filexfer.c */

struct rdma_cm_id;
struct rdma_event_channel;

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

typedef struct {
	PyObject_HEAD
	struct ibv_context *ctx;
	int own_ctx;
	struct ibv_pd *pd;
	struct ibv_cq *scq, *rcq;
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
	struct rdma_event_channel *cm_ch;
	char devname[64];
	int connected, closed, busy;
	int64_t corrupt_seq; /* test hook: the sender corrupts this sequence's payload; -1 none */
} Endpoint;

extern PyTypeObject EndpointType;

static inline uint8_t *slot_addr(const Endpoint *ep, uint32_t q, uint64_t slot)
{
	return ep->buf + ((size_t)q * ep->slots + (size_t)(slot % ep->slots)) * ep->size;
}

/* endpoint.c helpers: keep recv_target receives posted on QP q (receive i -> slot i % slots); post
 * one WR (len 0: no SGE; sq_data[sq_posted % depth] = data_after); record a failed completion;
 * 1 when the endpoint is open, idle (and connected if asked), else a Python error set and 0. */
int post_recvs(Endpoint *ep, uint32_t q, struct rt_err *e);
int post_one(Endpoint *ep, uint32_t q, enum ibv_wr_opcode op, uint8_t *laddr, uint32_t len,
	     uint64_t raddr, int has_imm, uint32_t imm, int signaled, uint64_t data_after,
	     struct rt_err *e);
int wc_failed(const struct ibv_wc *wc, const char *side, struct rt_err *e);
int ep_usable(Endpoint *ep, int need_connected);

int filexfer_register(PyObject *module); /* filexfer.c: push/recv/serve/pull of one file's chunks */

#endif
