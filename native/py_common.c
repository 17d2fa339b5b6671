/* What every file of the binding layer uses (see py_common.h). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "py_common.h"

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
	default:
		args = Py_BuildValue("(is)", e->errnum, e->msg);
		if (args) {
			PyErr_SetObject(e->kind == RT_TIMEOUT ? PyExc_TimeoutError : PyExc_OSError, args);
			Py_DECREF(args);
		}
		return NULL;
	}
}

/* 1 when the endpoint is open, idle (and connected if asked), else a RuntimeError set and 0. */
int ep_usable(Endpoint *ep, int need_connected)
{
	if (ep->closed) {
		PyErr_SetString(PyExc_RuntimeError, "the endpoint is closed");
		return 0;
	}
	if (ep->busy) {
		PyErr_SetString(PyExc_RuntimeError, "the endpoint is running in another thread");
		return 0;
	}
	if (need_connected && !ep->connected) {
		PyErr_SetString(PyExc_RuntimeError, "the endpoint is not connected: call connect() first");
		return 0;
	}
	return 1;
}

/* An array.array of typecode holding a copy of the bytes. */
PyObject *make_array(char typecode, const void *data, size_t bytes)
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
