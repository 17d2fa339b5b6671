/* The Python side of a run's windows. (see py_windows.h, ep_window.c) */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "py_common.h"
#include "py_windows.h"

/* With the GIL, for one closed window: the callback gets a dict of the window's own figures; Ctrl-C
 * (checked here, in the main thread) stops the run cleanly; any other error stops it and is raised
 * once run() returns. Nonzero: stop. */
int py_tick(void *arg, const struct run *r, const struct win *w)
{
	struct py_tick *t = arg;
	PyGILState_STATE g = PyGILState_Ensure();
	uint64_t start = t->prev_t ? t->prev_t : r->t_start;
	int stop = 0;

	if (t->callback && t->callback != Py_None) {
		PyObject *res = PyObject_CallFunction(
			t->callback, "({s:d,s:d,s:K,s:K,s:I,s:O,s:d,s:d,s:d,s:d})", "t_s",
			ticks_span_ns(w->t_end - r->t_start) / 1e9, "seconds", ticks_span_ns(w->t_end - start) / 1e9,
			"ops", (unsigned long long)(w->ops - t->prev_ops), "samples", (unsigned long long)w->n,
			"size", r->ep->size, "latency", r->is_lat ? Py_True : Py_False, "lat_min_ns", w->lat_min,
			"lat_p50_ns", w->lat_p50, "lat_p99_ns", w->lat_p99, "lat_max_ns", w->lat_max);

		if (!res)
			stop = -1;
		Py_XDECREF(res);
	}
	if (!stop && PyErr_CheckSignals() < 0)
		stop = -1;
	if (stop) {
		if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
			PyErr_Clear();
			t->interrupted = 1;
		} else if (!t->exc_type) {
			PyErr_Fetch(&t->exc_type, &t->exc_value, &t->exc_tb);
		} else {
			PyErr_Clear();
		}
		stop = 1;
	}
	t->prev_t = w->t_end;
	t->prev_ops = w->ops;
	PyGILState_Release(g);
	return stop;
}

static int set_array(PyObject *d, const char *key, char typecode, const void *data, size_t bytes)
{
	PyObject *a = make_array(typecode, data, bytes);
	int rc = a ? PyDict_SetItemString(d, key, a) : -1;

	Py_XDECREF(a);
	return rc;
}

/* The windows: t_ns (each one's end, ns since the run's first operation), ops (cumulative), last
 * (1: closed by the run's end); latency runs also samples and lat_{min,p50,p99,max}_ns per window,
 * and lat_hist {ns: bucket middles, count} over every sample (buckets with samples only). */
int window_keys(PyObject *res, const struct run *r, const struct py_tick *t, double interval_s)
{
	size_t n = r->nw, k, nb = 0;
	int64_t *tn = malloc((n ? n : 1) * sizeof(int64_t));
	uint64_t *ops = malloc((n ? n : 1) * sizeof(uint64_t)), *cnt = malloc((n ? n : 1) * sizeof(uint64_t));
	uint8_t *last = malloc(n ? n : 1);
	double *lat[4];
	double *hv = NULL;
	uint64_t *hc = NULL;
	PyObject *w = PyDict_New(), *h = NULL;
	int rc = -1, i;

	for (i = 0; i < 4; i++)
		lat[i] = malloc((n ? n : 1) * sizeof(double));
	if (!tn || !ops || !cnt || !last || !lat[0] || !lat[1] || !lat[2] || !lat[3] || !w) {
		PyErr_NoMemory();
		goto out;
	}
	for (k = 0; k < n; k++) {
		tn[k] = (int64_t)ticks_span_ns(r->w[k].t_end - r->t_start);
		ops[k] = r->w[k].ops;
		cnt[k] = r->w[k].n;
		last[k] = (uint8_t)r->w[k].last;
		lat[0][k] = r->w[k].lat_min;
		lat[1][k] = r->w[k].lat_p50;
		lat[2][k] = r->w[k].lat_p99;
		lat[3][k] = r->w[k].lat_max;
	}
	if (set_array(w, "t_ns", 'q', tn, n * sizeof(int64_t)) || set_array(w, "ops", 'Q', ops, n * sizeof(uint64_t)) ||
	    set_array(w, "last", 'B', last, n))
		goto out;
	if (r->hist) {
		static const char *keys[4] = { "lat_min_ns", "lat_p50_ns", "lat_p99_ns", "lat_max_ns" };

		if (set_array(w, "samples", 'Q', cnt, n * sizeof(uint64_t)))
			goto out;
		for (i = 0; i < 4; i++)
			if (set_array(w, keys[i], 'd', lat[i], n * sizeof(double)))
				goto out;
		hv = malloc(HIST_BUCKETS * sizeof(double));
		hc = malloc(HIST_BUCKETS * sizeof(uint64_t));
		h = PyDict_New();
		if (!hv || !hc || !h) {
			PyErr_NoMemory();
			goto out;
		}
		for (k = 0; k < HIST_BUCKETS; k++)
			if (r->hist[k]) {
				hv[nb] = hist_value(k);
				hc[nb++] = r->hist[k];
			}
		if (set_array(h, "ns", 'd', hv, nb * sizeof(double)) ||
		    set_array(h, "count", 'Q', hc, nb * sizeof(uint64_t)) ||
		    PyDict_SetItemString(res, "lat_hist", h))
			goto out;
	}
	if (PyDict_SetItemString(res, "windows", w))
		goto out;
	{
		PyObject *v = Py_BuildValue("{s:d,s:O,s:O}", "interval_s", interval_s, "windows_truncated",
					    r->w_truncated ? Py_True : Py_False, "interrupted",
					    t->interrupted ? Py_True : Py_False);

		rc = v ? PyDict_Update(res, v) : -1;
		Py_XDECREF(v);
	}
out:
	free(tn);
	free(ops);
	free(cnt);
	free(last);
	for (i = 0; i < 4; i++)
		free(lat[i]);
	free(hv);
	free(hc);
	Py_XDECREF(w);
	Py_XDECREF(h);
	return rc;
}
