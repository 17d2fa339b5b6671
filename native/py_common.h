/* py_common.h: what the files of the binding layer (bindings.c and py_*.c, the only code that
 * converts Python objects) share: the Python object around the core's Endpoint and the helpers
 * every one of them calls (py_common.c). Python.h before this. */
#ifndef RDMABENCH_PY_COMMON_H
#define RDMABENCH_PY_COMMON_H
#include "endpoint.h"

/* An rdmabench._native.Endpoint: the core's Endpoint inside a Python object. */
typedef struct {
	PyObject_HEAD
	Endpoint ep;
} EpObject;

/* The Endpoint type (rdmabench._native.Endpoint; py_endpoint.c). */
extern PyTypeObject EndpointType;

/* The core's error record raised as the exception bindings.c's header lists for its kind; NULL. */
PyObject *rt_raise(const struct rt_err *e);
/* 1 when the endpoint is open, idle (and connected if asked), else a RuntimeError set and 0. */
int ep_usable(Endpoint *ep, int need_connected);
/* An array.array of typecode holding a copy of the bytes; NULL with an error set. */
PyObject *make_array(char typecode, const void *data, size_t bytes);

/* The Endpoint's methods that live in a file of their own; the type's method table lists them
 * (py_ in their names: not the core's ep_* functions). py_connect.c: ep.local_info() and
 * ep.connect(); py_run.c: ep.run(). */
PyObject *py_ep_local_info(EpObject *o, PyObject *unused);
PyObject *py_ep_connect(EpObject *o, PyObject *args, PyObject *kwargs);
PyObject *py_ep_run(EpObject *o, PyObject *args, PyObject *kwargs);

/* Module functions that live beside what they wrap; bindings.c puts them in the module's table.
 * py_files.c: the file loops and the digest build. */
PyObject *py_fx_push(PyObject *m, PyObject *a, PyObject *k);
PyObject *py_fx_recv(PyObject *m, PyObject *a, PyObject *k);
PyObject *py_fx_serve(PyObject *m, PyObject *a, PyObject *k);
PyObject *py_fx_pull(PyObject *m, PyObject *a, PyObject *k);
PyObject *py_fx_null(PyObject *m, PyObject *args, PyObject *kwargs);
PyObject *py_digest_impl(PyObject *m, PyObject *unused);
#endif
