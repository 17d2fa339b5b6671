/*
 * rdmabench._native.Endpoint: verbs resources held open across runs, connected to a peer
 * (QP info exchanged by the caller, or through rdma_cm), and the benchmark loops in C.
 *
 *   Endpoint(device, gid_index, port=1, qps=1, size=65536, depth=128, slots=0, mtu=0,
 *            cq_mod=100, inline_size=0)
 *   Endpoint.cm_listen(bind_ip, port, qps=1, size=65536, depth=128, slots=0, cq_mod=100,
 *                      inline_size=0, timeout_ms=10000)         -> connected Endpoint
 *   Endpoint.cm_connect(peer_ip, port, <same>)                   -> connected Endpoint
 *     (one rdma_cm connection per QP, the peer's addr/rkey/slots/size in the private data; the
 *     device is the one rdma_cm resolves the address to: ep.device; the path MTU is rdma_cm's;
 *     every wait is bounded by timeout_ms, address/route resolution by librdmacm's 2 s)
 *   ep.local_info() -> [ {qpn, psn, gid (32 hex), lid, addr, rkey, size, slots, mtu} ] one per QP
 *   ep.connect(remote_infos)   INIT -> RTR -> RTS for every QP
 *   ep.run(test, role, iters=0, duration_s=0.0, warmup=0, bidir=False, validate=False,
 *          max_samples=1000000, timeout_ms=10000) -> dict
 *   ep.close(); with Endpoint(...) as ep: ...
 *   attributes: device, port, qps, size, depth, slots, cq_mod, inline_size, mtu (path MTU in bytes
 *   once connected, else the port's active MTU), registered_bytes (== qps * slots * size), connected
 *
 * Memory: ONE registered buffer of qps * slots * size bytes (slots 0 -> depth), split per QP into
 * `slots` slots of `size` bytes. Control messages (credits, end markers, the write_lat handshake)
 * are zero-byte SENDs with immediate data, so they need no memory of their own. Every QP keeps
 * min(depth, slots) receives posted at all times (slot of receive i = i % slots).
 *
 * run() tests: write_bw read_bw send_bw write_lat read_lat send_lat; role client | server.
 * iters is PER QP (perftest's -n): a BW client with qps=Q moves Q * iters messages.
 * Latency tests use QP 0 only.
 *
 * Keys of the dict run() returns:
 *   test, role, iters, warmup, duration_s, bidir, qps, size
 *   passive            True: this side did nothing (write_bw/read_bw server without validate,
 *                      read_lat server); only test/role/passive and the zeros are meaningful.
 *                      A read_bw/read_lat server told validate=True fills every slot with its
 *                      pattern (qp, slot) before returning: run it before the client.
 *   ops, bytes         messages (bytes) this side moved in the measured phase: sent and completed
 *                      for a sender, received for a receiver (send_bw server); recv_ops counts what a
 *                      bidirectional send_bw received
 *   t_start_ns         first post of the measured phase (receiver only: first receive completion)
 *   t_end_ns           last completion; both on the CLOCK_MONOTONIC_RAW scale, int ns
 *   tsc_hz             ticks per second of the clock used (1e9 when no TSC: clock_gettime)
 *   completions_ns     array('q'): time (int ns, same scale) of each signaled completion (BW)
 *   completions_ops    array('Q'): messages completed in the measured phase at that time (BW)
 *   samples_ns         array('d'): latency samples in ns, at most min(iters, max_samples) (lat);
 *                      empty for BW
 *   sample             "half round trip" (write_lat, send_lat), "post to completion" (read_lat),
 *                      None for BW
 *   samples_truncated  True when completions/samples stopped being recorded: the array was full
 *   validated          payloads checked (validate=True), warm-up included
 *   corrupt            payloads that did not match their pattern
 *   first_corrupt_seq  sequence number (per QP, counted from 0 at the run's first message,
 *                      warm-up included) of the first corrupt payload, -1 if none
 *
 * Errors: ValueError (bad argument), LookupError (no such device), TimeoutError (no progress for
 * timeout_ms), OSError (a verbs/rdma_cm call or a completion failed: the message names the QP
 * index and ibv_wc_status_str), RuntimeError (endpoint closed, not connected or busy).
 */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rdma/rdma_cma.h>
#include <rdma/rdma_verbs.h>

#define MAX_QPS 256
#define POLL_BATCH 32
#define IMM_END 0xFFFFFFFFu   /* last message of a duration run */
#define IMM_READY 0xFFFFFFFEu /* write_lat: the server is ready to be written to */
#define IDX_MASK 0xFFFFFFFFFFFFull
#define MAX_BUFFER (64ull << 30)

enum test_kind { T_WRITE_BW, T_READ_BW, T_SEND_BW, T_WRITE_LAT, T_READ_LAT, T_SEND_LAT };
static const char *const test_names[] = { "write_bw", "read_bw", "send_bw",
					  "write_lat", "read_lat", "send_lat" };

/* ------------------------------------------------------------------ resources */

static void ep_release(Endpoint *ep, struct rt_err *e)
{
	int i, rc;

	for (i = ep->nqps_created - 1; i >= 0; i--) {
		struct ep_qp *p = &ep->q[i];

		if (p->cm_id) {
			if (ep->connected)
				rdma_disconnect(p->cm_id);
			if (p->cm_id->qp)
				rdma_destroy_qp(p->cm_id);
			p->qp = NULL;
		} else if (p->qp && (rc = ibv_destroy_qp(p->qp))) {
			rt_set_os(e, "ibv_destroy_qp", rc);
		}
		p->qp = NULL;
	}
	if (ep->mr && (rc = ibv_dereg_mr(ep->mr)))
		rt_set_os(e, "ibv_dereg_mr", rc);
	ep->mr = NULL;
	free(ep->buf);
	ep->buf = NULL;
	if (ep->rcq && (rc = ibv_destroy_cq(ep->rcq)))
		rt_set_os(e, "ibv_destroy_cq(recv)", rc);
	ep->rcq = NULL;
	if (ep->scq && (rc = ibv_destroy_cq(ep->scq)))
		rt_set_os(e, "ibv_destroy_cq(send)", rc);
	ep->scq = NULL;
	if (ep->pd && (rc = ibv_dealloc_pd(ep->pd)))
		rt_set_os(e, "ibv_dealloc_pd", rc);
	ep->pd = NULL;
	if (ep->q) {
		for (i = ep->nqps_created - 1; i >= 0; i--) {
			if (ep->q[i].cm_id)
				rdma_destroy_id(ep->q[i].cm_id);
			ep->q[i].cm_id = NULL;
		}
		for (i = 0; i < ep->nqps; i++)
			free(ep->q[i].sq_data);
		free(ep->q);
		ep->q = NULL;
	}
	ep->nqps_created = 0;
	if (ep->cm_ch)
		rdma_destroy_event_channel(ep->cm_ch);
	ep->cm_ch = NULL;
	if (ep->ctx && ep->own_ctx && (rc = ibv_close_device(ep->ctx)))
		rt_set_os(e, "ibv_close_device", rc);
	ep->ctx = NULL;
	ep->connected = 0;
	ep->closed = 1;
}

/* Argument checks that need no device. */
static int ep_check_args(Endpoint *ep, int qps, Py_ssize_t size, int depth, int slots, int mtu,
			 int cq_mod, int inline_size, struct rt_err *e)
{
	if (qps < 1 || qps > MAX_QPS) {
		rt_set(e, RT_VALUE, 0, "qps must be between 1 and %d, got %d", MAX_QPS, qps);
		return -1;
	}
	if (size <= 0 || size > (Py_ssize_t)UINT32_MAX) {
		rt_set(e, RT_VALUE, 0, "size must be between 1 byte and 4 GiB, got %zd", size);
		return -1;
	}
	if (depth < 1 || depth > 65536) {
		rt_set(e, RT_VALUE, 0, "depth must be between 1 and 65536, got %d", depth);
		return -1;
	}
	if (slots < 0) {
		rt_set(e, RT_VALUE, 0, "slots must be >= 0 (0 means depth), got %d", slots);
		return -1;
	}
	if (mtu != 0 && mtu_enum(mtu) == 0) {
		rt_set(e, RT_VALUE, 0, "mtu must be 0 (the port's) or 256/512/1024/2048/4096, got %d",
		       mtu);
		return -1;
	}
	if (cq_mod < 1) {
		rt_set(e, RT_VALUE, 0, "cq_mod must be >= 1, got %d", cq_mod);
		return -1;
	}
	if (inline_size < 0) {
		rt_set(e, RT_VALUE, 0, "inline_size must be >= 0, got %d", inline_size);
		return -1;
	}
	ep->nqps = qps;
	ep->size = (uint32_t)size;
	ep->depth = (uint32_t)depth;
	ep->slots = slots ? (uint32_t)slots : (uint32_t)depth;
	ep->req_mtu = mtu;
	ep->cq_mod = (uint32_t)cq_mod < ep->depth ? (uint32_t)cq_mod : ep->depth;
	ep->inline_size = (uint32_t)inline_size;
	ep->recv_target = ep->depth < ep->slots ? ep->depth : ep->slots;
	if ((uint64_t)qps * ep->slots * ep->size > MAX_BUFFER) {
		rt_set(e, RT_VALUE, 0,
		       "qps * slots * size = %llu bytes is more than the %llu GiB this engine registers",
		       (unsigned long long)qps * ep->slots * ep->size, MAX_BUFFER >> 30);
		return -1;
	}
	ep->q = calloc((size_t)qps, sizeof(*ep->q));
	if (!ep->q) {
		rt_set(e, RT_NOMEM, ENOMEM, "cannot allocate %d QP records", qps);
		return -1;
	}
	for (int i = 0; i < qps; i++) {
		ep->q[i].sq_data = calloc(ep->depth, sizeof(uint64_t));
		if (!ep->q[i].sq_data) {
			rt_set(e, RT_NOMEM, ENOMEM, "cannot allocate the send rings");
			return -1;
		}
		ep->q[i].psn = (uint32_t)(((uint64_t)rand() ^ ((uint64_t)getpid() << 8) ^ (uint64_t)i) &
					  0xffffff);
	}
	ep->corrupt_seq = -1;
	return 0;
}

/* PD, CQs and the registered buffer on ep->ctx (device attributes checked against the options). */
static int ep_setup_verbs(Endpoint *ep, struct rt_err *e)
{
	struct ibv_device_attr dattr;
	struct ibv_port_attr pattr;
	long page = sysconf(_SC_PAGESIZE);
	int rc, cqe;

	rc = ibv_query_device(ep->ctx, &dattr);
	if (rc) {
		rt_set_os(e, "ibv_query_device", rc);
		return -1;
	}
	if (ep->port < 1 || ep->port > dattr.phys_port_cnt) {
		rt_set(e, RT_VALUE, 0, "port %d does not exist on %s (it has %u port%s)", ep->port,
		       ep->devname, dattr.phys_port_cnt, dattr.phys_port_cnt == 1 ? "" : "s");
		return -1;
	}
	rc = ibv_query_port(ep->ctx, (uint8_t)ep->port, &pattr);
	if (rc) {
		rt_set_os(e, "ibv_query_port", rc);
		return -1;
	}
	if (pattr.state != IBV_PORT_ACTIVE) {
		rt_set(e, RT_OS, ENETDOWN, "%s port %d is not active (state %s)", ep->devname, ep->port,
		       ibv_port_state_str(pattr.state));
		return -1;
	}
	if (ep->size > pattr.max_msg_sz) {
		rt_set(e, RT_VALUE, 0,
		       "size %u exceeds the maximum message size of %s port %d (%u bytes)", ep->size,
		       ep->devname, ep->port, pattr.max_msg_sz);
		return -1;
	}
	if ((int)ep->depth > dattr.max_qp_wr) {
		rt_set(e, RT_VALUE, 0, "depth %u exceeds %s's max_qp_wr (%d)", ep->depth, ep->devname,
		       dattr.max_qp_wr);
		return -1;
	}
	ep->lid = pattr.lid;
	ep->active_mtu = pattr.active_mtu;
	ep->max_rd_atomic = dattr.max_qp_init_rd_atom > 0 ? (uint32_t)dattr.max_qp_init_rd_atom : 1;
	ep->max_dest_rd_atomic = dattr.max_qp_rd_atom > 0 ? (uint32_t)dattr.max_qp_rd_atom : 1;
	if (ep->max_rd_atomic > 16)
		ep->max_rd_atomic = 16;
	if (ep->max_dest_rd_atomic > 16)
		ep->max_dest_rd_atomic = 16;

	ep->pd = ibv_alloc_pd(ep->ctx);
	if (!ep->pd) {
		rt_set_os(e, "ibv_alloc_pd", 0);
		return -1;
	}
	cqe = (int)((uint64_t)ep->nqps * ep->depth + 16);
	if (cqe > dattr.max_cqe)
		cqe = dattr.max_cqe;
	ep->scq = ibv_create_cq(ep->ctx, cqe, NULL, NULL, 0);
	if (!ep->scq) {
		rt_set_os(e, "ibv_create_cq(send)", 0);
		return -1;
	}
	ep->rcq = ibv_create_cq(ep->ctx, cqe, NULL, NULL, 0);
	if (!ep->rcq) {
		rt_set_os(e, "ibv_create_cq(recv)", 0);
		return -1;
	}
	ep->buf_len = (size_t)ep->nqps * ep->slots * ep->size;
	if (page <= 0)
		page = 4096;
	if (posix_memalign((void **)&ep->buf, (size_t)page, ep->buf_len)) {
		ep->buf = NULL;
		rt_set(e, RT_NOMEM, ENOMEM, "cannot allocate the %zu-byte buffer", ep->buf_len);
		return -1;
	}
	memset(ep->buf, 0, ep->buf_len);
	ep->mr = ibv_reg_mr(ep->pd, ep->buf, ep->buf_len,
			    IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
	if (!ep->mr) {
		rt_set_os(e, "ibv_reg_mr", 0);
		return -1;
	}
	return 0;
}

static void ep_qp_init_attr(Endpoint *ep, struct ibv_qp_init_attr *qia)
{
	memset(qia, 0, sizeof(*qia));
	qia->qp_type = IBV_QPT_RC;
	qia->sq_sig_all = 0;
	qia->send_cq = ep->scq;
	qia->recv_cq = ep->rcq;
	qia->cap.max_send_wr = ep->depth;
	qia->cap.max_recv_wr = ep->depth;
	qia->cap.max_send_sge = 1;
	qia->cap.max_recv_sge = 1;
	qia->cap.max_inline_data = ep->inline_size;
}

/* Keep recv_target receives posted on QP q; receive i lands in slot i % slots. */
int post_recvs(Endpoint *ep, uint32_t q, struct rt_err *e)
{
	struct ep_qp *p = &ep->q[q];
	struct ibv_recv_wr wrs[16], *bad = NULL;
	struct ibv_sge sges[16];
	int n, rc;

	while (p->rq_posted - p->rq_done < ep->recv_target) {
		for (n = 0; n < 16 && p->rq_posted + (uint64_t)n - p->rq_done < ep->recv_target; n++) {
			uint64_t idx = p->rq_posted + (uint64_t)n;

			sges[n].addr = (uintptr_t)slot_addr(ep, q, idx);
			sges[n].length = ep->size;
			sges[n].lkey = ep->mr->lkey;
			wrs[n].wr_id = ((uint64_t)q << 48) | (idx & IDX_MASK);
			wrs[n].sg_list = &sges[n];
			wrs[n].num_sge = 1;
			wrs[n].next = NULL;
			if (n)
				wrs[n - 1].next = &wrs[n];
		}
		rc = ibv_post_recv(p->qp, wrs, &bad);
		if (rc) {
			char call[64];

			snprintf(call, sizeof(call), "ibv_post_recv(QP %u)", q);
			rt_set_os(e, call, rc);
			return -1;
		}
		p->rq_posted += (uint64_t)n;
	}
	return 0;
}

/* ------------------------------------------------------------------ Python: construction */

static Endpoint *ep_alloc(PyTypeObject *type)
{
	Endpoint *ep = (Endpoint *)type->tp_alloc(type, 0);

	if (!ep)
		return NULL;
	ep->port = 1;
	ep->corrupt_seq = -1;
	return ep;
}

static PyObject *ep_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
	static char *kwlist[] = { "device", "gid_index", "port", "qps", "size", "depth", "slots",
				  "mtu", "cq_mod", "inline_size", NULL };
	const char *device;
	int gid_index, port = 1, qps = 1, depth = 128, slots = 0, mtu = 0, cq_mod = 100,
		       inline_size = 0;
	Py_ssize_t size = 65536;
	struct ibv_device **devs = NULL;
	struct ibv_device *dev;
	struct ibv_port_attr pattr;
	struct ibv_qp_init_attr qia;
	struct rt_err err;
	Endpoint *ep;
	int ndev = 0, rc, i;

	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "si|iiniiiii:Endpoint", kwlist, &device,
					 &gid_index, &port, &qps, &size, &depth, &slots, &mtu,
					 &cq_mod, &inline_size))
		return NULL;
	ep = ep_alloc(type);
	if (!ep)
		return NULL;
	memset(&err, 0, sizeof(err));
	snprintf(ep->devname, sizeof(ep->devname), "%s", device);
	ep->port = port;
	ep->gid_index = gid_index;
	if (ep_check_args(ep, qps, size, depth, slots, mtu, cq_mod, inline_size, &err))
		goto fail;
	if (port < 1 || port > 255) {
		rt_set(&err, RT_VALUE, 0, "port must be between 1 and 255, got %d", port);
		goto fail;
	}
	if (gid_index < 0 || gid_index > 255) {
		rt_set(&err, RT_VALUE, 0, "gid_index must be between 0 and 255, got %d", gid_index);
		goto fail;
	}
	errno = 0;
	devs = ibv_get_device_list(&ndev);
	if (!devs) {
		rt_set(&err, RT_LOOKUP, 0, "no RDMA device named '%s'; devices here: none (%s)", device,
		       strerror(errno ? errno : ENOSYS));
		goto fail;
	}
	dev = find_device(devs, ndev, device, &err);
	if (!dev)
		goto fail;
	ep->ctx = ibv_open_device(dev);
	if (!ep->ctx) {
		rt_set_os(&err, "ibv_open_device", 0);
		goto fail;
	}
	ep->own_ctx = 1;
	ibv_free_device_list(devs);
	devs = NULL;
	if (ep_setup_verbs(ep, &err))
		goto fail;
	rc = ibv_query_port(ep->ctx, (uint8_t)port, &pattr);
	if (rc) {
		rt_set_os(&err, "ibv_query_port", rc);
		goto fail;
	}
	if (gid_index >= pattr.gid_tbl_len) {
		rt_set(&err, RT_VALUE, 0, "gid_index %d is out of range: %s port %d has %d GID entries",
		       gid_index, device, port, pattr.gid_tbl_len);
		goto fail;
	}
	rc = ibv_query_gid(ep->ctx, (uint8_t)port, gid_index, &ep->gid);
	if (rc) {
		rt_set_os(&err, "ibv_query_gid", rc);
		goto fail;
	}
	if (gid_is_zero(&ep->gid)) {
		rt_set(&err, RT_VALUE, 0,
		       "gid_index %d is empty on %s port %d (on rxe the IPv4-mapped RoCE v2 GID is "
		       "usually index 1)",
		       gid_index, device, port);
		goto fail;
	}
	ep_qp_init_attr(ep, &qia);
	for (i = 0; i < qps; i++) {
		ep->q[i].qp = ibv_create_qp(ep->pd, &qia);
		if (!ep->q[i].qp) {
			rt_set_os(&err, "ibv_create_qp", 0);
			goto fail;
		}
		ep->nqps_created = i + 1;
	}
	return (PyObject *)ep;

fail:
	if (devs)
		ibv_free_device_list(devs);
	ep_release(ep, &err);
	Py_DECREF(ep);
	return rt_raise(&err);
}

static void ep_dealloc(Endpoint *ep)
{
	struct rt_err err;

	memset(&err, 0, sizeof(err));
	if (!ep->closed)
		ep_release(ep, &err);
	Py_TYPE(ep)->tp_free((PyObject *)ep);
}

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

static PyObject *ep_close(Endpoint *ep, PyObject *unused)
{
	struct rt_err err;

	if (ep->busy) {
		PyErr_SetString(PyExc_RuntimeError, "cannot close: the endpoint is running in another thread");
		return NULL;
	}
	if (ep->closed)
		Py_RETURN_NONE;
	memset(&err, 0, sizeof(err));
	ep_release(ep, &err);
	if (err.kind != RT_OK)
		return rt_raise(&err);
	Py_RETURN_NONE;
}

static PyObject *ep_enter(Endpoint *ep, PyObject *unused)
{
	if (!ep_usable(ep, 0))
		return NULL;
	Py_INCREF(ep);
	return (PyObject *)ep;
}

static PyObject *ep_exit(Endpoint *ep, PyObject *args)
{
	return ep_close(ep, NULL);
}

/* ------------------------------------------------------------------ local_info / connect */

static int ep_mtu_bytes(Endpoint *ep)
{
	if (ep->connected)
		return mtu_bytes(ep->q[0].path_mtu);
	if (ep->req_mtu && mtu_enum(ep->req_mtu) < ep->active_mtu)
		return ep->req_mtu;
	return mtu_bytes(ep->active_mtu);
}

static PyObject *ep_local_info(Endpoint *ep, PyObject *unused)
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
		d = Py_BuildValue("{s:I,s:I,s:s,s:H,s:K,s:I,s:I,s:I,s:i}",
				  "qpn", ep->q[i].qp->qp_num,
				  "psn", ep->q[i].psn,
				  "gid", gid,
				  "lid", ep->lid,
				  "addr", (unsigned long long)(uintptr_t)slot_addr(ep, (uint32_t)i, 0),
				  "rkey", ep->mr->rkey,
				  "size", ep->size,
				  "slots", ep->slots,
				  "mtu", ep_mtu_bytes(ep));
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
	attr.ah_attr.is_global = 1; /* RoCE: every packet carries a GRH */
	attr.ah_attr.grh.dgid = r->gid;
	attr.ah_attr.grh.sgid_index = (uint8_t)ep->gid_index;
	attr.ah_attr.grh.flow_label = 0;
	attr.ah_attr.grh.hop_limit = 64;
	attr.ah_attr.grh.traffic_class = 0;
	attr.ah_attr.dlid = r->lid;
	attr.ah_attr.sl = 0;
	attr.ah_attr.src_path_bits = 0;
	attr.ah_attr.static_rate = 0;
	attr.ah_attr.port_num = (uint8_t)ep->port;
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
	attr.max_rd_atomic = (uint8_t)ep->max_rd_atomic;
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

static PyObject *ep_connect(Endpoint *ep, PyObject *args, PyObject *kwargs)
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

/* ------------------------------------------------------------------ rdma_cm */

#define PD_MAGIC 0x5244424eu /* "RDBN" */
#define PD_VERSION 1
#define PD_LEN 40

struct cm_info {
	uint32_t qp, slots, rkey, qps;
	uint64_t size, addr;
};

static void put32(uint8_t *p, uint32_t v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return ntohl(v);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static uint64_t get64(const uint8_t *p)
{
	return ((uint64_t)get32(p) << 32) | get32(p + 4);
}

static void cm_pack(const Endpoint *ep, uint32_t qi, uint8_t *out)
{
	memset(out, 0, PD_LEN);
	put32(out, PD_MAGIC);
	out[4] = PD_VERSION;
	put32(out + 8, qi);
	put32(out + 12, ep->slots);
	put64(out + 16, ep->size);
	put64(out + 24, (uint64_t)(uintptr_t)slot_addr(ep, qi, 0));
	put32(out + 32, ep->mr->rkey);
	put32(out + 36, (uint32_t)ep->nqps);
}

static int cm_unpack(const void *data, uint8_t len, struct cm_info *ci, struct rt_err *e)
{
	const uint8_t *p = data;

	if (!p || len < PD_LEN || get32(p) != PD_MAGIC || p[4] != PD_VERSION) {
		rt_set(e, RT_OS, EPROTO,
		       "rdma_cm peer sent no rdmabench private data (%u bytes): not an rdmabench "
		       "endpoint or another version",
		       (unsigned)len);
		return -1;
	}
	ci->qp = get32(p + 8);
	ci->slots = get32(p + 12);
	ci->size = get64(p + 16);
	ci->addr = get64(p + 24);
	ci->rkey = get32(p + 32);
	ci->qps = get32(p + 36);
	return 0;
}

/* Wait for the next event of `id` on the endpoint's channel until the deadline (ns). The caller
 * acks *ev. Events of other ids (a peer's disconnect) are acked and skipped. */
static int cm_wait(Endpoint *ep, struct rdma_cm_id *id, uint64_t deadline, const char *what,
		   struct rdma_cm_event **ev, struct rt_err *e)
{
	struct pollfd pfd;
	uint64_t now;
	int rc;

	for (;;) {
		now = now_ns();
		if (now >= deadline) {
			rt_set(e, RT_TIMEOUT, ETIMEDOUT, "rdma_cm: no %s before the deadline", what);
			return -1;
		}
		pfd.fd = ep->cm_ch->fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		rc = poll(&pfd, 1, (int)((deadline - now) / 1000000 + 1));
		if (rc < 0 && errno != EINTR) {
			rt_set_os(e, "poll(rdma_cm channel)", 0);
			return -1;
		}
		if (rc <= 0)
			continue;
		if (rdma_get_cm_event(ep->cm_ch, ev)) {
			rt_set_os(e, "rdma_get_cm_event", 0);
			return -1;
		}
		if ((*ev)->id == id)
			return 0;
		rdma_ack_cm_event(*ev);
	}
}

static int cm_expect_established(Endpoint *ep, struct rdma_cm_id *id, uint32_t qi, uint64_t deadline,
				 struct cm_info *ci, struct rt_err *e)
{
	struct rdma_cm_event *ev = NULL;
	char what[64];
	int rc = 0;

	snprintf(what, sizeof(what), "ESTABLISHED for QP %u", qi);
	if (cm_wait(ep, id, deadline, what, &ev, e))
		return -1;
	if (ev->event != RDMA_CM_EVENT_ESTABLISHED) {
		rt_set(e, RT_OS, ev->event == RDMA_CM_EVENT_REJECTED ? ECONNREFUSED : EIO,
		       "rdma_cm QP %u: %s instead of ESTABLISHED (status %d)", qi,
		       rdma_event_str(ev->event), ev->status);
		rc = -1;
	} else if (ci) {
		rc = cm_unpack(ev->param.conn.private_data, ev->param.conn.private_data_len, ci, e);
	}
	rdma_ack_cm_event(ev);
	return rc;
}

static void cm_conn_param(Endpoint *ep, struct rdma_conn_param *cp, const uint8_t *pdata)
{
	memset(cp, 0, sizeof(*cp));
	cp->private_data = pdata;
	cp->private_data_len = PD_LEN;
	cp->responder_resources = (uint8_t)ep->max_dest_rd_atomic;
	cp->initiator_depth = (uint8_t)ep->max_rd_atomic;
	cp->retry_count = 7;
	cp->rnr_retry_count = 7;
}

/* The first cm id tells which device: open PD, CQs, buffer on it. */
static int cm_setup_from_id(Endpoint *ep, struct rdma_cm_id *id, struct rt_err *e)
{
	if (!id->verbs) {
		rt_set(e, RT_OS, ENODEV, "rdma_cm resolved no RDMA device for this address");
		return -1;
	}
	ep->ctx = id->verbs;
	ep->own_ctx = 0;
	ep->port = id->port_num ? id->port_num : 1;
	snprintf(ep->devname, sizeof(ep->devname), "%s", ibv_get_device_name(id->verbs->device));
	if (ep_setup_verbs(ep, e))
		return -1;
	if (ibv_query_gid(ep->ctx, (uint8_t)ep->port, 0, &ep->gid))
		memset(&ep->gid, 0, sizeof(ep->gid));
	return 0;
}

static int cm_add_qp(Endpoint *ep, struct rdma_cm_id *id, uint32_t qi, const struct cm_info *peer,
		     struct rt_err *e)
{
	struct ibv_qp_init_attr qia;
	struct ibv_qp_attr qattr;
	struct ibv_qp_init_attr qinit;
	struct ep_qp *p = &ep->q[qi];
	char call[64];

	ep_qp_init_attr(ep, &qia);
	if (rdma_create_qp(id, ep->pd, &qia)) {
		snprintf(call, sizeof(call), "rdma_create_qp(QP %u)", qi);
		rt_set_os(e, call, 0);
		return -1;
	}
	p->cm_id = id;
	p->qp = id->qp;
	if (post_recvs(ep, qi, e))
		return -1;
	if (peer) {
		p->raddr = peer->addr;
		p->rkey = peer->rkey;
		p->rslots = peer->slots;
		p->rsize = peer->size;
	}
	if (ibv_query_qp(p->qp, &qattr, IBV_QP_PATH_MTU | IBV_QP_SQ_PSN, &qinit) == 0) {
		p->path_mtu = qattr.path_mtu;
		p->psn = qattr.sq_psn;
	}
	return 0;
}

static int check_peer(Endpoint *ep, const struct cm_info *ci, struct rt_err *e)
{
	if (ci->qps != (uint32_t)ep->nqps || ci->qp >= (uint32_t)ep->nqps) {
		rt_set(e, RT_VALUE, 0, "rdma_cm peer has %u QPs (this one: %d), QP index %u", ci->qps,
		       ep->nqps, ci->qp);
		return -1;
	}
	if (ci->size < ep->size || ci->slots == 0) {
		rt_set(e, RT_VALUE, 0, "rdma_cm peer's slots are %llu bytes, smaller than size %u",
		       (unsigned long long)ci->size, ep->size);
		return -1;
	}
	return 0;
}

static int do_cm_connect(Endpoint *ep, const char *ip, const char *port, int timeout_ms,
			 struct rt_err *e)
{
	struct rdma_addrinfo hints, *res = NULL;
	struct rdma_conn_param cp;
	struct rdma_cm_id *id;
	struct cm_info ci;
	uint8_t pdata[PD_LEN];
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
	int qi, rc;

	ep->cm_ch = rdma_create_event_channel();
	if (!ep->cm_ch) {
		rt_set_os(e, "rdma_create_event_channel", 0);
		return -1;
	}
	for (qi = 0; qi < ep->nqps; qi++) {
		memset(&hints, 0, sizeof(hints));
		hints.ai_port_space = RDMA_PS_TCP;
		rc = rdma_getaddrinfo(ip, port, &hints, &res);
		if (rc) {
			rt_set(e, RT_OS, errno ? errno : EINVAL, "rdma_getaddrinfo(%s, %s) failed: %s", ip,
			       port, rc == -1 ? strerror(errno) : gai_strerror(rc));
			return -1;
		}
		rc = rdma_create_ep(&id, res, NULL, NULL);
		rdma_freeaddrinfo(res);
		if (rc) {
			rt_set(e, RT_OS, errno ? errno : EIO,
			       "rdma_create_ep(%s:%s) failed: %s (is the address on an RDMA device?)",
			       ip, port, strerror(errno));
			return -1;
		}
		if (qi == 0 && cm_setup_from_id(ep, id, e)) {
			rdma_destroy_ep(id);
			return -1;
		}
		if (cm_add_qp(ep, id, (uint32_t)qi, NULL, e)) {
			if (!ep->q[qi].cm_id)
				rdma_destroy_ep(id);
			ep->nqps_created = qi + 1;
			return -1;
		}
		ep->nqps_created = qi + 1;
		if (rdma_migrate_id(id, ep->cm_ch)) {
			rt_set_os(e, "rdma_migrate_id", 0);
			return -1;
		}
		cm_pack(ep, (uint32_t)qi, pdata);
		cm_conn_param(ep, &cp, pdata);
		if (rdma_connect(id, &cp)) {
			rt_set_os(e, "rdma_connect", 0);
			return -1;
		}
		if (cm_expect_established(ep, id, (uint32_t)qi, deadline, &ci, e))
			return -1;
		if (check_peer(ep, &ci, e))
			return -1;
		ep->q[qi].raddr = ci.addr;
		ep->q[qi].rkey = ci.rkey;
		ep->q[qi].rslots = ci.slots;
		ep->q[qi].rsize = ci.size;
	}
	return 0;
}

static int do_cm_listen(Endpoint *ep, const char *ip, const char *port, int timeout_ms,
			struct rt_err *e)
{
	struct rdma_addrinfo hints, *res = NULL;
	struct rdma_conn_param cp;
	struct rdma_cm_id *lid = NULL, *id;
	struct cm_info ci;
	struct pollfd pfd;
	uint8_t pdata[PD_LEN];
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull, now;
	int k, rc, ret = -1;

	ep->cm_ch = rdma_create_event_channel();
	if (!ep->cm_ch) {
		rt_set_os(e, "rdma_create_event_channel", 0);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = RAI_PASSIVE;
	hints.ai_port_space = RDMA_PS_TCP;
	rc = rdma_getaddrinfo(ip, port, &hints, &res);
	if (rc) {
		rt_set(e, RT_OS, errno ? errno : EINVAL, "rdma_getaddrinfo(%s, %s) failed: %s", ip, port,
		       rc == -1 ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	rc = rdma_create_ep(&lid, res, NULL, NULL);
	rdma_freeaddrinfo(res);
	if (rc) {
		rt_set(e, RT_OS, errno ? errno : EIO, "rdma_create_ep(listen %s:%s) failed: %s", ip, port,
		       strerror(errno));
		return -1;
	}
	if (rdma_listen(lid, ep->nqps)) {
		rt_set(e, RT_OS, errno ? errno : EIO, "rdma_listen(%s:%s) failed: %s", ip, port,
		       strerror(errno));
		goto out;
	}
	for (k = 0; k < ep->nqps; k++) {
		/* rdma_get_request blocks: wait for the listener's channel first, with the deadline */
		for (;;) {
			now = now_ns();
			if (now >= deadline) {
				rt_set(e, RT_TIMEOUT, ETIMEDOUT,
				       "rdma_cm: no connection request on %s:%s within %d ms (%d of %d QPs "
				       "connected)",
				       ip, port, timeout_ms, k, ep->nqps);
				goto out;
			}
			pfd.fd = lid->channel->fd;
			pfd.events = POLLIN;
			pfd.revents = 0;
			rc = poll(&pfd, 1, (int)((deadline - now) / 1000000 + 1));
			if (rc > 0)
				break;
			if (rc < 0 && errno != EINTR) {
				rt_set_os(e, "poll(rdma_cm listen channel)", 0);
				goto out;
			}
		}
		if (rdma_get_request(lid, &id)) {
			rt_set_os(e, "rdma_get_request", 0);
			goto out;
		}
		if (cm_unpack(id->event ? id->event->param.conn.private_data : NULL,
			      id->event ? id->event->param.conn.private_data_len : 0, &ci, e) ||
		    (k == 0 && (cm_setup_from_id(ep, id, e))) || check_peer(ep, &ci, e) ||
		    ep->q[ci.qp].cm_id) {
			if (e->kind == RT_OK)
				rt_set(e, RT_VALUE, 0, "rdma_cm peer connected QP %u twice", ci.qp);
			rdma_reject(id, NULL, 0);
			rdma_destroy_ep(id);
			goto out;
		}
		if (cm_add_qp(ep, id, ci.qp, &ci, e)) {
			if (!ep->q[ci.qp].cm_id) {
				rdma_reject(id, NULL, 0);
				rdma_destroy_ep(id);
			}
			ep->nqps_created = ep->nqps;
			goto out;
		}
		ep->nqps_created = ep->nqps; /* release walks every record; empty ones are skipped */
		if (rdma_migrate_id(id, ep->cm_ch)) {
			rt_set_os(e, "rdma_migrate_id", 0);
			goto out;
		}
		cm_pack(ep, ci.qp, pdata);
		cm_conn_param(ep, &cp, pdata);
		if (rdma_accept(id, &cp)) {
			rt_set_os(e, "rdma_accept", 0);
			goto out;
		}
		if (cm_expect_established(ep, id, ci.qp, deadline, NULL, e))
			goto out;
	}
	ret = 0;
out:
	if (lid)
		rdma_destroy_ep(lid);
	return ret;
}

static PyObject *ep_cm(PyTypeObject *type, PyObject *args, PyObject *kwargs, int listen)
{
	static char *kw_listen[] = { "bind_ip", "port", "qps", "size", "depth", "slots", "cq_mod",
				     "inline_size", "timeout_ms", NULL };
	static char *kw_connect[] = { "peer_ip", "port", "qps", "size", "depth", "slots", "cq_mod",
				      "inline_size", "timeout_ms", NULL };
	const char *ip;
	int port, qps = 1, depth = 128, slots = 0, cq_mod = 100, inline_size = 0, timeout_ms = 10000;
	Py_ssize_t size = 65536;
	char portstr[16];
	struct rt_err err;
	Endpoint *ep;
	int rc;

	if (!PyArg_ParseTupleAndKeywords(args, kwargs,
					 listen ? "si|iniiiii:cm_listen" : "si|iniiiii:cm_connect",
					 listen ? kw_listen : kw_connect, &ip, &port, &qps, &size,
					 &depth, &slots, &cq_mod,
					 &inline_size, &timeout_ms))
		return NULL;
	if (port < 1 || port > 65535 || timeout_ms <= 0) {
		PyErr_Format(PyExc_ValueError, "port must be 1..65535 and timeout_ms positive (got %d, %d)",
			     port, timeout_ms);
		return NULL;
	}
	ep = ep_alloc(type);
	if (!ep)
		return NULL;
	memset(&err, 0, sizeof(err));
	if (ep_check_args(ep, qps, size, depth, slots, 0, cq_mod, inline_size, &err)) {
		ep_release(ep, &err);
		Py_DECREF(ep);
		return rt_raise(&err);
	}
	snprintf(portstr, sizeof(portstr), "%d", port);
	Py_BEGIN_ALLOW_THREADS
	rc = listen ? do_cm_listen(ep, ip, portstr, timeout_ms, &err)
		    : do_cm_connect(ep, ip, portstr, timeout_ms, &err);
	if (rc)
		ep_release(ep, &err);
	Py_END_ALLOW_THREADS
	if (rc) {
		Py_DECREF(ep);
		return rt_raise(&err);
	}
	ep->connected = 1;
	return (PyObject *)ep;
}

static PyObject *ep_cm_listen(PyObject *cls, PyObject *args, PyObject *kwargs)
{
	return ep_cm((PyTypeObject *)cls, args, kwargs, 1);
}

static PyObject *ep_cm_connect(PyObject *cls, PyObject *args, PyObject *kwargs)
{
	return ep_cm((PyTypeObject *)cls, args, kwargs, 0);
}

/* ------------------------------------------------------------------ the run */

struct bwq {
	uint64_t sent;      /* data messages posted (run-wide sequence of the next one) */
	uint64_t checked;   /* read_bw validate: completed messages checked */
	uint64_t granted;   /* write_bw validate: messages the peer has checked (credits) */
	uint64_t recvd;     /* data messages received */
	uint64_t credited;  /* credits returned (cumulative count sent in the last credit) */
	int send_finished;  /* nothing more to post in this phase */
	int recv_finished;  /* got everything (iters) or the end marker */
};

struct run {
	Endpoint *ep;
	int test, client, bidir, validate;
	uint64_t iters, warmup;
	double duration_s;
	uint64_t timeout_ticks;
	int timeout_ms;
	struct bwq *s;
	/* recording */
	int recording;
	uint64_t tot_done, tot_recvd, done0, recvd0;
	uint64_t t_start, t_end;
	int have_start;
	uint64_t *c_t, *c_ops;
	size_t nc, ccap;
	double *samp;
	size_t ns, scap;
	int truncated;
	uint64_t validated, corrupt;
	int64_t first_corrupt;
	uint64_t last_progress;
	uint64_t lat_ops; /* latency tests: measured iterations */
};

static void note_corrupt(struct run *r, uint64_t seq)
{
	if (r->corrupt == 0)
		r->first_corrupt = (int64_t)seq;
	r->corrupt++;
}

static void record_completion(struct run *r, uint64_t t, uint64_t ops)
{
	if (!r->recording)
		return;
	if (r->nc < r->ccap) {
		r->c_t[r->nc] = t;
		r->c_ops[r->nc] = ops;
		r->nc++;
	} else {
		r->truncated = 1;
	}
}

static void record_sample(struct run *r, double ns)
{
	if (r->ns < r->scap)
		r->samp[r->ns++] = ns;
	else
		r->truncated = 1;
}

/* Post one WR on QP q. len 0 -> no SGE (control messages). */
int post_one(Endpoint *ep, uint32_t q, enum ibv_wr_opcode op, uint8_t *laddr, uint32_t len,
		    uint64_t raddr, int has_imm, uint32_t imm, int signaled, uint64_t data_after,
		    struct rt_err *e)
{
	struct ep_qp *p = &ep->q[q];
	struct ibv_sge sge;
	struct ibv_send_wr wr, *bad = NULL;
	int rc;

	if (has_imm && op == IBV_WR_SEND)
		op = IBV_WR_SEND_WITH_IMM; /* credits, end markers, READY: the imm is the message */
	sge.addr = (uintptr_t)laddr;
	sge.length = len;
	sge.lkey = ep->mr->lkey;
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = ((uint64_t)q << 48) | (p->sq_posted & IDX_MASK);
	wr.sg_list = len ? &sge : NULL;
	wr.num_sge = len ? 1 : 0;
	wr.opcode = op;
	wr.send_flags = signaled ? IBV_SEND_SIGNALED : 0;
	if (len && len <= ep->inline_size && op != IBV_WR_RDMA_READ)
		wr.send_flags |= IBV_SEND_INLINE;
	if (has_imm)
		wr.imm_data = htonl(imm);
	wr.wr.rdma.remote_addr = raddr;
	wr.wr.rdma.rkey = p->rkey;
	p->sq_data[p->sq_posted % ep->depth] = data_after;
	rc = ibv_post_send(p->qp, &wr, &bad);
	if (rc) {
		rt_set(e, RT_OS, rc > 0 ? rc : EIO, "ibv_post_send(QP %u, WR %llu) failed: %s", q,
		       (unsigned long long)p->sq_posted, strerror(rc > 0 ? rc : EIO));
		return -1;
	}
	p->sq_posted++;
	p->last_signaled = signaled;
	return 0;
}

int wc_failed(const struct ibv_wc *wc, const char *side, struct rt_err *e)
{
	/* wc->opcode is undefined on an error completion: name the queue and the WR instead */
	rt_set(e, RT_OS, EIO,
	       "QP %u: %s work request %llu failed: %s (wc status %d, vendor_err 0x%x)",
	       (unsigned)(wc->wr_id >> 48), side, (unsigned long long)(wc->wr_id & IDX_MASK),
	       ibv_wc_status_str(wc->status), (int)wc->status, wc->vendor_err);
	return -1;
}

/* Poll the send CQ once. Updates sq_done / data_done; read_bw validate checks landed data;
 * records a sample per signaled completion while recording. Returns completions seen or -1. */
static int poll_send(struct run *r, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	struct ibv_wc wc[POLL_BATCH];
	int n, i;

	n = ibv_poll_cq(ep->scq, POLL_BATCH, wc);
	if (n < 0) {
		rt_set_os(e, "ibv_poll_cq(send)", -n);
		return -1;
	}
	if (n == 0)
		return 0;
	uint64_t t = ticks();

	for (i = 0; i < n; i++) {
		uint32_t q = (uint32_t)(wc[i].wr_id >> 48);
		uint64_t idx = wc[i].wr_id & IDX_MASK;
		struct ep_qp *p;
		uint64_t d;

		if (wc[i].status != IBV_WC_SUCCESS)
			return wc_failed(&wc[i], "send", e);
		if (q >= (uint32_t)ep->nqps)
			continue;
		p = &ep->q[q];
		p->sq_done = idx + 1;
		d = p->sq_data[idx % ep->depth];
		if (d > p->data_done) {
			r->tot_done += d - p->data_done;
			p->data_done = d;
		}
		if (r->s && r->validate && r->test == T_READ_BW) {
			struct bwq *s = &r->s[q];

			for (; s->checked < p->data_done; s->checked++) {
				uint64_t seq = s->checked;

				r->validated++;
				if (!check_pattern(slot_addr(ep, q, seq), ep->size,
						   pattern_seed(q, seq % p->rslots)))
					note_corrupt(r, seq);
			}
		}
		if (r->recording && (r->client || r->bidir)) {
			record_completion(r, t, r->tot_done - r->done0);
			r->t_end = t;
		}
	}
	r->last_progress = t;
	return n;
}

/* Make sure every posted WR has completed (a trailing unsignaled WR gets a signaled zero-byte
 * RDMA WRITE behind it). */
static int drain_sq(struct run *r, uint32_t q, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	struct ep_qp *p = &ep->q[q];

	if (p->sq_posted > p->sq_done && !p->last_signaled) {
		while (p->sq_posted - p->sq_done >= ep->depth) {
			if (poll_send(r, e) < 0)
				return -1;
			if (ticks() - r->last_progress > r->timeout_ticks)
				goto timeout;
		}
		if (post_one(ep, q, IBV_WR_RDMA_WRITE, NULL, 0, p->raddr, 0, 0, 1, p->data_done, e))
			return -1;
		/* data_after of the flush WR: what was posted before it */
		ep->q[q].sq_data[(p->sq_posted - 1) % ep->depth] =
			p->sq_posted >= 2 ? p->sq_data[(p->sq_posted - 2) % ep->depth] : 0;
	}
	while (p->sq_done < p->sq_posted) {
		if (poll_send(r, e) < 0)
			return -1;
		if (ticks() - r->last_progress > r->timeout_ticks)
			goto timeout;
	}
	return 0;
timeout:
	rt_set(e, RT_TIMEOUT, ETIMEDOUT,
	       "%s: QP %u: %llu of %llu send work requests completed, no progress for %d ms",
	       test_names[r->test], q, (unsigned long long)p->sq_done,
	       (unsigned long long)p->sq_posted, r->timeout_ms);
	return -1;
}

/* Post a credit (write_bw validate receiver): imm = messages checked so far. */
static int maybe_credit(struct run *r, uint32_t q, int force, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	struct bwq *s = &r->s[q];
	struct ep_qp *p = &ep->q[q];
	uint64_t step = ep->slots / 2 ? ep->slots / 2 : 1;

	if (s->recvd == s->credited || (!force && s->recvd - s->credited < step))
		return 0;
	if (p->sq_posted - p->sq_done >= ep->depth)
		return 0; /* retried on the next pass */
	if (post_one(ep, q, IBV_WR_SEND, NULL, 0, 0, 1, (uint32_t)s->recvd, 1, p->data_done, e))
		return -1;
	s->credited = s->recvd;
	return 0;
}

/* Poll the receive CQ once: data (send_bw), write-with-imm (write_bw validate), credits, markers. */
static int poll_recv(struct run *r, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	struct ibv_wc wc[POLL_BATCH];
	int n, i;

	n = ibv_poll_cq(ep->rcq, POLL_BATCH, wc);
	if (n < 0) {
		rt_set_os(e, "ibv_poll_cq(recv)", -n);
		return -1;
	}
	if (n == 0)
		return 0;
	uint64_t t = ticks();

	for (i = 0; i < n; i++) {
		uint32_t q = (uint32_t)(wc[i].wr_id >> 48);
		uint64_t widx = wc[i].wr_id & IDX_MASK;
		int has_imm = (wc[i].wc_flags & IBV_WC_WITH_IMM) != 0;
		uint32_t imm = has_imm ? ntohl(wc[i].imm_data) : 0;
		struct bwq *s;
		int data = 0;

		if (wc[i].status != IBV_WC_SUCCESS)
			return wc_failed(&wc[i], "receive", e);
		if (q >= (uint32_t)ep->nqps)
			continue;
		s = &r->s[q];
		ep->q[q].rq_done = widx + 1;
		if (wc[i].opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
			uint64_t seq = s->recvd;

			data = 1;
			if (r->validate) {
				r->validated++;
				if (imm != (uint32_t)seq ||
				    !check_pattern(slot_addr(ep, q, seq), ep->size, pattern_seed(q, seq)))
					note_corrupt(r, seq);
			}
		} else if (r->test == T_SEND_BW) {
			uint64_t seq = s->recvd;

			data = 1;
			if (r->validate) {
				r->validated++;
				if (wc[i].byte_len != ep->size ||
				    !check_pattern(slot_addr(ep, q, widx), ep->size, pattern_seed(q, seq)))
					note_corrupt(r, seq);
			}
			if (has_imm && imm == IMM_END)
				s->recv_finished = 1;
		} else if (has_imm && imm == IMM_END) {
			s->recv_finished = 1; /* write_bw validate: the writer is done */
		} else if (has_imm) {
			/* a credit: the peer has checked this many (mod 2^32) */
			s->granted += (uint32_t)(imm - (uint32_t)s->granted);
		}
		if (data) {
			s->recvd++;
			r->tot_recvd++;
			if (r->recording && !r->client && !r->bidir) {
				if (!r->have_start) {
					r->t_start = t;
					r->have_start = 1;
				}
				r->t_end = t;
				if ((r->tot_recvd - r->recvd0) % ep->cq_mod == 0)
					record_completion(r, t, r->tot_recvd - r->recvd0);
			}
		}
		if (post_recvs(ep, q, e))
			return -1;
	}
	r->last_progress = t;
	return n;
}

/*
 * One phase of a BW run: every QP sends (when this side sends) until `target` messages in total
 * per QP (iters mode) or until the duration is over, and receives (when this side receives)
 * until `target` or the peer's end marker. perftest's scheme: at most depth WRs in flight per
 * QP, QPs served round-robin, every cq_mod-th WR signaled (and the last), completions polled in
 * batches.
 */
static int bw_phase(struct run *r, uint64_t target, uint64_t dur_ticks, int record, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	const int sends = r->client || r->bidir;
	const int recvs = (r->test == T_SEND_BW && (!r->client || r->bidir)) ||
			  (r->test == T_WRITE_BW && r->validate && !r->client);
	const int credits = r->test == T_WRITE_BW && r->validate && r->client;
	const int marker = r->test == T_SEND_BW || (r->test == T_WRITE_BW && r->validate);
	const int fill = r->validate && (r->test == T_SEND_BW || r->test == T_WRITE_BW);
	uint64_t phase_base[MAX_QPS];
	uint64_t t0 = ticks(), deadline = t0 + dur_ticks; /* ticks: rdtsc is cheap, an HPET read is not */
	uint32_t q, nq = (uint32_t)ep->nqps;
	int all_done, time_up = 0;

	r->recording = record;
	if (record) {
		r->done0 = r->tot_done;
		r->recvd0 = r->tot_recvd;
	}
	for (q = 0; q < nq; q++) {
		r->s[q].send_finished = !sends || (dur_ticks == 0 && r->s[q].sent >= target);
		r->s[q].recv_finished = !recvs || (dur_ticks == 0 && r->s[q].recvd >= target);
		phase_base[q] = r->s[q].sent;
	}
	r->last_progress = t0;
	for (;;) {
		if (dur_ticks && !time_up)
			time_up = ticks() >= deadline;
		for (q = 0; q < nq; q++) {
			struct bwq *s = &r->s[q];
			struct ep_qp *p = &ep->q[q];

			while (!s->send_finished) {
				uint64_t seq = s->sent;
				int last = dur_ticks ? time_up : seq + 1 >= target;
				int need = (last && dur_ticks && r->test == T_WRITE_BW && marker) ? 2 : 1;
				int sig;
				enum ibv_wr_opcode op;
				uint64_t raddr = p->raddr + (seq % p->rslots) * p->rsize;
				uint8_t *laddr = slot_addr(ep, q, seq);

				if (p->sq_posted - p->sq_done + (uint64_t)need > ep->depth)
					break;
				if (r->validate && seq - p->data_done >= ep->slots)
					break; /* a source/landing slot is still in use */
				if (credits && seq - s->granted >= p->rslots)
					break; /* the peer has not checked that slot yet */
				if (dur_ticks && time_up && !marker && seq == phase_base[q]) {
					s->send_finished = 1; /* nothing posted in this phase */
					break;
				}
				sig = last || ((seq + 1 - phase_base[q]) % ep->cq_mod) == 0;
				if (fill) {
					fill_pattern(laddr, ep->size, pattern_seed(q, seq));
					if ((int64_t)seq == ep->corrupt_seq)
						laddr[ep->size / 2] ^= 0x5a;
				}
				if (record && !r->have_start) {
					r->t_start = ticks();
					r->have_start = 1;
				}
				if (r->test == T_READ_BW) {
					op = IBV_WR_RDMA_READ;
					if (post_one(ep, q, op, laddr, ep->size, raddr, 0, 0, sig, seq + 1, e))
						return -1;
				} else if (r->test == T_WRITE_BW) {
					op = r->validate ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE;
					if (post_one(ep, q, op, laddr, ep->size, raddr, r->validate,
						     (uint32_t)seq, sig, seq + 1, e))
						return -1;
					if (last && dur_ticks && marker &&
					    post_one(ep, q, IBV_WR_SEND, NULL, 0, 0, 1, IMM_END, 1, seq + 1, e))
						return -1;
				} else {
					int end = last && dur_ticks;

					op = end ? IBV_WR_SEND_WITH_IMM : IBV_WR_SEND;
					if (post_one(ep, q, op, laddr, ep->size, 0, end, IMM_END, sig, seq + 1, e))
						return -1;
				}
				s->sent = seq + 1;
				if (last)
					s->send_finished = 1;
			}
		}
		if (sends && poll_send(r, e) < 0)
			return -1;
		if (recvs || credits) {
			if (poll_recv(r, e) < 0)
				return -1;
			for (q = 0; q < nq; q++) {
				struct bwq *s = &r->s[q];

				if (recvs && !s->recv_finished && dur_ticks == 0 && s->recvd >= target)
					s->recv_finished = 1;
				if (r->test == T_WRITE_BW && r->validate && !r->client) {
					if (maybe_credit(r, q, s->recv_finished, e))
						return -1;
					if (ep->q[q].sq_posted > ep->q[q].sq_done && poll_send(r, e) < 0)
						return -1;
				}
			}
		}
		all_done = 1;
		for (q = 0; q < nq && all_done; q++) {
			struct bwq *s = &r->s[q];
			struct ep_qp *p = &ep->q[q];

			if (!s->send_finished || p->data_done < s->sent)
				all_done = 0;
			else if (credits && s->granted < s->sent)
				all_done = 0;
			else if (!s->recv_finished)
				all_done = 0;
			else if (r->test == T_WRITE_BW && r->validate && !r->client &&
				 s->credited < s->recvd)
				all_done = 0;
		}
		if (all_done)
			break;
		if (ticks() - r->last_progress > r->timeout_ticks) {
			for (q = 0; q < nq; q++) {
				struct bwq *s = &r->s[q];

				if (!s->send_finished || ep->q[q].data_done < s->sent ||
				    (credits && s->granted < s->sent) || !s->recv_finished)
					break;
			}
			if (q == nq)
				q = 0;
			rt_set(e, RT_TIMEOUT, ETIMEDOUT,
			       "%s %s: no progress for %d ms on QP %u (sent %llu, completed %llu, "
			       "received %llu%s)",
			       test_names[r->test], r->client ? "client" : "server", r->timeout_ms, q,
			       (unsigned long long)r->s[q].sent,
			       (unsigned long long)ep->q[q].data_done,
			       (unsigned long long)r->s[q].recvd,
			       credits ? ", waiting for credits" : "");
			return -1;
		}
	}
	for (q = 0; q < nq; q++)
		if (drain_sq(r, q, e))
			return -1;
	return 0;
}

/* Fill every slot with its pattern (read tests' server side, for the reader to check). */
static void fill_read_slots(Endpoint *ep)
{
	uint32_t q, sl;

	for (q = 0; q < (uint32_t)ep->nqps; q++)
		for (sl = 0; sl < ep->slots; sl++)
			fill_pattern(slot_addr(ep, q, sl), ep->size, pattern_seed(q, sl));
}

/* Wait for one receive completion on QP 0 (latency tests); returns its wc. */
static int wait_recv(struct run *r, struct ibv_wc *out, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	uint64_t start = ticks();
	int n;

	for (;;) {
		n = ibv_poll_cq(ep->rcq, 1, out);
		if (n > 0)
			break;
		if (n < 0) {
			rt_set_os(e, "ibv_poll_cq(recv)", -n);
			return -1;
		}
		if (ticks() - start > r->timeout_ticks) {
			rt_set(e, RT_TIMEOUT, ETIMEDOUT,
			       "%s %s: QP 0: nothing received for %d ms", test_names[r->test],
			       r->client ? "client" : "server", r->timeout_ms);
			return -1;
		}
	}
	if (out->status != IBV_WC_SUCCESS)
		return wc_failed(out, "receive", e);
	ep->q[0].rq_done = (out->wr_id & IDX_MASK) + 1;
	return post_recvs(ep, 0, e);
}

/* Room for one more WR on QP 0's send queue. */
static int sq_room(struct run *r, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	struct ep_qp *p = &ep->q[0];
	uint64_t start = ticks();

	while (p->sq_posted - p->sq_done >= ep->depth) {
		if (poll_send(r, e) < 0)
			return -1;
		if (ticks() - start > r->timeout_ticks) {
			rt_set(e, RT_TIMEOUT, ETIMEDOUT, "%s: QP 0: send queue full for %d ms",
			       test_names[r->test], r->timeout_ms);
			return -1;
		}
	}
	return 0;
}

/* write_lat / send_lat ping-pong and read_lat, on QP 0. total = warmup + iters (iters mode). */
static int lat_run(struct run *r, uint64_t dur_ticks, struct rt_err *e)
{
	Endpoint *ep = r->ep;
	struct ep_qp *p = &ep->q[0];
	const uint32_t size = ep->size;
	volatile uint8_t *poll_byte = slot_addr(ep, 0, 0) + size - 1;
	uint8_t *src = slot_addr(ep, 0, ep->slots > 1 ? 1 : 0);
	const uint64_t total = r->warmup + r->iters;
	uint64_t i, t0, t1, deadline = 0;
	struct ibv_wc wc;
	int sig;

	r->recording = 0;
	r->last_progress = ticks();
	if (r->test == T_WRITE_LAT) {
		*poll_byte = 0;
		if (r->client) {
			/* the server zeroed its byte and says so before we write into it */
			for (;;) {
				if (wait_recv(r, &wc, e))
					return -1;
				if ((wc.wc_flags & IBV_WC_WITH_IMM) && ntohl(wc.imm_data) == IMM_READY)
					break;
			}
		} else {
			if (sq_room(r, e) ||
			    post_one(ep, 0, IBV_WR_SEND, NULL, 0, 0, 1, IMM_READY, 1, p->data_done, e))
				return -1;
		}
	}
	for (i = 0;; i++) {
		uint8_t val = (uint8_t)(i + 1);
		int measured = i >= r->warmup;

		if (!dur_ticks && i >= total)
			break;
		if (i == r->warmup && dur_ticks)
			deadline = ticks() + dur_ticks;
		sig = (dur_ticks == 0 && i + 1 == total) || ((i + 1) % ep->cq_mod) == 0;
		if (r->client) {
			if (dur_ticks && measured && ticks() >= deadline) {
				if (r->test != T_READ_LAT) {
					if (sq_room(r, e) || post_one(ep, 0, IBV_WR_SEND, NULL, 0, 0, 1,
								       IMM_END, 1, p->data_done, e))
						return -1;
				}
				break;
			}
			if (r->validate && r->test != T_READ_LAT)
				fill_pattern(src, size, pattern_seed(0, i));
			if (r->validate && (int64_t)i == ep->corrupt_seq && r->test != T_READ_LAT)
				src[size / 2 < size - 1 ? size / 2 : 0] ^= 0x5a;
			if (sq_room(r, e))
				return -1;
			if (r->test == T_WRITE_LAT) {
				src[size - 1] = val;
				t0 = ticks();
				if (post_one(ep, 0, IBV_WR_RDMA_WRITE, src, size, p->raddr, 0, 0, sig, i + 1, e))
					return -1;
				uint64_t spins = 0, start = t0;

				while (*poll_byte != val) {
					if ((++spins & 1023) == 0 && ticks() - start > r->timeout_ticks) {
						rt_set(e, RT_TIMEOUT, ETIMEDOUT,
						       "write_lat client: QP 0: no reply to message %llu for %d ms",
						       (unsigned long long)i, r->timeout_ms);
						return -1;
					}
				}
				t1 = ticks();
				if (r->validate) {
					r->validated++;
					if (!check_pattern(slot_addr(ep, 0, 0), size - 1, pattern_seed(0, i)))
						note_corrupt(r, i);
				}
			} else if (r->test == T_SEND_LAT) {
				t0 = ticks();
				if (post_one(ep, 0, IBV_WR_SEND, src, size, 0, 0, 0, sig, i + 1, e))
					return -1;
				if (wait_recv(r, &wc, e))
					return -1;
				t1 = ticks();
				if (r->validate) {
					r->validated++;
					if (!check_pattern(slot_addr(ep, 0, wc.wr_id & IDX_MASK), size,
							   pattern_seed(0, i)))
						note_corrupt(r, i);
				}
			} else { /* read_lat: one READ at a time, post to completion */
				uint8_t *dst = slot_addr(ep, 0, 0);
				int n;

				t0 = ticks();
				if (post_one(ep, 0, IBV_WR_RDMA_READ, dst, size, p->raddr, 0, 0, 1, i + 1, e))
					return -1;
				do {
					n = ibv_poll_cq(ep->scq, 1, &wc);
					if (n < 0) {
						rt_set_os(e, "ibv_poll_cq(send)", -n);
						return -1;
					}
					if (n == 0 && ticks() - t0 > r->timeout_ticks) {
						rt_set(e, RT_TIMEOUT, ETIMEDOUT,
						       "read_lat client: QP 0: READ %llu not complete after %d ms",
						       (unsigned long long)i, r->timeout_ms);
						return -1;
					}
				} while (n == 0);
				t1 = ticks();
				if (wc.status != IBV_WC_SUCCESS)
					return wc_failed(&wc, "send", e);
				p->sq_done = (wc.wr_id & IDX_MASK) + 1;
				p->data_done = i + 1;
				if (r->validate) {
					r->validated++;
					if (!check_pattern(dst, size, pattern_seed(0, 0)))
						note_corrupt(r, i);
				}
			}
			if (measured) {
				if (!r->have_start) {
					r->t_start = t0;
					r->have_start = 1;
				}
				r->t_end = t1;
				r->lat_ops++;
				record_sample(r, r->test == T_READ_LAT ? ticks_span_ns(t1 - t0)
								       : ticks_span_ns(t1 - t0) / 2.0);
			}
		} else { /* server: wait for message i, answer it */
			if (r->test == T_WRITE_LAT) {
				uint64_t spins = 0, start = ticks();

				while (*poll_byte != val) {
					if ((++spins & 1023) == 0) {
						if (dur_ticks && ibv_poll_cq(ep->rcq, 1, &wc) > 0) {
							if (wc.status != IBV_WC_SUCCESS)
								return wc_failed(&wc, "receive", e);
							p->rq_done = (wc.wr_id & IDX_MASK) + 1;
							if (post_recvs(ep, 0, e))
								return -1;
							if ((wc.wc_flags & IBV_WC_WITH_IMM) &&
							    ntohl(wc.imm_data) == IMM_END)
								goto server_done;
						}
						if (ticks() - start > r->timeout_ticks) {
							rt_set(e, RT_TIMEOUT, ETIMEDOUT,
							       "write_lat server: QP 0: message %llu not "
							       "written within %d ms",
							       (unsigned long long)i, r->timeout_ms);
							return -1;
						}
					}
				}
				t0 = ticks();
				if (r->validate) {
					r->validated++;
					if (!check_pattern(slot_addr(ep, 0, 0), size - 1, pattern_seed(0, i)))
						note_corrupt(r, i);
					fill_pattern(src, size, pattern_seed(0, i));
				}
				src[size - 1] = val;
				if (sq_room(r, e) ||
				    post_one(ep, 0, IBV_WR_RDMA_WRITE, src, size, p->raddr, 0, 0, sig, i + 1, e))
					return -1;
			} else { /* send_lat */
				if (wait_recv(r, &wc, e))
					return -1;
				if ((wc.wc_flags & IBV_WC_WITH_IMM) && ntohl(wc.imm_data) == IMM_END)
					goto server_done;
				t0 = ticks();
				if (r->validate) {
					r->validated++;
					if (!check_pattern(slot_addr(ep, 0, wc.wr_id & IDX_MASK), size,
							   pattern_seed(0, i)))
						note_corrupt(r, i);
					fill_pattern(src, size, pattern_seed(0, i));
				}
				if (sq_room(r, e) ||
				    post_one(ep, 0, IBV_WR_SEND, src, size, 0, 0, 0, sig, i + 1, e))
					return -1;
			}
			if (measured) {
				if (!r->have_start) {
					r->t_start = t0;
					r->have_start = 1;
				}
				r->t_end = t0;
				r->lat_ops++;
			}
		}
	}
server_done:
	r->last_progress = ticks();
	return drain_sq(r, 0, e);
}

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

static PyObject *ep_run(Endpoint *ep, PyObject *args, PyObject *kwargs)
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
		clock_refine();
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
static PyObject *ep_inject(Endpoint *ep, PyObject *arg)
{
	long long seq = PyLong_AsLongLong(arg);

	if (seq == -1 && PyErr_Occurred())
		return NULL;
	ep->corrupt_seq = seq;
	Py_RETURN_NONE;
}

/* Test hook: flip one byte of a local slot (e.g. the read server's pattern). */
static PyObject *ep_flip(Endpoint *ep, PyObject *args)
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

/* ------------------------------------------------------------------ type */

static PyObject *ep_get_device(Endpoint *ep, void *c) { return PyUnicode_FromString(ep->devname); }
static PyObject *ep_get_mtu(Endpoint *ep, void *c)
{
	return PyLong_FromLong(ep->closed ? 0 : ep_mtu_bytes(ep));
}
static PyObject *ep_get_reg(Endpoint *ep, void *c)
{
	return PyLong_FromUnsignedLongLong(ep->mr ? (unsigned long long)ep->mr->length : 0);
}
static PyObject *ep_get_connected(Endpoint *ep, void *c) { return PyBool_FromLong(ep->connected); }
static PyObject *ep_get_closed(Endpoint *ep, void *c) { return PyBool_FromLong(ep->closed); }

#define UINT_GETTER(name, field)                                                                  \
	static PyObject *ep_get_##name(Endpoint *ep, void *c)                                     \
	{                                                                                         \
		return PyLong_FromUnsignedLong((unsigned long)ep->field);                         \
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

static PyMethodDef ep_methods[] = {
	{ "local_info", (PyCFunction)ep_local_info, METH_NOARGS,
	  "local_info() -> list of {qpn, psn, gid, lid, addr, rkey, size, slots, mtu}, one per QP" },
	{ "connect", (PyCFunction)(void (*)(void))ep_connect, METH_VARARGS | METH_KEYWORDS,
	  "connect(remote): bring every QP to RTS against the peer's local_info() list" },
	{ "run", (PyCFunction)(void (*)(void))ep_run, METH_VARARGS | METH_KEYWORDS,
	  "run(test, role, iters=0, duration_s=0.0, warmup=0, bidir=False, validate=False,\n"
	  "    max_samples=1000000, timeout_ms=10000) -> dict (see the module source header)" },
	{ "close", (PyCFunction)ep_close, METH_NOARGS, "release every verbs resource (idempotent)" },
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
	.tp_basicsize = sizeof(Endpoint),
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

int endpoint_register(PyObject *module)
{
	if (PyType_Ready(&EndpointType) < 0)
		return -1;
	Py_INCREF(&EndpointType);
	if (PyModule_AddObject(module, "Endpoint", (PyObject *)&EndpointType) < 0) {
		Py_DECREF(&EndpointType);
		return -1;
	}
	return 0;
}
