/*
 * The file loops as module functions: fx_push, fx_recv, fx_serve and fx_pull move files over a
 * connected Endpoint (filexfer.c), fx_null runs the file pipeline without a network (pipeline.c),
 * digest_impl names the digest build. Files arrive as (fd or buffer, size) pairs; each call returns
 * its figures and one digest per file. (bindings.c lists them in the module's method table.)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "py_common.h"
#include "digest.h"

/* files: a sequence of (io, size): io a file descriptor (int) or a bytes-like object (a blob; writable
 * at a destination). Fills pl_file[] and the buffer views to release (views[i].obj NULL: none). */
static int parse_files(PyObject *seq, int writable, struct pl_file **out, Py_buffer **views, uint32_t *n)
{
	PyObject *fast = PySequence_Fast(seq, "files must be a sequence of (fd or buffer, size)");
	Py_ssize_t i, len;

	*out = NULL;
	*views = NULL;
	if (!fast)
		return -1;
	len = PySequence_Fast_GET_SIZE(fast);
	if (len > 1000000) {
		Py_DECREF(fast);
		PyErr_SetString(PyExc_ValueError, "at most 1000000 files");
		return -1;
	}
	*out = calloc(len ? (size_t)len : 1, sizeof(**out));
	*views = calloc(len ? (size_t)len : 1, sizeof(**views));
	if (!*out || !*views) {
		Py_DECREF(fast);
		PyErr_NoMemory();
		return -1;
	}
	*n = (uint32_t)len;
	for (i = 0; i < len; i++) {
		PyObject *item = PySequence_Fast_GET_ITEM(fast, i), *io;
		long long size;

		if (!PyArg_ParseTuple(item, "OL:files", &io, &size))
			goto fail;
		if (size < 0) {
			PyErr_Format(PyExc_ValueError, "file %zd: size %lld < 0", i, size);
			goto fail;
		}
		(*out)[i].size = (uint64_t)size;
		(*out)[i].fd = -1;
		if (PyLong_Check(io)) {
			(*out)[i].fd = (int)PyLong_AsLong(io);
			if ((*out)[i].fd < 0) {
				if (!PyErr_Occurred())
					PyErr_SetString(PyExc_ValueError, "bad file descriptor");
				goto fail;
			}
		} else {
			if (PyObject_GetBuffer(io, &(*views)[i], writable ? PyBUF_WRITABLE : PyBUF_SIMPLE))
				goto fail;
			(*out)[i].mem = (*views)[i].buf;
			if ((*views)[i].len < size) {
				PyErr_Format(PyExc_ValueError, "file %zd: the buffer holds %zd bytes, less than size %lld", i,
					     (*views)[i].len, size);
				goto fail;
			}
		}
	}
	Py_DECREF(fast);
	return 0;
fail:
	Py_DECREF(fast);
	return -1;
}

static void release_files(struct pl_file *files, Py_buffer *views, uint32_t n)
{
	uint32_t i;

	if (views)
		for (i = 0; i < n; i++)
			if (views[i].obj)
				PyBuffer_Release(&views[i]);
	free(views);
	free(files);
}

static PyObject *digest_list(uint8_t (*d)[16], uint32_t n)
{
	PyObject *list = PyList_New(n);
	uint32_t i;

	for (i = 0; list && i < n; i++) {
		char hex[33];

		pl_hex(d[i], hex);
		PyList_SET_ITEM(list, i, PyUnicode_FromString(hex));
	}
	return list;
}

static PyObject *fx_call(PyObject *args, PyObject *kwargs, enum fx_kind kind, const char *fmt)
{
	static char *kwlist[] = { "ep", "files", "timeout_ms", "parallel", "abort_after", "corrupt_at", NULL };
	int writable = kind == FX_RECV || kind == FX_PULL;
	PyObject *seq, *digests;
	EpObject *o;
	Py_buffer *views = NULL;
	struct pl_file *files = NULL;
	uint8_t (*d)[16] = NULL;
	uint32_t n = 0;
	int rc, timeout_ms = 30000, parallel = 1;
	long long abort_after = -1, corrupt_at = -1;
	struct fx_result res;
	struct rt_err err;

	if (!PyArg_ParseTupleAndKeywords(args, kwargs, fmt, kwlist, &EndpointType, &o, &seq, &timeout_ms, &parallel,
					 &abort_after, &corrupt_at))
		return NULL;
	if (!ep_usable(&o->ep, 1))
		return NULL;
	if (parallel < 1 || parallel > PL_MAX_LANES) {
		PyErr_Format(PyExc_ValueError, "parallel must be 1 to %d", PL_MAX_LANES);
		return NULL;
	}
	if (parse_files(seq, writable, &files, &views, &n)) {
		release_files(files, views, n);
		return NULL;
	}
	if (!(d = calloc(n ? n : 1, 16))) {
		release_files(files, views, n);
		return PyErr_NoMemory();
	}
	memset(&err, 0, sizeof(err));
	memset(&res, 0, sizeof(res));
	o->ep.busy = 1;
	Py_BEGIN_ALLOW_THREADS
	rc = fx_transfer(&o->ep, kind, files, n, (uint32_t)parallel, timeout_ms, abort_after, corrupt_at, d, &res, &err);
	Py_END_ALLOW_THREADS
	o->ep.busy = 0;
	release_files(files, views, n);
	if (rc) {
		free(d);
		return rt_raise(&err);
	}
	digests = digest_list(d, n);
	free(d);
	if (!digests)
		return NULL;
	return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:N}", "bytes", (unsigned long long)res.bytes, "chunks",
			     (unsigned long long)res.chunks, "ns", (unsigned long long)res.ns, "io_ns",
			     (unsigned long long)res.io_ns, "io_wait_ns", (unsigned long long)res.io_wait_ns,
			     "digests", digests);
}

PyObject *py_fx_push(PyObject *m, PyObject *a, PyObject *k) { return fx_call(a, k, FX_PUSH, "O!O|iiLL:fx_push"); }
PyObject *py_fx_recv(PyObject *m, PyObject *a, PyObject *k) { return fx_call(a, k, FX_RECV, "O!O|iiLL:fx_recv"); }
PyObject *py_fx_serve(PyObject *m, PyObject *a, PyObject *k) { return fx_call(a, k, FX_SERVE, "O!O|iiLL:fx_serve"); }
PyObject *py_fx_pull(PyObject *m, PyObject *a, PyObject *k) { return fx_call(a, k, FX_PULL, "O!O|iiLL:fx_pull"); }

PyObject *py_digest_impl(PyObject *m, PyObject *unused)
{
	return PyUnicode_FromString(digest_impl());
}

PyObject *py_fx_null(PyObject *m, PyObject *args, PyObject *kwargs)
{
	static char *kwlist[] = { "src", "dst", "chunk", "slots", "parallel", NULL };
	PyObject *src_seq, *dst_seq, *out = NULL, *sd, *dd;
	struct pl_file *src = NULL, *dst = NULL;
	Py_buffer *sv = NULL, *dv = NULL;
	uint32_t ns = 0, nd = 0, i;
	long long chunk = 1 << 20;
	int slots = 16, parallel = 1, rc;
	uint8_t (*sdig)[16] = NULL, (*ddig)[16] = NULL;
	struct pl_null_result res;
	struct rt_err err;

	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|Lii:fx_null", kwlist, &src_seq, &dst_seq, &chunk, &slots,
					 &parallel))
		return NULL;
	if (chunk <= 0 || slots <= 0 || parallel < 1 || parallel > PL_MAX_LANES) {
		PyErr_SetString(PyExc_ValueError, "chunk and slots must be > 0, parallel 1 to 64");
		return NULL;
	}
	if (parse_files(src_seq, 0, &src, &sv, &ns) || parse_files(dst_seq, 1, &dst, &dv, &nd))
		goto done;
	if (ns != nd) {
		PyErr_SetString(PyExc_ValueError, "src and dst must list the same number of files");
		goto done;
	}
	for (i = 0; i < ns; i++)
		if (src[i].size != dst[i].size) {
			PyErr_Format(PyExc_ValueError, "file %u: src and dst sizes differ", i);
			goto done;
		}
	sdig = calloc(ns ? ns : 1, 16);
	ddig = calloc(ns ? ns : 1, 16);
	if (!sdig || !ddig) {
		PyErr_NoMemory();
		goto done;
	}
	memset(&err, 0, sizeof(err));
	memset(&res, 0, sizeof(res));
	Py_BEGIN_ALLOW_THREADS
	rc = pl_null(src, dst, ns, (uint64_t)chunk, (uint32_t)slots, (uint32_t)parallel, 0, sdig, ddig, &res, &err);
	Py_END_ALLOW_THREADS
	if (rc) {
		rt_raise(&err);
		goto done;
	}
	sd = digest_list(sdig, ns);
	dd = digest_list(ddig, ns);
	if (sd && dd)
		out = Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:N,s:N}", "bytes", (unsigned long long)res.bytes, "chunks",
				    (unsigned long long)res.chunks, "ns", (unsigned long long)res.ns, "read_busy_ns",
				    (unsigned long long)res.read_busy_ns, "write_busy_ns",
				    (unsigned long long)res.write_busy_ns, "src_digests", sd, "dst_digests", dd);
	else {
		Py_XDECREF(sd);
		Py_XDECREF(dd);
	}
done:
	release_files(src, sv, ns);
	release_files(dst, dv, nd);
	free(sdig);
	free(ddig);
	return out;
}
