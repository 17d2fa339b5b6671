/*
 * Shared by the C core of rdmabench._native (no Python.h: only the binding layer, bindings.c and
 * py_*.c, converts Python objects): the error record every core function fills in (py_common.c's
 * rt_raise raises it as a Python exception), the clocks (rdtsc calibrated against
 * CLOCK_MONOTONIC_RAW once per process), the payload pattern used for validation and small verbs
 * helpers.
 */
#ifndef RDMABENCH_COMMON_H
#define RDMABENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <infiniband/verbs.h>

/* ------------------------------------------------------------------ errors */

enum rt_err_kind { RT_OK = 0, RT_OS, RT_TIMEOUT, RT_VALUE, RT_LOOKUP, RT_NOMEM, RT_INTERRUPTED };

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

/* rdmabench/workloads/pattern.py's pattern_py(len, seed), the one definition: xorshift64* from
 * seed | 1, each 64-bit output little endian, the last word cut to fit (tests/unit/test_pattern.py
 * proves the bytes identical). */
void fill_pattern(uint8_t *buf, size_t len, uint64_t seed);
/* Seed of the payload of message `seq` on QP `qp` (splitmix64 of both): pattern.py's pattern_seed. */
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

#endif
