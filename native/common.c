/* Shared helpers of rdmabench._native: errors, clocks, payload pattern (see common.h). */
#include "common.h"

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

PyObject *rt_raise(const struct rt_err *e)
{
	PyObject *args;

	switch (e->kind) {
	case RT_VALUE:
		PyErr_SetString(PyExc_ValueError, e->msg);
		return NULL;
	case RT_LOOKUP:
		PyErr_SetString(PyExc_LookupError, e->msg);
		return NULL;
	case RT_NOMEM:
		PyErr_SetString(PyExc_MemoryError, e->msg);
		return NULL;
	case RT_TIMEOUT:
	case RT_OS:
	default:
		args = Py_BuildValue("(is)", e->errnum, e->msg);
		if (args) {
			PyErr_SetObject(e->kind == RT_TIMEOUT ? PyExc_TimeoutError : PyExc_OSError, args);
			Py_DECREF(args);
		}
		return NULL;
	}
}

/* ------------------------------------------------------------------ clocks */

int g_use_tsc;
static double g_tsc_hz = 1e9;
static uint64_t g_tsc0, g_ns0;

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#if defined(__x86_64__) || defined(__i386__)
/* rdtsc is a clock only where the TSC ticks at a constant rate through P- and C-states
 * (constant_tsc + nonstop_tsc); RDMABENCH_NO_TSC=1 forces clock_gettime. */
static int tsc_invariant(void)
{
	char line[4096];
	const char *env = getenv("RDMABENCH_NO_TSC");
	FILE *f;
	int ok = 0;

	if (env && *env && strcmp(env, "0") != 0)
		return 0;
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
#endif

void clock_calibrate(void)
{
#if defined(__x86_64__) || defined(__i386__)
	uint64_t t0, n0, t1, n1;
	struct timespec pause = { 0, 20 * 1000 * 1000 };

	if (!tsc_invariant())
		goto no_tsc;
	g_use_tsc = 1;
	n0 = now_ns();
	t0 = ticks();
	nanosleep(&pause, NULL);
	n1 = now_ns();
	t1 = ticks();
	if (t1 > t0 && n1 > n0) {
		g_tsc_hz = (double)(t1 - t0) * 1e9 / (double)(n1 - n0);
		if (g_tsc_hz > 1e7) {
			g_tsc0 = t0;
			g_ns0 = n0;
			return;
		}
	}
	g_use_tsc = 0;
no_tsc:
#endif
	g_tsc_hz = 1e9;
	g_tsc0 = 0;
	g_ns0 = 0;
}

void clock_refine(void)
{
	uint64_t n, t;

	if (!g_use_tsc)
		return;
	n = now_ns();
	t = ticks();
	if (n > g_ns0 + 200000000ull && t > g_tsc0)
		g_tsc_hz = (double)(t - g_tsc0) * 1e9 / (double)(n - g_ns0);
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
		w = x * 0x2545F4914F6CDD1Dull;
		memcpy(buf + i, &w, 8);
	}
	if (i < len) {
		x = xorshift_step(x);
		w = x * 0x2545F4914F6CDD1Dull;
		memcpy(buf + i, &w, len - i);
	}
}

int check_pattern(const uint8_t *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed | 1, w, got;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		x = xorshift_step(x);
		w = x * 0x2545F4914F6CDD1Dull;
		memcpy(&got, buf + i, 8);
		if (got != w)
			return 0;
	}
	if (i < len) {
		x = xorshift_step(x);
		w = x * 0x2545F4914F6CDD1Dull;
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
