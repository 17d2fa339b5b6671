/* Out-of-band connection: local_info() out, the peer's info in, each QP to RTS. (see endpoint.h) */
#include "endpoint.h"

/* ------------------------------------------------------------------ local_info / connect */

int ep_mtu_bytes(Endpoint *ep)
{
	if (ep->connected)
		return mtu_bytes(ep->q[0].path_mtu);
	if (ep->req_mtu && mtu_enum(ep->req_mtu) < ep->active_mtu)
		return ep->req_mtu;
	return mtu_bytes(ep->active_mtu);
}

PyObject *ep_local_info(Endpoint *ep, PyObject *unused)
{
	PyObject *list, *d;
	char gid[33];
	int i, j;

	if (!ep_usable(ep, 0))
		return NULL;
	for (j = 0; j < 16; j++)
		snprintf(gid + 2 * j, 3, "%02x", ep->gid.raw[j]);
	list = PyList_New(ep->nqps);
	if (!list)
		return NULL;
	for (i = 0; i < ep->nqps; i++) {
		d = Py_BuildValue("{s:I,s:I,s:s,s:H,s:K,s:I,s:I,s:I,s:i,s:I}",
				  "qpn", ep->q[i].qp->qp_num,
				  "psn", ep->q[i].psn,
				  "gid", gid,
				  "lid", ep->lid,
				  "addr", (unsigned long long)(uintptr_t)slot_addr(ep, (uint32_t)i, 0),
				  "rkey", ep->mr->rkey,
				  "size", ep->size,
				  "slots", ep->slots,
				  "mtu", ep_mtu_bytes(ep),
				  /* RDMA READs this end answers at once: the peer's READ depth */
				  "rd_atomic", ep->max_dest_rd_atomic);
		if (!d) {
			Py_DECREF(list);
			return NULL;
		}
		PyList_SET_ITEM(list, i, d);
	}
	return list;
}

struct remote_qp {
	uint32_t qpn, psn, rkey, slots, mtu;
	uint32_t rd_atomic; /* 0: the peer did not say (an older rdmabench) */
	uint16_t lid;
	uint64_t addr, size;
	union ibv_gid gid;
};

static int dict_u64(PyObject *d, const char *key, int idx, uint64_t *out)
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
	*out = x;
	return 0;
}

static int parse_remote(PyObject *d, int idx, struct remote_qp *r)
{
	uint64_t v;
	PyObject *g;
	const char *s;
	int j;

	if (!PyDict_Check(d)) {
		PyErr_Format(PyExc_TypeError, "remote[%d] must be a dict", idx);
		return -1;
	}
#define GET(key, field, max)                                                                      \
	do {                                                                                      \
		if (dict_u64(d, key, idx, &v))                                                    \
			return -1;                                                                \
		if (v > (max)) {                                                                  \
			PyErr_Format(PyExc_ValueError, "remote[%d]['%s'] out of range", idx, key); \
			return -1;                                                                \
		}                                                                                 \
		r->field = v;                                                                     \
	} while (0)
	GET("qpn", qpn, 0xffffffu);
	GET("psn", psn, 0xffffffu);
	GET("lid", lid, 0xffffu);
	GET("addr", addr, UINT64_MAX);
	GET("rkey", rkey, UINT32_MAX);
	GET("size", size, UINT32_MAX);
	GET("slots", slots, UINT32_MAX);
	GET("mtu", mtu, 4096u);
	r->rd_atomic = 0;
	if (PyDict_GetItemString(d, "rd_atomic"))
		GET("rd_atomic", rd_atomic, 255u);
#undef GET
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
	if (r->slots == 0 || r->size == 0) {
		PyErr_Format(PyExc_ValueError, "remote[%d] has no slots", idx);
		return -1;
	}
	return 0;
}

static int qp_modify_connect(Endpoint *ep, uint32_t i, const struct remote_qp *r, struct rt_err *e)
{
	struct ep_qp *p = &ep->q[i];
	struct ibv_qp_attr attr;
	enum ibv_mtu mtu = ep->active_mtu, rmtu = r->mtu ? mtu_enum((int)r->mtu) : ep->active_mtu;
	char call[64];
	int rc;

	if (ep->req_mtu && mtu_enum(ep->req_mtu) < mtu)
		mtu = mtu_enum(ep->req_mtu);
	if (rmtu && rmtu < mtu)
		mtu = rmtu;

	memset(&attr, 0, sizeof(attr));
	attr.qp_state = IBV_QPS_INIT;
	attr.pkey_index = 0;
	attr.port_num = (uint8_t)ep->port;
	attr.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
	rc = ibv_modify_qp(p->qp, &attr,
			   IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
	if (rc) {
		snprintf(call, sizeof(call), "ibv_modify_qp(QP %u, INIT)", i);
		rt_set_os(e, call, rc);
		return -1;
	}
	if (post_recvs(ep, i, e))
		return -1;

	memset(&attr, 0, sizeof(attr));
	attr.qp_state = IBV_QPS_RTR;
	attr.path_mtu = mtu;
	attr.dest_qp_num = r->qpn;
	attr.rq_psn = r->psn;
	attr.max_dest_rd_atomic = (uint8_t)ep->max_dest_rd_atomic;
	attr.min_rnr_timer = 12; /* 0.64 ms */
	roce_ah(&attr.ah_attr, &r->gid, ep->gid_index, r->lid, ep->port);
	rc = ibv_modify_qp(p->qp, &attr,
			   IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
				   IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
	if (rc) {
		snprintf(call, sizeof(call), "ibv_modify_qp(QP %u, RTR)", i);
		rt_set_os(e, call, rc);
		return -1;
	}

	memset(&attr, 0, sizeof(attr));
	attr.qp_state = IBV_QPS_RTS;
	attr.timeout = 14; /* 4.096 us * 2^14 = 67 ms per retry */
	attr.retry_cnt = 7;
	attr.rnr_retry = 7; /* retry forever; run()'s timeout_ms bounds every wait */
	attr.sq_psn = p->psn;
	/* never more READs in flight than the peer's responder takes (mixed NICs: rxe 128, mlx5 16) */
	attr.max_rd_atomic = (uint8_t)(r->rd_atomic && r->rd_atomic < ep->max_rd_atomic ? r->rd_atomic
										      : ep->max_rd_atomic);
	rc = ibv_modify_qp(p->qp, &attr,
			   IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
				   IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
	if (rc) {
		snprintf(call, sizeof(call), "ibv_modify_qp(QP %u, RTS)", i);
		rt_set_os(e, call, rc);
		return -1;
	}
	p->path_mtu = mtu;
	p->raddr = r->addr;
	p->rkey = r->rkey;
	p->rslots = r->slots;
	p->rsize = r->size;
	return 0;
}

PyObject *ep_connect(Endpoint *ep, PyObject *args, PyObject *kwargs)
{
	static char *kwlist[] = { "remote", NULL };
	PyObject *remote, *seq;
	struct remote_qp *r;
	struct rt_err err;
	Py_ssize_t n, i;
	int rc = 0;

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
	if (n != ep->nqps) {
		PyErr_Format(PyExc_ValueError, "remote describes %zd QPs, this endpoint has %d", n,
			     ep->nqps);
		Py_DECREF(seq);
		return NULL;
	}
	r = calloc((size_t)n, sizeof(*r));
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
		if (r[i].size < ep->size) {
			PyErr_Format(PyExc_ValueError,
				     "remote[%zd] slots are %llu bytes, smaller than this size (%u)", i,
				     (unsigned long long)r[i].size, ep->size);
			free(r);
			Py_DECREF(seq);
			return NULL;
		}
	}
	Py_DECREF(seq);
	memset(&err, 0, sizeof(err));
	for (i = 0; i < n && rc == 0; i++)
		rc = qp_modify_connect(ep, (uint32_t)i, &r[i], &err);
	free(r);
	if (rc)
		return rt_raise(&err);
	ep->connected = 1;
	Py_RETURN_NONE;
}
