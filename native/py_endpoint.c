/*
 * The Python type rdmabench._native.Endpoint around the core's Endpoint (endpoint.h): its
 * construction (Endpoint(...) opens a device; the class methods cm_listen and cm_connect open and
 * connect through rdma_cm), close and the with-statement, knobs() and the test hooks, the
 * attributes, the method table and the type object. The methods with a file of their own:
 * local_info and connect (py_connect.c), run (py_run.c).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "py_common.h"

static EpObject *ep_alloc(PyTypeObject *type)
{
	EpObject *o = (EpObject *)type->tp_alloc(type, 0);

	if (o)
		ep_init(&o->ep);
	return o;
}

/* ------------------------------------------------------------------ construction */

/* A new, unopened Endpoint holding the RoCE knobs its open will apply. */
static EpObject *ep_alloc_knobs(PyTypeObject *type, int tclass, int sl, int numa_node, int hugepages)
{
	EpObject *o = ep_alloc(type);

	if (o) {
		o->ep.tclass = tclass;
		o->ep.sl = sl;
		o->ep.numa_node = numa_node;
		o->ep.hugepages = hugepages;
	}
	return o;
}

static PyObject *ep_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
	static char *kwlist[] = { "device", "gid_index", "port", "qps", "size", "depth", "slots",
				  "mtu", "cq_mod", "inline_size", "tclass", "sl", "numa_node", "hugepages", NULL };
	const char *device;
	int gid_index, port = 1, qps = 1, depth = 128, slots = 0, mtu = 0, cq_mod = 100, inline_size = 0;
	int tclass = 0, sl = 0, numa_node = -1, hugepages = 0;
	Py_ssize_t size = 65536;
	struct rt_err err;
	EpObject *o;

	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "si|iiniiiiiiiip:Endpoint", kwlist, &device,
					 &gid_index, &port, &qps, &size, &depth, &slots, &mtu,
					 &cq_mod, &inline_size, &tclass, &sl, &numa_node, &hugepages))
		return NULL;
	o = ep_alloc_knobs(type, tclass, sl, numa_node, hugepages);
	if (!o)
		return NULL;
	memset(&err, 0, sizeof(err));
	if (ep_open(&o->ep, device, gid_index, port, qps, size, depth, slots, mtu, cq_mod, inline_size,
		    &err)) {
		Py_DECREF(o);
		return rt_raise(&err);
	}
	return (PyObject *)o;
}

static PyObject *ep_cm(PyTypeObject *type, PyObject *args, PyObject *kwargs, int listen)
{
	static char *kw_listen[] = { "bind_ip", "port", "qps", "size", "depth", "slots", "cq_mod",
				     "inline_size", "timeout_ms", "tclass", "sl", "numa_node", "hugepages", NULL };
	static char *kw_connect[] = { "peer_ip", "port", "qps", "size", "depth", "slots", "cq_mod",
				      "inline_size", "timeout_ms", "tclass", "sl", "numa_node", "hugepages", NULL };
	const char *ip;
	int port, qps = 1, depth = 128, slots = 0, cq_mod = 100, inline_size = 0, timeout_ms = 10000;
	int tclass = 0, sl = 0, numa_node = -1, hugepages = 0;
	Py_ssize_t size = 65536;
	struct rt_err err;
	EpObject *o;
	int rc;

	if (!PyArg_ParseTupleAndKeywords(args, kwargs,
					 listen ? "si|iniiiiiiiip:cm_listen" : "si|iniiiiiiiip:cm_connect",
					 listen ? kw_listen : kw_connect, &ip, &port, &qps, &size,
					 &depth, &slots, &cq_mod, &inline_size, &timeout_ms, &tclass, &sl,
					 &numa_node, &hugepages))
		return NULL;
	o = ep_alloc_knobs(type, tclass, sl, numa_node, hugepages);
	if (!o)
		return NULL;
	memset(&err, 0, sizeof(err));
	Py_BEGIN_ALLOW_THREADS
	rc = ep_cm_open(&o->ep, listen, ip, port, qps, size, depth, slots, cq_mod, inline_size,
			timeout_ms, &err);
	Py_END_ALLOW_THREADS
	if (rc) {
		Py_DECREF(o);
		return rt_raise(&err);
	}
	return (PyObject *)o;
}

static PyObject *ep_cm_listen(PyObject *cls, PyObject *args, PyObject *kwargs)
{
	return ep_cm((PyTypeObject *)cls, args, kwargs, 1);
}

static PyObject *ep_cm_connect(PyObject *cls, PyObject *args, PyObject *kwargs)
{
	return ep_cm((PyTypeObject *)cls, args, kwargs, 0);
}

static void ep_dealloc(EpObject *o)
{
	struct rt_err err;

	memset(&err, 0, sizeof(err));
	if (!o->ep.closed)
		ep_release(&o->ep, &err);
	Py_TYPE(o)->tp_free((PyObject *)o);
}

static PyObject *ep_close(EpObject *o, PyObject *unused)
{
	struct rt_err err;

	if (o->ep.busy) {
		PyErr_SetString(PyExc_RuntimeError, "cannot close: the endpoint is running in another thread");
		return NULL;
	}
	if (o->ep.closed)
		Py_RETURN_NONE;
	memset(&err, 0, sizeof(err));
	ep_release(&o->ep, &err);
	if (err.kind != RT_OK)
		return rt_raise(&err);
	Py_RETURN_NONE;
}

static PyObject *ep_enter(EpObject *o, PyObject *unused)
{
	if (!ep_usable(&o->ep, 0))
		return NULL;
	Py_INCREF(o);
	return (PyObject *)o;
}

static PyObject *ep_exit(EpObject *o, PyObject *args)
{
	return ep_close(o, NULL);
}

/* ------------------------------------------------------------------ knobs and test hooks */

static PyObject *int_or_none(int v)
{
	if (v < 0)
		Py_RETURN_NONE;
	return PyLong_FromLong(v);
}

/* What the endpoint was asked for and what the device holds (QP 0's address vector, the buffer's node). */
static PyObject *ep_knobs(EpObject *o, PyObject *unused)
{
	Endpoint *ep = &o->ep;
	int tc, sl;

	if (!ep_usable(ep, 0))
		return NULL;
	ep_qp_av(ep, &tc, &sl);
	return Py_BuildValue("{s:i,s:i,s:N,s:N,s:i,s:i,s:O,s:s}", "tclass", ep->tclass, "sl", ep->sl,
			     "qp_traffic_class", int_or_none(tc), "qp_sl", int_or_none(sl), "numa_node",
			     ep->numa_node, "memory_node",
			     ep_buf_node(ep), "hugepages", ep->hugepages ? Py_True : Py_False, "atomic_cap",
			     atomic_cap_name(ep->atomic_cap));
}

/* Test hook: the sender corrupts the payload of this sequence number (-1: none). */
static PyObject *ep_inject(EpObject *o, PyObject *arg)
{
	long long seq = PyLong_AsLongLong(arg);

	if (seq == -1 && PyErr_Occurred())
		return NULL;
	o->ep.corrupt_seq = seq;
	Py_RETURN_NONE;
}

/* Test hook: flip one byte of a local slot (e.g. the read server's pattern). */
static PyObject *ep_flip(EpObject *o, PyObject *args)
{
	Endpoint *ep = &o->ep;
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

/* ------------------------------------------------------------------ attributes */

static PyObject *ep_get_device(EpObject *o, void *c) { return PyUnicode_FromString(o->ep.devname); }
static PyObject *ep_get_mtu(EpObject *o, void *c)
{
	return PyLong_FromLong(o->ep.closed ? 0 : ep_mtu_bytes(&o->ep));
}
static PyObject *ep_get_reg(EpObject *o, void *c)
{
	return PyLong_FromUnsignedLongLong(o->ep.mr ? (unsigned long long)o->ep.mr->length : 0);
}
/* RDMA READs QP 0 keeps in flight: the QP's own setting once connected (OOB: the smaller of our
 * device's and the peer's responder; rdma_cm: what it negotiated), before that our device's cap */
static PyObject *ep_get_reads(EpObject *o, void *c)
{
	Endpoint *ep = &o->ep;
	struct ibv_qp_attr attr;
	struct ibv_qp_init_attr init;

	if (ep->connected && !ep->closed && ep->q && ep->q[0].qp &&
	    ibv_query_qp(ep->q[0].qp, &attr, IBV_QP_MAX_QP_RD_ATOMIC, &init) == 0)
		return PyLong_FromUnsignedLong(attr.max_rd_atomic);
	return PyLong_FromUnsignedLong(ep->max_rd_atomic);
}
static PyObject *ep_get_connected(EpObject *o, void *c) { return PyBool_FromLong(o->ep.connected); }
static PyObject *ep_get_closed(EpObject *o, void *c) { return PyBool_FromLong(o->ep.closed); }

#define UINT_GETTER(name, field)                                                                  \
	static PyObject *ep_get_##name(EpObject *o, void *c)                                      \
	{                                                                                         \
		return PyLong_FromUnsignedLong((unsigned long)o->ep.field);                       \
	}
UINT_GETTER(port, port)
UINT_GETTER(qps, nqps)
UINT_GETTER(size, size)
UINT_GETTER(depth, depth)
UINT_GETTER(slots, slots)
UINT_GETTER(cq_mod, cq_mod)
UINT_GETTER(inline_size, inline_size)
UINT_GETTER(gid_index, gid_index)

static PyGetSetDef ep_getset[] = {
	{ "device", (getter)ep_get_device, NULL, "device name (for cm: the one rdma_cm resolved)", NULL },
	{ "mtu", (getter)ep_get_mtu, NULL, "path MTU in bytes once connected, else the port's", NULL },
	{ "registered_bytes", (getter)ep_get_reg, NULL, "bytes registered: qps * slots * size", NULL },
	{ "outstanding_reads", (getter)ep_get_reads, NULL,
	  "RDMA READs in flight per QP (once connected: what QP 0 was given)", NULL },
	{ "connected", (getter)ep_get_connected, NULL, NULL, NULL },
	{ "closed", (getter)ep_get_closed, NULL, NULL, NULL },
	{ "port", (getter)ep_get_port, NULL, NULL, NULL },
	{ "qps", (getter)ep_get_qps, NULL, NULL, NULL },
	{ "size", (getter)ep_get_size, NULL, NULL, NULL },
	{ "depth", (getter)ep_get_depth, NULL, NULL, NULL },
	{ "slots", (getter)ep_get_slots, NULL, NULL, NULL },
	{ "cq_mod", (getter)ep_get_cq_mod, NULL, "signaling interval (clamped to depth)", NULL },
	{ "inline_size", (getter)ep_get_inline_size, NULL, NULL, NULL },
	{ "gid_index", (getter)ep_get_gid_index, NULL, NULL, NULL },
	{ NULL, NULL, NULL, NULL, NULL },
};

/* ------------------------------------------------------------------ methods and the type */

static PyMethodDef ep_methods[] = {
	{ "local_info", (PyCFunction)py_ep_local_info, METH_NOARGS,
	  "local_info() -> list of {qpn, psn, gid, lid, addr, rkey, size, slots, mtu, rd_atomic}, one per QP" },
	{ "connect", (PyCFunction)(void (*)(void))py_ep_connect, METH_VARARGS | METH_KEYWORDS,
	  "connect(remote): bring every QP to RTS against the peer's local_info() list" },
	{ "run", (PyCFunction)(void (*)(void))py_ep_run, METH_VARARGS | METH_KEYWORDS,
	  "run(test, role, iters=0, duration_s=0.0, warmup=0, bidir=False, validate=False,\n"
	  "    max_samples=1000000, timeout_ms=10000, atomic='fetch_add', interval_s=1.0,\n"
	  "    on_window=None) -> dict (see endpoint.h)" },
	{ "close", (PyCFunction)ep_close, METH_NOARGS, "release every verbs resource (idempotent)" },
	{ "knobs", (PyCFunction)ep_knobs, METH_NOARGS,
	  "knobs() -> {tclass, sl, qp_traffic_class, qp_sl, numa_node, memory_node, hugepages, atomic_cap}" },
	{ "__enter__", (PyCFunction)ep_enter, METH_NOARGS, NULL },
	{ "__exit__", (PyCFunction)ep_exit, METH_VARARGS, NULL },
	{ "cm_listen", (PyCFunction)(void (*)(void))ep_cm_listen,
	  METH_VARARGS | METH_KEYWORDS | METH_CLASS,
	  "cm_listen(bind_ip, port, qps=1, size=65536, depth=128, slots=0, cq_mod=100,\n"
	  "          inline_size=0, timeout_ms=10000) -> Endpoint connected through rdma_cm" },
	{ "cm_connect", (PyCFunction)(void (*)(void))ep_cm_connect,
	  METH_VARARGS | METH_KEYWORDS | METH_CLASS,
	  "cm_connect(peer_ip, port, qps=1, size=65536, depth=128, slots=0, cq_mod=100,\n"
	  "           inline_size=0, timeout_ms=10000) -> Endpoint connected through rdma_cm" },
	{ "_inject_corruption", (PyCFunction)ep_inject, METH_O,
	  "test hook: the sender corrupts the payload of this sequence number (-1: none)" },
	{ "_flip_byte", (PyCFunction)ep_flip, METH_VARARGS,
	  "test hook: _flip_byte(qp, slot, offset) flips one byte of a local slot" },
	{ NULL, NULL, 0, NULL },
};

PyTypeObject EndpointType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "rdmabench._native.Endpoint",
	.tp_basicsize = sizeof(EpObject),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Endpoint(device, gid_index, port=1, qps=1, size=65536, depth=128, slots=0, mtu=0,\n"
		  "         cq_mod=100, inline_size=0)\n\n"
		  "RC QPs on one device with one registered buffer of qps * slots * size bytes\n"
		  "(slots 0 -> depth), and the benchmark loops in C (run()).",
	.tp_new = ep_new,
	.tp_dealloc = (destructor)ep_dealloc,
	.tp_methods = ep_methods,
	.tp_getset = ep_getset,
};
