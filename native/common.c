/* Shared helpers of rdmabench._native: errors, clocks, payload pattern (see common.h). */
#include "common.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ errors */

void rt_set(struct rt_err *e, enum rt_err_kind kind, int errnum, const char *fmt, ...)
{
	va_list ap;

	if (e->kind != RT_OK)
		return;
	e->kind = kind;
	e->errnum = errnum;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
}

void rt_set_os(struct rt_err *e, const char *call, int rc)
{
	int errnum = rc > 0 ? rc : (errno ? errno : EIO);

	rt_set(e, RT_OS, errnum, "%s failed: %s", call, strerror(errnum));
}

/* ------------------------------------------------------------------ clocks */

int g_use_tsc;
static double g_tsc_hz = 1e9;
static uint64_t g_tsc0, g_ns0;
static const char *g_timer = "clock_gettime";
static double g_clock_read_ns;

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* What one clock_gettime costs here: ~20 ns through the vDSO on a TSC clocksource, over a
 * microsecond where the kernel reads an HPET (an emulated guest: a trap per read). */
static double clock_read_cost(void)
{
	uint64_t a = now_ns(), b;
	int i;

	for (i = 0; i < 1000; i++)
		(void)now_ns();
	b = now_ns();
	return (double)(b - a) / 1001.0;
}

#if defined(__x86_64__) || defined(__i386__)
static int tsc_disabled(void)
{
	const char *env = getenv("RDMABENCH_NO_TSC");

	return env && *env && strcmp(env, "0") != 0;
}

/* cpuinfo promises a TSC that ticks at one rate through P- and C-states. */
static int tsc_invariant(void)
{
	char line[4096];
	FILE *f;
	int ok = 0;

	f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5) == 0) {
			ok = strstr(line, " constant_tsc") != NULL && strstr(line, " nonstop_tsc") != NULL;
			break;
		}
	}
	fclose(f);
	return ok;
}

static uint64_t rdtsc_now(void)
{
	uint32_t lo, hi;

	__asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

/* One (tsc, ns) pair read as close together as this machine allows: of a few tries, the one
 * whose clock_gettime sat between the two closest rdtsc reads (a preempted try is dropped). */
static void tsc_ns_pair(uint64_t *tsc, uint64_t *ns)
{
	uint64_t best = UINT64_MAX;
	int i;

	for (i = 0; i < 8; i++) {
		uint64_t t1 = rdtsc_now(), n = now_ns(), t2 = rdtsc_now();

		if (t2 > t1 && t2 - t1 < best) {
			best = t2 - t1;
			*tsc = t1 + (t2 - t1) / 2;
			*ns = n;
		}
	}
	if (best == UINT64_MAX) {
		*tsc = rdtsc_now();
		*ns = now_ns();
	}
}

/* TSC ticks per second over one window of `ms` against CLOCK_MONOTONIC_RAW; 0 if unusable. */
static double tsc_rate(int ms, uint64_t *t_start, uint64_t *n_start)
{
	struct timespec pause = { 0, (long)ms * 1000 * 1000 };
	uint64_t n0, t0, n1, t1;

	tsc_ns_pair(&t0, &n0);
	nanosleep(&pause, NULL);
	tsc_ns_pair(&t1, &n1);
	if (t_start) {
		*t_start = t0;
		*n_start = n0;
	}
	return (t1 > t0 && n1 > n0) ? (double)(t1 - t0) * 1e9 / (double)(n1 - n0) : 0;
}
#endif

/*
 * The hot loops' clock. rdtsc where cpuinfo calls the TSC invariant; where it does not (an
 * emulated guest: QEMU's TCG CPU lacks the flags and its kernel falls back to an HPET that
 * costs ~1.2 us per read and takes QEMU's device lock), rdtsc still, if its rate measured over
 * three windows agrees within 0.2 % -- perftest reads rdtsc on every machine without asking.
 * Otherwise clock_gettime. RDMABENCH_NO_TSC=1 forces clock_gettime. timer_name() says which.
 */
void clock_calibrate(void)
{
	g_clock_read_ns = clock_read_cost();
#if defined(__x86_64__) || defined(__i386__)
	if (!tsc_disabled()) {
		uint64_t t0, n0;
		double hz = tsc_rate(20, &t0, &n0);

		if (hz > 1e7 && tsc_invariant()) {
			g_timer = "tsc (invariant)";
		} else if (hz > 1e7) {
			double lo = hz, hi = hz, r;
			int i;

			for (i = 0; i < 2; i++) {
				r = tsc_rate(20, NULL, NULL);
				lo = r < lo ? r : lo;
				hi = r > hi ? r : hi;
			}
			if (lo <= 1e7 || hi / lo > 1.002)
				hz = 0;
			else
				g_timer = "tsc (rate checked; cpuinfo does not call it invariant)";
		}
		if (hz > 1e7) {
			g_use_tsc = 1;
			g_tsc_hz = hz;
			g_tsc0 = t0;
			g_ns0 = n0;
			return;
		}
	}
#endif
	g_use_tsc = 0;
	g_timer = "clock_gettime";
	g_tsc_hz = 1e9;
	g_tsc0 = 0;
	g_ns0 = 0;
}

const char *timer_name(void)
{
	return g_timer;
}

double clock_read_ns(void)
{
	return g_clock_read_ns;
}

double tsc_hz(void)
{
	return g_tsc_hz;
}

int64_t ticks_to_ns(uint64_t t)
{
	if (!g_use_tsc)
		return (int64_t)t;
	return (int64_t)g_ns0 + (int64_t)(((double)(int64_t)(t - g_tsc0)) * 1e9 / g_tsc_hz);
}

double ticks_span_ns(uint64_t dt)
{
	return g_use_tsc ? (double)dt * 1e9 / g_tsc_hz : (double)dt;
}

uint64_t ns_to_ticks(uint64_t ns)
{
	return g_use_tsc ? (uint64_t)((double)ns * g_tsc_hz / 1e9) : ns;
}

/* ------------------------------------------------------------------ pattern */

static inline uint64_t xorshift_step(uint64_t x)
{
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	return x;
}

void fill_pattern(uint8_t *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed | 1, w;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		x = xorshift_step(x);
		w = htole64(x * 0x2545F4914F6CDD1Dull); /* the definition is little endian */
		memcpy(buf + i, &w, 8);
	}
	if (i < len) {
		x = xorshift_step(x);
		w = htole64(x * 0x2545F4914F6CDD1Dull); /* the definition is little endian */
		memcpy(buf + i, &w, len - i);
	}
}

int check_pattern(const uint8_t *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed | 1, w, got;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		x = xorshift_step(x);
		w = htole64(x * 0x2545F4914F6CDD1Dull); /* the definition is little endian */
		memcpy(&got, buf + i, 8);
		if (got != w)
			return 0;
	}
	if (i < len) {
		x = xorshift_step(x);
		w = htole64(x * 0x2545F4914F6CDD1Dull); /* the definition is little endian */
		if (memcmp(buf + i, &w, len - i) != 0)
			return 0;
	}
	return 1;
}

uint64_t pattern_seed(uint32_t qp, uint64_t seq)
{
	uint64_t z = ((uint64_t)qp << 48) ^ seq ^ 0x9e3779b97f4a7c15ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ------------------------------------------------------------------ verbs helpers */

enum ibv_mtu mtu_enum(int bytes)
{
	switch (bytes) {
	case 256: return IBV_MTU_256;
	case 512: return IBV_MTU_512;
	case 1024: return IBV_MTU_1024;
	case 2048: return IBV_MTU_2048;
	case 4096: return IBV_MTU_4096;
	default: return (enum ibv_mtu)0;
	}
}

void roce_ah(struct ibv_ah_attr *ah, const union ibv_gid *dgid, int sgid_index, uint16_t dlid, int port)
{
	memset(ah, 0, sizeof(*ah));
	ah->is_global = 1;
	ah->grh.dgid = *dgid;
	ah->grh.sgid_index = (uint8_t)sgid_index;
	ah->grh.hop_limit = 64;
	ah->dlid = dlid;
	ah->port_num = (uint8_t)port;
}

int gid_is_zero(const union ibv_gid *gid)
{
	static const union ibv_gid zero;

	return memcmp(gid, &zero, sizeof(zero)) == 0;
}

struct ibv_device *find_device(struct ibv_device **devs, int ndev, const char *name,
			       struct rt_err *e)
{
	char names[512];
	size_t used = 0;
	int i;

	for (i = 0; i < ndev; i++)
		if (strcmp(ibv_get_device_name(devs[i]), name) == 0)
			return devs[i];
	names[0] = '\0';
	for (i = 0; i < ndev && used < sizeof(names); i++)
		used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", i ? ", " : "",
					 ibv_get_device_name(devs[i]));
	rt_set(e, RT_LOOKUP, 0, "no RDMA device named '%s'; devices here: %s", name,
	       ndev > 0 ? names : "none");
	return NULL;
}
