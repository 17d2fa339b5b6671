/* py_windows.c: the Python side of a run's windows (see ep_window.c): the tick that calls a
 * callable with each window and turns Ctrl-C into a stop, and the windows and latency histogram as
 * keys of run()'s dict. Python.h before this. */
#ifndef RDMABENCH_PY_WINDOWS_H
#define RDMABENCH_PY_WINDOWS_H
#include "endpoint.h"

struct py_tick {
	PyObject *callback;		/* None: no live line; signals are still checked */
	uint64_t prev_t, prev_ops;	/* the previous window's end (ticks) and operations */
	int interrupted;		/* Ctrl-C (KeyboardInterrupt) asked the run to stop */
	PyObject *exc_type, *exc_value, *exc_tb; /* anything else the callback raised */
};

int py_tick(void *arg, const struct run *r, const struct win *w);
/* windows, windows_truncated, interval_s, lat_hist and interrupted into res: 0, or -1 with an error set */
int window_keys(PyObject *res, const struct run *r, const struct py_tick *t, double interval_s);
#endif
