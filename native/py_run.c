/*
 * ep.run(): the arguments checked, the core's run set up (ep_run.c) with its windows ticking
 * through py_windows.c, the loop run without the GIL, and its record returned as the dict
 * endpoint.h describes (this file's run_result; py_windows.c adds the windows' keys).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "py_common.h"
#include "py_windows.h"

/* The atomic tests' own keys of run()'s dict. */
static int atomic_keys(PyObject *res, const struct run *r)
{
	PyObject *v = Py_BuildValue("{s:s,s:I,s:I,s:z,s:K,s:K}", "atomic",
				    r->atomic_op == A_CMP_SWAP ? "cmp_swap" : "fetch_add", "atomic_depth",
				    r->atomic_depth, "atomic_signal_every", r->atomic_mod, "reply_byte_order",
				    r->reply_be < 0 ? NULL : r->reply_be ? "big-endian" : "host", "counters_ok",
				    (unsigned long long)r->counters_ok, "counters_bad",
				    (unsigned long long)r->counters_bad);
	int rc = v ? PyDict_Update(res, v) : -1;

	Py_XDECREF(v);
	return rc;
}

static PyObject *run_result(const struct run *r, long long iters, long long warmup)
{
	const Endpoint *ep = r->ep;
	PyObject *res = NULL, *cns = NULL, *cops = NULL, *samples = NULL;
	int64_t *cns_buf = malloc((r->nc ? r->nc : 1) * sizeof(int64_t));
	uint64_t ops = 0, recv_ops = 0;
	const char *sample = NULL;
	size_t k;

	if (!cns_buf)
		return PyErr_NoMemory();
	for (k = 0; k < r->nc; k++)
		cns_buf[k] = ticks_to_ns(r->c_t[k]);
	cns = make_array('q', cns_buf, r->nc * sizeof(int64_t));
	cops = make_array('Q', r->c_ops, r->nc * sizeof(uint64_t));
	samples = make_array('d', r->samp, r->ns * sizeof(double));
	free(cns_buf);
	if (!cns || !cops || !samples)
		goto out;
	if (!r->passive) {
		if (r->is_lat) {
			ops = r->lat_ops;
		} else if (r->client || r->bidir) {
			ops = r->tot_done - r->done0;
			recv_ops = r->tot_recvd - r->recvd0;
		} else {
			ops = r->tot_recvd - r->recvd0;
		}
	}
	if (r->test == T_READ_LAT || r->test == T_ATOMIC_LAT)
		sample = "post to completion";
	else if (r->is_lat)
		sample = "half round trip";
	res = Py_BuildValue(
		"{s:s,s:s,s:L,s:L,s:d,s:O,s:i,s:I,s:K,s:K,s:K,s:L,s:L,s:d,s:O,s:O,s:O,s:z,"
		"s:O,s:K,s:K,s:L,s:O}",
		"test", test_names[r->test], "role", r->client ? "client" : "server", "iters", iters,
		"warmup", warmup, "duration_s", r->duration_s, "bidir", r->bidir ? Py_True : Py_False,
		"qps", ep->nqps, "size", ep->size, "ops", (unsigned long long)ops, "bytes",
		(unsigned long long)(ops * ep->size), "recv_ops", (unsigned long long)recv_ops,
		"t_start_ns", (long long)(r->have_start ? ticks_to_ns(r->t_start) : 0), "t_end_ns",
		(long long)(r->have_start ? ticks_to_ns(r->t_end) : 0), "tsc_hz", tsc_hz(),
		"completions_ns", cns, "completions_ops", cops, "samples_ns", samples, "sample", sample,
		"samples_truncated", r->truncated ? Py_True : Py_False, "validated",
		(unsigned long long)r->validated, "corrupt", (unsigned long long)r->corrupt,
		"first_corrupt_seq", (long long)r->first_corrupt, "passive",
		r->passive ? Py_True : Py_False);
	if (res && r->test >= T_ATOMIC_BW && !r->passive && atomic_keys(res, r) < 0)
		Py_CLEAR(res);
out:
	Py_XDECREF(cns);
	Py_XDECREF(cops);
	Py_XDECREF(samples);
	return res;
}

PyObject *py_ep_run(EpObject *o, PyObject *args, PyObject *kwargs)
{
	static char *kwlist[] = { "test", "role", "iters", "duration_s", "warmup", "bidir", "validate",
				  "max_samples", "timeout_ms", "atomic", "interval_s", "on_window", NULL };
	Endpoint *ep = &o->ep;
	const char *test, *role, *atomic = NULL;
	long long iters = 0, warmup = 0, max_samples = 1000000;
	double duration_s = 0.0, interval_s = 1.0;
	int bidir = 0, validate = 0, timeout_ms = 10000, rc;
	struct run r;
	struct rt_err err;
	struct py_tick tick = { .callback = Py_None };
	PyObject *res;

	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ss|LdLppLizdO:run", kwlist, &test, &role, &iters,
					 &duration_s, &warmup, &bidir, &validate, &max_samples,
					 &timeout_ms, &atomic, &interval_s, &tick.callback))
		return NULL;
	if (tick.callback != Py_None && !PyCallable_Check(tick.callback)) {
		PyErr_SetString(PyExc_TypeError, "on_window must be callable or None");
		return NULL;
	}
	memset(&err, 0, sizeof(err));
	if (run_setup(&r, ep, test, role, iters, duration_s, warmup, bidir, validate, max_samples,
		      timeout_ms, atomic, &err))
		return rt_raise(&err);
	if (run_windows(&r, interval_s, py_tick, &tick, &err)) {
		run_free(&r);
		return rt_raise(&err);
	}
	if (!ep_usable(ep, 1)) {
		run_free(&r);
		return NULL;
	}
	ep->busy = 1;
	Py_BEGIN_ALLOW_THREADS
	rc = run_loop(&r, &err);
	Py_END_ALLOW_THREADS
	ep->busy = 0;
	if (tick.exc_type) { /* the callback failed: that error, whatever the run did */
		PyErr_Restore(tick.exc_type, tick.exc_value, tick.exc_tb);
		res = NULL;
	} else if (rc && err.kind == RT_INTERRUPTED) {
		PyErr_SetString(PyExc_KeyboardInterrupt, err.msg);
		res = NULL;
	} else {
		res = rc ? rt_raise(&err) : run_result(&r, iters, warmup);
		if (res && window_keys(res, &r, &tick, interval_s) < 0)
			Py_CLEAR(res);
	}
	run_free(&r);
	return res;
}
