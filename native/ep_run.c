/* Endpoint.run(): arguments, the loop without the GIL, the result dict. (see endpoint.h) */
#include "endpoint.h"


static PyObject *make_array(char typecode, const void *data, size_t bytes)
{
	PyObject *mod, *b, *arr;

	mod = PyImport_ImportModule("array");
	if (!mod)
		return NULL;
	b = PyBytes_FromStringAndSize(data ? (const char *)data : "", (Py_ssize_t)bytes);
	if (!b) {
		Py_DECREF(mod);
		return NULL;
	}
	arr = PyObject_CallMethod(mod, "array", "CO", (int)typecode, b);
	Py_DECREF(b);
	Py_DECREF(mod);
	return arr;
}

PyObject *ep_run(Endpoint *ep, PyObject *args, PyObject *kwargs)
{
	static char *kwlist[] = { "test", "role", "iters", "duration_s", "warmup", "bidir",
				  "validate", "max_samples", "timeout_ms", NULL };
	const char *test, *role;
	long long iters = 0, warmup = 0, max_samples = 1000000;
	double duration_s = 0.0;
	int bidir = 0, validate = 0, timeout_ms = 10000, t, rc = 0, passive = 0, is_lat;
	struct run r;
	struct rt_err err;
	uint64_t dur_ticks;
	PyObject *res = NULL, *cns = NULL, *cops = NULL, *samples = NULL;
	int64_t *cns_buf = NULL;
	size_t k;

	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ss|LdLppLi:run", kwlist, &test, &role, &iters,
					 &duration_s, &warmup, &bidir, &validate, &max_samples,
					 &timeout_ms))
		return NULL;
	for (t = 0; t < 6; t++)
		if (strcmp(test, test_names[t]) == 0)
			break;
	if (t == 6) {
		PyErr_Format(PyExc_ValueError,
			     "unknown test '%s': write_bw, read_bw, send_bw, write_lat, read_lat or "
			     "send_lat",
			     test);
		return NULL;
	}
	if (strcmp(role, "client") && strcmp(role, "server")) {
		PyErr_Format(PyExc_ValueError, "role must be 'client' or 'server', got '%s'", role);
		return NULL;
	}
	if ((iters > 0) == (duration_s > 0.0) || iters < 0 || duration_s < 0.0 || duration_s > 1e6) {
		PyErr_SetString(PyExc_ValueError, "give exactly one of iters > 0 or duration_s > 0");
		return NULL;
	}
	if (warmup < 0 || max_samples < 0 || timeout_ms <= 0) {
		PyErr_SetString(PyExc_ValueError,
				"warmup and max_samples must be >= 0, timeout_ms positive");
		return NULL;
	}
	is_lat = t >= T_WRITE_LAT;
	if (bidir && (validate || is_lat)) {
		PyErr_SetString(PyExc_ValueError,
				"bidir is for the BW tests, without validate (both directions would share "
				"the slots being checked)");
		return NULL;
	}
	if (t == T_WRITE_LAT && ep->slots < 2 && validate) {
		PyErr_SetString(PyExc_ValueError, "write_lat with validate needs slots >= 2");
		return NULL;
	}
	if (!ep_usable(ep, 1))
		return NULL;

	memset(&r, 0, sizeof(r));
	memset(&err, 0, sizeof(err));
	r.ep = ep;
	r.test = t;
	r.client = strcmp(role, "client") == 0;
	r.bidir = bidir;
	r.validate = validate;
	r.iters = (uint64_t)iters;
	r.warmup = (uint64_t)warmup;
	r.duration_s = duration_s;
	r.timeout_ms = timeout_ms;
	r.timeout_ticks = ns_to_ticks((uint64_t)timeout_ms * 1000000ull);
	r.first_corrupt = -1;
	dur_ticks = duration_s > 0 ? ns_to_ticks((uint64_t)(duration_s * 1e9)) : 0;
	if (!r.client && !bidir &&
	    ((t == T_WRITE_BW && !validate) || t == T_READ_BW || t == T_READ_LAT)) {
		if (validate && (t == T_READ_BW || t == T_READ_LAT))
			fill_read_slots(ep);
		passive = 1;
	} else if (is_lat) {
		r.scap = r.client ? (size_t)(iters ? (iters < max_samples ? iters : max_samples)
						   : max_samples)
				  : 0;
		r.samp = malloc((r.scap ? r.scap : 1) * sizeof(double));
		if (!r.samp)
			return PyErr_NoMemory();
	} else {
		uint64_t signaled = iters ? ((uint64_t)iters * ep->nqps / ep->cq_mod + ep->nqps + 1)
					  : (uint64_t)max_samples;

		r.ccap = (size_t)(signaled < (uint64_t)max_samples ? signaled : (uint64_t)max_samples);
		r.c_t = malloc((r.ccap ? r.ccap : 1) * sizeof(uint64_t));
		r.c_ops = malloc((r.ccap ? r.ccap : 1) * sizeof(uint64_t));
		r.s = calloc((size_t)ep->nqps, sizeof(struct bwq));
		if (!r.c_t || !r.c_ops || !r.s) {
			free(r.c_t);
			free(r.c_ops);
			free(r.s);
			return PyErr_NoMemory();
		}
	}

	if (!passive) {
		ep->busy = 1;
		Py_BEGIN_ALLOW_THREADS
		for (int q = 0; q < ep->nqps; q++)
			ep->q[q].data_done = 0;
		/* every QP restarts its send bookkeeping: sq_data holds per-run data counts */
		if (is_lat) {
			rc = lat_run(&r, dur_ticks, &err);
		} else {
			if (r.warmup)
				rc = bw_phase(&r, r.warmup, 0, 0, &err);
			if (rc == 0)
				rc = bw_phase(&r, dur_ticks ? 0 : r.warmup + r.iters, dur_ticks, 1, &err);
		}
		Py_END_ALLOW_THREADS
		ep->busy = 0;
	}
	if (rc) {
		res = rt_raise(&err);
		goto out;
	}

	cns_buf = malloc((r.nc ? r.nc : 1) * sizeof(int64_t));
	if (!cns_buf) {
		res = PyErr_NoMemory();
		goto out;
	}
	for (k = 0; k < r.nc; k++)
		cns_buf[k] = ticks_to_ns(r.c_t[k]);
	cns = make_array('q', cns_buf, r.nc * sizeof(int64_t));
	cops = make_array('Q', r.c_ops, r.nc * sizeof(uint64_t));
	samples = make_array('d', r.samp, r.ns * sizeof(double));
	if (!cns || !cops || !samples)
		goto out;
	{
		uint64_t ops = 0, recv_ops = 0;
		const char *sample = NULL;

		if (!passive) {
			if (is_lat) {
				ops = r.lat_ops;
			} else if (r.client || r.bidir) {
				ops = r.tot_done - r.done0;
				recv_ops = r.tot_recvd - r.recvd0;
			} else {
				ops = r.tot_recvd - r.recvd0;
			}
		}
		if (t == T_READ_LAT)
			sample = "post to completion";
		else if (is_lat)
			sample = "half round trip";
		res = Py_BuildValue(
			"{s:s,s:s,s:L,s:L,s:d,s:O,s:i,s:I,s:K,s:K,s:K,s:L,s:L,s:d,s:O,s:O,s:O,s:z,"
			"s:O,s:K,s:K,s:L,s:O}",
			"test", test_names[t], "role", r.client ? "client" : "server", "iters", iters,
			"warmup", warmup, "duration_s", duration_s, "bidir", bidir ? Py_True : Py_False,
			"qps", ep->nqps, "size", ep->size, "ops", (unsigned long long)ops, "bytes",
			(unsigned long long)(ops * ep->size), "recv_ops",
			(unsigned long long)recv_ops, "t_start_ns",
			(long long)(r.have_start ? ticks_to_ns(r.t_start) : 0), "t_end_ns",
			(long long)(r.have_start ? ticks_to_ns(r.t_end) : 0), "tsc_hz", tsc_hz(),
			"completions_ns", cns, "completions_ops", cops, "samples_ns", samples,
			"sample", sample, "samples_truncated", r.truncated ? Py_True : Py_False,
			"validated", (unsigned long long)r.validated, "corrupt",
			(unsigned long long)r.corrupt, "first_corrupt_seq", (long long)r.first_corrupt,
			"passive", passive ? Py_True : Py_False);
	}
out:
	Py_XDECREF(cns);
	Py_XDECREF(cops);
	Py_XDECREF(samples);
	free(cns_buf);
	free(r.c_t);
	free(r.c_ops);
	free(r.samp);
	free(r.s);
	return res;
}

/* Test hook: the sender corrupts the payload of this sequence number (-1: none). */
PyObject *ep_inject(Endpoint *ep, PyObject *arg)
{
	long long seq = PyLong_AsLongLong(arg);

	if (seq == -1 && PyErr_Occurred())
		return NULL;
	ep->corrupt_seq = seq;
	Py_RETURN_NONE;
}

/* Test hook: flip one byte of a local slot (e.g. the read server's pattern). */
PyObject *ep_flip(Endpoint *ep, PyObject *args)
{
	unsigned int q, slot, off;

	if (!PyArg_ParseTuple(args, "III:_flip_byte", &q, &slot, &off))
		return NULL;
	if (!ep_usable(ep, 0))
		return NULL;
	if (q >= (unsigned)ep->nqps || slot >= ep->slots || off >= ep->size) {
		PyErr_SetString(PyExc_ValueError, "qp, slot or offset out of range");
		return NULL;
	}
	slot_addr(ep, q, slot)[off] ^= 0x5a;
	Py_RETURN_NONE;
}
