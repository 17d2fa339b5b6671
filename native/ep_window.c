/*
 * Windows and the latency histogram of a measured run. (see endpoint.h)
 *
 * Every interval the loop closes one window: when, and how many operations were done by then; a
 * latency run also keeps the window's own samples in a histogram, so each window has its count,
 * min, p50, p99 and max however many samples it held. A window closes at the first check after its
 * time is up, so it is never shorter than the interval (only the last, closed by the run's end). At
 * each close the run's tick (the binding: a live line, Ctrl-C) may ask the run to stop.
 *
 * The histogram is log-linear: exact below 128 ns, then 128 buckets per power of two, so a
 * bucket's middle is within 1/256 (0.4 %) of every sample in it; 7424 counters cover 1 ns to
 * centuries. It holds every sample of the run, however long, where the raw samples stop at
 * max_samples.
 */
#include "endpoint.h"

static size_t hist_bucket(double ns)
{
	uint64_t u = ns <= 0.0 ? 0 : ns >= 1.8e19 ? UINT64_MAX : (uint64_t)ns;
	int e;

	if (u < HIST_SUB)
		return (size_t)u;
	e = 63 - __builtin_clzll(u); /* >= 7 */
	return HIST_SUB + (size_t)(e - 7) * HIST_SUB + (size_t)((u >> (e - 7)) & (HIST_SUB - 1));
}

/* The middle of a bucket, ns. */
double hist_value(size_t b)
{
	size_t e, sub;

	if (b < HIST_SUB)
		return (double)b + 0.5;
	e = (b - HIST_SUB) / HIST_SUB + 7;
	sub = (b - HIST_SUB) % HIST_SUB;
	return (double)((uint64_t)(HIST_SUB + sub) << (e - 7)) + (double)(1ull << (e - 7)) / 2.0;
}

/* Nearest-rank percentile p (0..100] of n samples counted in hist; 0 when n is 0. */
double hist_percentile(const uint64_t *hist, uint64_t n, double p)
{
	uint64_t rank, seen = 0;
	size_t b;

	if (!n)
		return 0.0;
	rank = (uint64_t)(p / 100.0 * (double)n);
	if ((double)rank < p / 100.0 * (double)n)
		rank++;
	if (rank < 1)
		rank = 1;
	for (b = 0; b < HIST_BUCKETS; b++) {
		seen += hist[b];
		if (seen >= rank)
			return hist_value(b);
	}
	return hist_value(HIST_BUCKETS - 1);
}

void hist_add(struct run *r, double ns)
{
	size_t b;

	if (!r->hist)
		return;
	b = hist_bucket(ns);
	r->hist[b]++;
	r->win_hist[b]++;
	if (r->win_n == 0 || ns < r->win_min)
		r->win_min = ns;
	if (r->win_n == 0 || ns > r->win_max)
		r->win_max = ns;
	r->win_n++;
}

int run_windows(struct run *r, double interval_s, int (*tick)(void *, const struct run *, const struct win *),
		void *arg, struct rt_err *e)
{
	if (!(interval_s >= 0.01 && interval_s <= 86400.0)) {
		rt_set(e, RT_VALUE, 0, "interval_s must be between 0.01 and 86400, got %g", interval_s);
		return -1;
	}
	r->win_ticks = ns_to_ticks((uint64_t)(interval_s * 1e9));
	r->tick = tick;
	r->tick_arg = arg;
	if (r->passive)
		return 0;
	r->wcap = 64;
	r->w = malloc(r->wcap * sizeof(*r->w));
	if (r->is_lat && r->client) {
		r->hist = calloc(HIST_BUCKETS, sizeof(uint64_t));
		r->win_hist = calloc(HIST_BUCKETS, sizeof(uint64_t));
	}
	if (!r->w || (r->is_lat && r->client && (!r->hist || !r->win_hist))) {
		rt_set(e, RT_NOMEM, ENOMEM, "cannot allocate the run's windows");
		return -1; /* run_free releases what was allocated */
	}
	return 0;
}

void win_begin(struct run *r, uint64_t t)
{
	if (r->win_ticks && r->w)
		r->win_next = t + r->win_ticks;
}

void win_close(struct run *r, uint64_t now, uint64_t ops, int last)
{
	struct win w = { .t_end = now, .ops = ops, .n = r->win_n, .last = last };

	if (r->win_hist && r->win_n) {
		w.lat_min = r->win_min;
		w.lat_max = r->win_max;
		w.lat_p50 = hist_percentile(r->win_hist, r->win_n, 50);
		w.lat_p99 = hist_percentile(r->win_hist, r->win_n, 99);
		memset(r->win_hist, 0, HIST_BUCKETS * sizeof(uint64_t));
	}
	r->win_n = 0;
	if (r->nw == r->wcap && r->wcap < MAX_WINDOWS) {
		struct win *bigger = realloc(r->w, 2 * r->wcap * sizeof(*r->w));

		if (bigger) {
			r->w = bigger;
			r->wcap *= 2;
		}
	}
	if (r->nw < r->wcap)
		r->w[r->nw++] = w;
	else
		r->w_truncated = 1;
	r->win_next = now + r->win_ticks;
	if (!last && r->tick && r->tick(r->tick_arg, r, &w))
		r->stop = 1;
}

/* The run's end closes its open window (not counted as a full one: shorter than the interval). */
void win_end(struct run *r)
{
	uint64_t ops;

	if (!r->win_next || !r->have_start)
		return;
	if (r->nw && r->w[r->nw - 1].t_end >= r->t_end) { /* the last window already reached the end */
		r->win_next = 0;
		return;
	}
	if (r->is_lat)
		ops = r->lat_ops;
	else
		ops = r->tot_done - r->done0;
	win_close(r, r->t_end, ops, 1);
	r->win_next = 0;
}

int run_stopped(struct run *r, struct rt_err *e)
{
	rt_set(e, RT_INTERRUPTED, EINTR, "%s %s: interrupted", test_names[r->test], r->client ? "client" : "server");
	return -1;
}
