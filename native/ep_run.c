/* One run: its arguments checked, its records allocated, the loop. (see endpoint.h) */
#include <math.h>

#include "endpoint.h"

int run_setup(struct run *r, Endpoint *ep, const char *test, const char *role, int64_t iters,
	      double duration_s, int64_t warmup, int bidir, int validate, int64_t max_samples,
	      int timeout_ms, const char *atomic, struct rt_err *e)
{
	int t;

	memset(r, 0, sizeof(*r));
	for (t = 0; t < N_TESTS; t++)
		if (strcmp(test, test_names[t]) == 0)
			break;
	if (t == N_TESTS) {
		rt_set(e, RT_VALUE, 0,
		       "unknown test '%s': write_bw, read_bw, send_bw, write_lat, read_lat, send_lat, "
		       "atomic_bw or atomic_lat",
		       test);
		return -1;
	}
	if (atomic && strcmp(atomic, "fetch_add") && strcmp(atomic, "cmp_swap")) {
		rt_set(e, RT_VALUE, 0, "atomic must be 'fetch_add' or 'cmp_swap', got '%s'", atomic);
		return -1;
	}
	r->atomic_op = atomic && strcmp(atomic, "cmp_swap") == 0 ? A_CMP_SWAP : A_FETCH_ADD;
	r->reply_be = -1;
	if (t >= T_ATOMIC_BW) {
		if (ep->size != 8) {
			rt_set(e, RT_VALUE, 0, "%s: atomic operations are 8 bytes: the endpoint's size is %u",
			       test_names[t], ep->size);
			return -1;
		}
		if (ep->atomic_cap == IBV_ATOMIC_NONE) {
			rt_set(e, RT_VALUE, 0,
			       "%s: %s reports no atomic operations (atomic_cap IBV_ATOMIC_NONE): it cannot "
			       "run the atomic tests",
			       test_names[t], ep->devname);
			return -1;
		}
	}
	if (strcmp(role, "client") && strcmp(role, "server")) {
		rt_set(e, RT_VALUE, 0, "role must be 'client' or 'server', got '%s'", role);
		return -1;
	}
	/* duration_s inf: until the tick asks the run to stop (Ctrl-C) */
	if ((iters > 0) == (duration_s > 0.0) || iters < 0 || duration_s < 0.0 ||
	    (duration_s > 1e6 && !isinf(duration_s))) {
		rt_set(e, RT_VALUE, 0, "give exactly one of iters > 0 or duration_s > 0 (at most 1e6, or inf)");
		return -1;
	}
	if (warmup < 0 || max_samples < 0 || timeout_ms <= 0) {
		rt_set(e, RT_VALUE, 0, "warmup and max_samples must be >= 0, timeout_ms positive");
		return -1;
	}
	r->is_lat = t == T_WRITE_LAT || t == T_READ_LAT || t == T_SEND_LAT || t == T_ATOMIC_LAT;
	if (bidir && t >= T_ATOMIC_BW) {
		rt_set(e, RT_VALUE, 0, "bidir is not for the atomic tests (the server is passive)");
		return -1;
	}
	if (bidir && (validate || r->is_lat)) {
		rt_set(e, RT_VALUE, 0,
		       "bidir is for the BW tests, without validate (both directions would share the "
		       "slots being checked)");
		return -1;
	}
	if (t == T_WRITE_LAT && ep->slots < 2 && validate) {
		rt_set(e, RT_VALUE, 0, "write_lat with validate needs slots >= 2");
		return -1;
	}
	r->ep = ep;
	r->test = t;
	r->client = strcmp(role, "client") == 0;
	r->bidir = bidir;
	r->validate = validate;
	r->iters = (uint64_t)iters;
	r->warmup = (uint64_t)warmup;
	r->duration_s = duration_s;
	r->timeout_ms = timeout_ms;
	r->timeout_ticks = ns_to_ticks((uint64_t)timeout_ms * 1000000ull);
	r->first_corrupt = -1;
	r->dur_ticks = isinf(duration_s) ? UINT64_MAX / 4
		       : duration_s > 0 ? ns_to_ticks((uint64_t)(duration_s * 1e9)) : 0;
	if (!r->client && !bidir &&
	    ((t == T_WRITE_BW && !validate) || t == T_READ_BW || t == T_READ_LAT || t >= T_ATOMIC_BW)) {
		r->passive = 1;
	} else if (r->is_lat) {
		r->scap = r->client ? (size_t)(iters ? (iters < max_samples ? iters : max_samples)
						     : max_samples)
				    : 0;
		r->samp = malloc((r->scap ? r->scap : 1) * sizeof(double));
		if (!r->samp)
			goto nomem;
	} else {
		uint64_t signaled = iters ? ((uint64_t)iters * ep->nqps / ep->cq_mod + ep->nqps + 1)
					  : (uint64_t)max_samples;

		r->ccap = (size_t)(signaled < (uint64_t)max_samples ? signaled : (uint64_t)max_samples);
		r->c_t = malloc((r->ccap ? r->ccap : 1) * sizeof(uint64_t));
		r->c_ops = malloc((r->ccap ? r->ccap : 1) * sizeof(uint64_t));
		r->s = calloc((size_t)ep->nqps, sizeof(struct bwq));
		if (!r->c_t || !r->c_ops || !r->s)
			goto nomem;
	}
	return 0;
nomem:
	run_free(r);
	rt_set(e, RT_NOMEM, ENOMEM, "cannot allocate the run's records");
	return -1;
}

int run_loop(struct run *r, struct rt_err *e)
{
	int rc = 0;

	if (r->passive) {
		/* a read test's server told to validate fills its slots for the reader to check */
		if (r->validate && (r->test == T_READ_BW || r->test == T_READ_LAT))
			fill_read_slots(r->ep);
		return 0;
	}
	/* every QP restarts its send bookkeeping: sq_data holds per-run data counts */
	for (int q = 0; q < r->ep->nqps; q++)
		r->ep->q[q].data_done = 0;
	if (r->test >= T_ATOMIC_BW)
		rc = atomic_run(r, e);
	else if (r->is_lat)
		rc = lat_run(r, r->dur_ticks, e);
	else {
		if (r->warmup)
			rc = bw_phase(r, r->warmup, 0, 0, e);
		if (rc == 0)
			rc = bw_phase(r, r->dur_ticks ? 0 : r->warmup + r->iters, r->dur_ticks, 1, e);
	}
	if (rc == 0)
		win_end(r);
	return rc;
}

void run_free(struct run *r)
{
	free(r->c_t);
	free(r->c_ops);
	free(r->samp);
	free(r->s);
	free(r->w);
	free(r->hist);
	free(r->win_hist);
	r->w = NULL;
	r->hist = r->win_hist = NULL;
	r->c_t = r->c_ops = NULL;
	r->samp = NULL;
	r->s = NULL;
}
