/*
 * rdmabench._native: the module, and the map of its binding layer, the only code that converts
 * Python objects (bindings.c and the py_*.c/h files; the C core below it never includes Python.h):
 *   bindings.c     the module: its functions' table, the payload pattern (pattern) and the hot
 *                  loops' clock, calibrated once when the module loads (TSC_HZ, TIMER, CLOCK_READ_NS)
 *   py_common.h/c  what every binding file shares: EpObject, rt_raise, ep_usable, make_array
 *   py_endpoint.c  the Python type rdmabench._native.Endpoint around the core's Endpoint (endpoint.h):
 *                  construction (and cm_listen/cm_connect), close, knobs, attributes, the type object
 *   py_connect.c   ep.local_info() and ep.connect(), the out-of-band connection
 *   py_run.c       ep.run() and the dict it returns
 *   py_windows.c/h a run's tick (on_window, Ctrl-C) and its windows and histogram in that dict
 *   py_files.c     the file loops (fx_push, fx_recv, fx_serve, fx_pull: filexfer.c; fx_null: pipeline.c)
 *                  and digest_impl
 * Every core call runs without the GIL where it waits on the wire; its error record (struct rt_err)
 * is raised by rt_raise once the GIL is back:
 *   OSError(errno, msg)  a verbs/rdma_cm call or a completion failed
 *   TimeoutError         no progress before the deadline
 *   ValueError           a bad argument;  LookupError: no device of that name;  MemoryError
 *   RuntimeError         the endpoint is closed, not connected or busy in another thread
 * rdmabench roundtrip --engine native is two Endpoints (rdmabench/native.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "py_common.h"

/* ------------------------------------------------------------------ the payload pattern */

static PyObject *py_pattern(PyObject *m, PyObject *args)
{
	Py_ssize_t size;
	unsigned long long seed;
	PyObject *b;

	if (!PyArg_ParseTuple(args, "nK:pattern", &size, &seed))
		return NULL;
	if (size < 0) {
		PyErr_SetString(PyExc_ValueError, "size must be >= 0");
		return NULL;
	}
	b = PyBytes_FromStringAndSize(NULL, size);
	if (b)
		fill_pattern((uint8_t *)PyBytes_AS_STRING(b), (size_t)size, seed);
	return b;
}

static PyMethodDef module_methods[] = {
	{ "pattern", py_pattern, METH_VARARGS,
	  "pattern(size, seed) -> bytes: rdmabench/workloads/pattern.py's pattern_py, from C" },
	{ "fx_push", (PyCFunction)(void (*)(void))py_fx_push, METH_VARARGS | METH_KEYWORDS,
	  "fx_push(ep, files, timeout_ms=30000, parallel=1, abort_after=-1, corrupt_at=-1): rdma-write source; "
	  "files = [(fd or buffer, size)] (see filexfer.c) -> {bytes, chunks, ns, io_ns, io_wait_ns, digests}" },
	{ "fx_recv", (PyCFunction)(void (*)(void))py_fx_recv, METH_VARARGS | METH_KEYWORDS,
	  "fx_recv(ep, files, timeout_ms=30000, parallel=1, abort_after=-1, corrupt_at=-1): rdma-write destination" },
	{ "fx_serve", (PyCFunction)(void (*)(void))py_fx_serve, METH_VARARGS | METH_KEYWORDS,
	  "fx_serve(ep, files, timeout_ms=30000, parallel=1, abort_after=-1, corrupt_at=-1): rdma-read source" },
	{ "fx_pull", (PyCFunction)(void (*)(void))py_fx_pull, METH_VARARGS | METH_KEYWORDS,
	  "fx_pull(ep, files, timeout_ms=30000, parallel=1, abort_after=-1, corrupt_at=-1): rdma-read destination" },
	{ "digest_impl", py_digest_impl, METH_NOARGS,
	  "digest_impl() -> the XXH3-128 build the file pipeline digests with on this CPU (avx2 or sse2)" },
	{ "fx_null", (PyCFunction)(void (*)(void))py_fx_null, METH_VARARGS | METH_KEYWORDS,
	  "fx_null(src, dst, chunk=1MiB, slots=16, parallel=1): the file pipeline without a network (pipeline.c): "
	  "src files -> a ring -> dst files, digests at both ends -> {bytes, chunks, ns, read_busy_ns, "
	  "write_busy_ns, src_digests, dst_digests}" },
	{ NULL, NULL, 0, NULL },
};

static struct PyModuleDef native_module = {
	PyModuleDef_HEAD_INIT,
	"_native",
	"rdmabench native hot loops: verbs objects opened and driven from C.",
	-1,
	module_methods,
	NULL,
	NULL,
	NULL,
	NULL,
};

PyMODINIT_FUNC PyInit__native(void)
{
	PyObject *m;

	clock_calibrate(); /* once per process: the rate every result of it carries */
	if (PyType_Ready(&EndpointType) < 0)
		return NULL;
	m = PyModule_Create(&native_module);
	if (!m)
		return NULL;
	Py_INCREF(&EndpointType);
	if (PyModule_AddObject(m, "Endpoint", (PyObject *)&EndpointType) < 0) {
		Py_DECREF(&EndpointType);
		Py_DECREF(m);
		return NULL;
	}
	if (PyModule_AddObject(m, "TSC_HZ", PyFloat_FromDouble(tsc_hz())) < 0 ||
	    PyModule_AddStringConstant(m, "TIMER", timer_name()) < 0 ||
	    PyModule_AddObject(m, "CLOCK_READ_NS", PyFloat_FromDouble(clock_read_ns())) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
