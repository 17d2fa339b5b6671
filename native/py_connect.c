/*
 * The out-of-band connection: ep.local_info() gives this side's QP facts as dicts the caller
 * sends to the peer, and ep.connect() checks the peer's list and brings every QP to RTS against
 * it (ep_connect.c). Endpoint.cm_listen/cm_connect, which connect through rdma_cm instead, are
 * constructors: py_endpoint.c.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "py_common.h"

PyObject *py_ep_local_info(EpObject *o, PyObject *unused)
{
	Endpoint *ep = &o->ep;
	struct remote_qp me;
	PyObject *list, *d;
	char gid[33];
	int i, j;

	if (!ep_usable(ep, 0))
		return NULL;
	list = PyList_New(ep->nqps);
	if (!list)
		return NULL;
	for (i = 0; i < ep->nqps; i++) {
		ep_local_qp(ep, i, &me);
		for (j = 0; j < 16; j++)
			snprintf(gid + 2 * j, 3, "%02x", me.gid.raw[j]);
		d = Py_BuildValue("{s:I,s:I,s:s,s:H,s:K,s:I,s:K,s:I,s:I,s:I}", "qpn", me.qpn, "psn",
				  me.psn, "gid", gid, "lid", me.lid, "addr", (unsigned long long)me.addr,
				  "rkey", me.rkey, "size", (unsigned long long)me.size, "slots", me.slots,
				  "mtu", me.mtu, "rd_atomic", me.rd_atomic);
		if (!d) {
			Py_DECREF(list);
			return NULL;
		}
		PyList_SET_ITEM(list, i, d);
	}
	return list;
}

static int dict_u64(PyObject *d, const char *key, int idx, uint64_t max, uint64_t *out)
{
	PyObject *v = PyDict_GetItemString(d, key);
	unsigned long long x;

	if (!v) {
		PyErr_Format(PyExc_ValueError, "remote[%d] has no '%s'", idx, key);
		return -1;
	}
	x = PyLong_AsUnsignedLongLong(v);
	if (x == (unsigned long long)-1 && PyErr_Occurred()) {
		PyErr_Clear();
		PyErr_Format(PyExc_ValueError, "remote[%d]['%s'] must be a non-negative int", idx, key);
		return -1;
	}
	if (x > max) {
		PyErr_Format(PyExc_ValueError, "remote[%d]['%s'] out of range", idx, key);
		return -1;
	}
	*out = x;
	return 0;
}

static int parse_remote(PyObject *d, int idx, struct remote_qp *r)
{
	uint64_t qpn, psn, lid, rkey, size, slots, mtu, rd = 0;
	PyObject *g;
	const char *s;
	int j;

	if (!PyDict_Check(d)) {
		PyErr_Format(PyExc_TypeError, "remote[%d] must be a dict", idx);
		return -1;
	}
	if (dict_u64(d, "qpn", idx, 0xffffffu, &qpn) || dict_u64(d, "psn", idx, 0xffffffu, &psn) ||
	    dict_u64(d, "lid", idx, 0xffffu, &lid) || dict_u64(d, "addr", idx, UINT64_MAX, &r->addr) ||
	    dict_u64(d, "rkey", idx, UINT32_MAX, &rkey) || dict_u64(d, "size", idx, UINT32_MAX, &size) ||
	    dict_u64(d, "slots", idx, UINT32_MAX, &slots) || dict_u64(d, "mtu", idx, 4096u, &mtu) ||
	    (PyDict_GetItemString(d, "rd_atomic") && dict_u64(d, "rd_atomic", idx, 255u, &rd)))
		return -1;
	r->qpn = (uint32_t)qpn;
	r->psn = (uint32_t)psn;
	r->lid = (uint16_t)lid;
	r->rkey = (uint32_t)rkey;
	r->size = size;
	r->slots = (uint32_t)slots;
	r->mtu = (uint32_t)mtu;
	r->rd_atomic = (uint32_t)rd; /* 0: the peer did not say (an older rdmabench) */
	g = PyDict_GetItemString(d, "gid");
	if (!g || !PyUnicode_Check(g) || !(s = PyUnicode_AsUTF8(g)) || strlen(s) != 32) {
		PyErr_Format(PyExc_ValueError, "remote[%d]['gid'] must be 32 hex characters", idx);
		return -1;
	}
	for (j = 0; j < 16; j++) {
		unsigned int byte;

		if (sscanf(s + 2 * j, "%2x", &byte) != 1) {
			PyErr_Format(PyExc_ValueError, "remote[%d]['gid'] is not hex", idx);
			return -1;
		}
		r->gid.raw[j] = (uint8_t)byte;
	}
	return 0;
}

PyObject *py_ep_connect(EpObject *o, PyObject *args, PyObject *kwargs)
{
	static char *kwlist[] = { "remote", NULL };
	Endpoint *ep = &o->ep;
	PyObject *remote, *seq;
	struct remote_qp *r;
	struct rt_err err;
	Py_ssize_t n, i;
	int rc;

	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:connect", kwlist, &remote))
		return NULL;
	if (!ep_usable(ep, 0))
		return NULL;
	if (ep->connected || ep->cm_ch) {
		PyErr_SetString(PyExc_RuntimeError, "the endpoint is already connected");
		return NULL;
	}
	seq = PySequence_Fast(remote, "remote must be a list of dicts, one per QP");
	if (!seq)
		return NULL;
	n = PySequence_Fast_GET_SIZE(seq);
	r = calloc(n ? (size_t)n : 1, sizeof(*r));
	if (!r) {
		Py_DECREF(seq);
		return PyErr_NoMemory();
	}
	for (i = 0; i < n; i++) {
		if (parse_remote(PySequence_Fast_GET_ITEM(seq, i), (int)i, &r[i])) {
			free(r);
			Py_DECREF(seq);
			return NULL;
		}
	}
	Py_DECREF(seq);
	memset(&err, 0, sizeof(err));
	rc = ep_connect_qps(ep, r, (int)n, &err);
	free(r);
	if (rc)
		return rt_raise(&err);
	Py_RETURN_NONE;
}
