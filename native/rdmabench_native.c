/*
 * rdmabench._native: the C engine's hot paths. The module holds the Endpoint type (endpoint.c and
 * ep_*.c), the file transfer loops (filexfer.c) and the hot loops' clock, calibrated once here.
 * rdmabench roundtrip --engine native is two Endpoints (rdmabench/native.py).
 */
#include "common.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct PyModuleDef native_module = {
	PyModuleDef_HEAD_INIT,
	"_native",
	"rdmabench native hot loops: verbs objects opened and driven from C.",
	-1,
	NULL,
	NULL,
	NULL,
	NULL,
	NULL,
};

PyMODINIT_FUNC PyInit__native(void)
{
	PyObject *m;

	clock_calibrate();
	m = PyModule_Create(&native_module);
	if (!m)
		return NULL;
	if (endpoint_register(m) < 0 || filexfer_register(m) < 0) {
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
