/*
 * rdmabench._native: the C engine's hot paths.
 *
 * roundtrip() opens its own verbs objects on one device (pyverbs ships no .pxd,
 * so C cannot borrow pyverbs' QPs), connects two RC QPs to each other in-process,
 * moves one RDMA WRITE and one RDMA READ, verifies both byte for byte and times
 * each from post to completion.
 *
 * Errors are recorded in a plain C struct (struct rt_err) so the code that runs
 * without the GIL can fail too; the Python exception is raised once, at the end,
 * after every verbs resource has been released in reverse order of creation:
 *   OSError(errno, msg)     a verbs call failed ("ibv_modify_qp(RTR) failed: ...")
 *   TimeoutError            no completion before the deadline
 *   ValueError              a bad argument (size, port, gid_index, timeout_ms)
 *   LookupError             no device of that name; the message lists the ones here
 *
 * The shared helpers (errors, clocks, payload pattern) live in common.c/common.h;
 * the Endpoint type and its benchmark loops in endpoint.c.
 */
#include "common.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ QP setup */

struct qp_end {
	struct ibv_qp *qp;
	uint32_t psn; /* this end's send PSN; the peer's receive PSN */
};

struct path {
	uint8_t port;
	int gid_index;
	union ibv_gid gid; /* both QPs live on this port: its GID is everyone's dgid */
	uint16_t lid;      /* 0 on RoCE; set so the same code addresses an IB port */
	enum ibv_mtu active_mtu;
};

static int qp_to_init(struct ibv_qp *qp, const struct path *p, struct rt_err *e)
{
	struct ibv_qp_attr attr;
	int rc;

	memset(&attr, 0, sizeof(attr));
	attr.qp_state = IBV_QPS_INIT;
	attr.pkey_index = 0;
	attr.port_num = p->port;
	attr.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
	rc = ibv_modify_qp(qp, &attr,
			   IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
	if (rc)
		rt_set_os(e, "ibv_modify_qp(INIT)", rc);
	return rc;
}

static int qp_to_rtr(struct ibv_qp *qp, const struct qp_end *peer, const struct path *p,
		     struct rt_err *e)
{
	struct ibv_qp_attr attr;
	int rc;

	memset(&attr, 0, sizeof(attr));
	attr.qp_state = IBV_QPS_RTR;
	attr.path_mtu = p->active_mtu;
	attr.dest_qp_num = peer->qp->qp_num;
	attr.rq_psn = peer->psn;
	attr.max_dest_rd_atomic = 1; /* one RDMA READ in flight is all we post */
	attr.min_rnr_timer = 12;     /* 0.64 ms */
	roce_ah(&attr.ah_attr, &p->gid, p->gid_index, p->lid, p->port);
	rc = ibv_modify_qp(qp, &attr,
			   IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
				   IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
	if (rc)
		rt_set_os(e, "ibv_modify_qp(RTR)", rc);
	return rc;
}

static int qp_to_rts(struct qp_end *self, struct rt_err *e)
{
	struct ibv_qp_attr attr;
	int rc;

	memset(&attr, 0, sizeof(attr));
	attr.qp_state = IBV_QPS_RTS;
	attr.timeout = 14;  /* 4.096 us * 2^14 = 67 ms per retry */
	attr.retry_cnt = 7;
	attr.rnr_retry = 7; /* 7 = retry forever; the poll deadline bounds it */
	attr.sq_psn = self->psn;
	attr.max_rd_atomic = 1;
	rc = ibv_modify_qp(self->qp, &attr,
			   IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
				   IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
	if (rc)
		rt_set_os(e, "ibv_modify_qp(RTS)", rc);
	return rc;
}

static int connect_pair(struct qp_end *a, struct qp_end *b, const struct path *p, struct rt_err *e)
{
	if (qp_to_init(a->qp, p, e) || qp_to_init(b->qp, p, e))
		return -1;
	if (qp_to_rtr(a->qp, b, p, e) || qp_to_rtr(b->qp, a, p, e))
		return -1;
	if (qp_to_rts(a, e) || qp_to_rts(b, e))
		return -1;
	return 0;
}

/* ------------------------------------------------------------------ traffic */

/*
 * Post one signaled RDMA operation and poll its completion until the deadline.
 * Runs without the GIL: touches only C state. Returns 0 and the post-to-completion
 * time in *elapsed_ns, or -1 with *e set.
 */
static int post_and_wait(struct ibv_qp *qp, struct ibv_cq *cq, enum ibv_wr_opcode opcode,
			 const char *what, struct ibv_mr *local, struct ibv_mr *remote, uint32_t len,
			 uint64_t wr_id, int timeout_ms, uint64_t *elapsed_ns, struct rt_err *e)
{
	struct ibv_sge sge;
	struct ibv_send_wr wr, *bad_wr = NULL;
	struct ibv_wc wc;
	uint64_t t0, t1, deadline;
	int rc, n;

	memset(&sge, 0, sizeof(sge));
	sge.addr = (uintptr_t)local->addr;
	sge.length = len;
	sge.lkey = local->lkey;

	memset(&wr, 0, sizeof(wr));
	wr.wr_id = wr_id;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.opcode = opcode;
	wr.send_flags = IBV_SEND_SIGNALED;
	wr.wr.rdma.remote_addr = (uintptr_t)remote->addr;
	wr.wr.rdma.rkey = remote->rkey;

	t0 = now_ns();
	deadline = t0 + (uint64_t)timeout_ms * 1000000ull;
	rc = ibv_post_send(qp, &wr, &bad_wr);
	if (rc) {
		char call[64];

		snprintf(call, sizeof(call), "ibv_post_send(%s)", what);
		rt_set_os(e, call, rc);
		return -1;
	}
	for (;;) {
		n = ibv_poll_cq(cq, 1, &wc);
		t1 = now_ns();
		if (n > 0)
			break;
		if (n < 0) {
			char call[64];

			snprintf(call, sizeof(call), "ibv_poll_cq(%s)", what);
			rt_set_os(e, call, -n);
			return -1;
		}
		if (t1 >= deadline) {
			rt_set(e, RT_TIMEOUT, ETIMEDOUT,
			       "%s of %u bytes: no completion within %d ms "
			       "(check gid_index and that the port's netdev is up)",
			       what, len, timeout_ms);
			return -1;
		}
	}
	if (wc.status != IBV_WC_SUCCESS) {
		rt_set(e, RT_OS, EIO, "%s completion failed: %s (wc status %d, vendor_err 0x%x)", what,
		       ibv_wc_status_str(wc.status), (int)wc.status, wc.vendor_err);
		return -1;
	}
	if (wc.wr_id != wr_id) {
		rt_set(e, RT_OS, EIO, "%s: completion for wr_id %llu, expected %llu", what,
		       (unsigned long long)wc.wr_id, (unsigned long long)wr_id);
		return -1;
	}
	*elapsed_ns = t1 - t0;
	return 0;
}

/* ------------------------------------------------------------------ roundtrip */

struct rt_result {
	int active_mtu;
	int write_verified, read_verified;
	double write_us, read_us;
};

static int do_roundtrip(const char *devname, int gid_index, Py_ssize_t size, int port,
			int timeout_ms, struct rt_result *out, struct rt_err *e)
{
	struct ibv_device **devs = NULL;
	struct ibv_device *dev;
	struct ibv_context *ctx = NULL;
	struct ibv_device_attr dattr;
	struct ibv_port_attr pattr;
	struct ibv_pd *pd = NULL;
	struct ibv_cq *cq_a = NULL, *cq_b = NULL;
	struct qp_end a = { NULL, 0x1a2b3c }, b = { NULL, 0x4d5e6f };
	struct ibv_qp_init_attr qia;
	struct path path;
	uint8_t *buf_a = NULL, *buf_a2 = NULL, *buf_b = NULL;
	struct ibv_mr *mr_a = NULL, *mr_a2 = NULL, *mr_b = NULL;
	const int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
	long page = sysconf(_SC_PAGESIZE);
	size_t len;
	uint64_t write_ns = 0, read_ns = 0;
	int ndev = 0, rc, ok = 0;

	/* Cheap argument checks first: no device needed. */
	if (size <= 0) {
		rt_set(e, RT_VALUE, 0, "size must be at least 1 byte, got %zd", size);
		return -1;
	}
	if (port < 1 || port > 255) {
		rt_set(e, RT_VALUE, 0, "port must be between 1 and 255, got %d", port);
		return -1;
	}
	if (gid_index < 0 || gid_index > 255) {
		rt_set(e, RT_VALUE, 0, "gid_index must be between 0 and 255, got %d", gid_index);
		return -1;
	}
	if (timeout_ms <= 0) {
		rt_set(e, RT_VALUE, 0, "timeout_ms must be positive, got %d", timeout_ms);
		return -1;
	}
	if (page <= 0)
		page = 4096;

	errno = 0;
	devs = ibv_get_device_list(&ndev);
	if (!devs) {
		/* No verbs support in this kernel (ENOSYS): for the user that is "no devices". */
		rt_set(e, RT_LOOKUP, 0, "no RDMA device named '%s'; devices here: none (%s)", devname,
		       strerror(errno ? errno : ENOSYS));
		goto cleanup;
	}
	dev = find_device(devs, ndev, devname, e);
	if (!dev)
		goto cleanup;

	ctx = ibv_open_device(dev);
	if (!ctx) {
		rt_set_os(e, "ibv_open_device", 0);
		goto cleanup;
	}
	rc = ibv_query_device(ctx, &dattr);
	if (rc) {
		rt_set_os(e, "ibv_query_device", rc);
		goto cleanup;
	}
	if (port > dattr.phys_port_cnt) {
		rt_set(e, RT_VALUE, 0, "port %d does not exist on %s (it has %u port%s)", port, devname,
		       dattr.phys_port_cnt, dattr.phys_port_cnt == 1 ? "" : "s");
		goto cleanup;
	}
	rc = ibv_query_port(ctx, (uint8_t)port, &pattr);
	if (rc) {
		rt_set_os(e, "ibv_query_port", rc);
		goto cleanup;
	}
	if (pattr.state != IBV_PORT_ACTIVE) {
		rt_set(e, RT_OS, ENETDOWN, "%s port %d is not active (state %s)", devname, port,
		       ibv_port_state_str(pattr.state));
		goto cleanup;
	}
	if ((uint64_t)size > pattr.max_msg_sz) {
		rt_set(e, RT_VALUE, 0,
		       "size %zd exceeds the maximum message size of %s port %d (%u bytes)", size,
		       devname, port, pattr.max_msg_sz);
		goto cleanup;
	}
	if (gid_index >= pattr.gid_tbl_len) {
		rt_set(e, RT_VALUE, 0, "gid_index %d is out of range: %s port %d has %d GID entries",
		       gid_index, devname, port, pattr.gid_tbl_len);
		goto cleanup;
	}
	memset(&path, 0, sizeof(path));
	path.port = (uint8_t)port;
	path.gid_index = gid_index;
	path.lid = pattr.lid;
	path.active_mtu = pattr.active_mtu;
	errno = 0;
	rc = ibv_query_gid(ctx, (uint8_t)port, gid_index, &path.gid);
	if (rc) {
		rt_set_os(e, "ibv_query_gid", rc);
		goto cleanup;
	}
	if (gid_is_zero(&path.gid)) {
		rt_set(e, RT_VALUE, 0,
		       "gid_index %d is empty on %s port %d (see `ibv_devinfo -v -d %s` for the GID "
		       "table; on rxe the IPv4-mapped RoCE v2 GID is usually index 1)",
		       gid_index, devname, port, devname);
		goto cleanup;
	}
	out->active_mtu = mtu_bytes(pattr.active_mtu);

	pd = ibv_alloc_pd(ctx);
	if (!pd) {
		rt_set_os(e, "ibv_alloc_pd", 0);
		goto cleanup;
	}
	cq_a = ibv_create_cq(ctx, 4, NULL, NULL, 0);
	if (!cq_a) {
		rt_set_os(e, "ibv_create_cq(A)", 0);
		goto cleanup;
	}
	cq_b = ibv_create_cq(ctx, 4, NULL, NULL, 0);
	if (!cq_b) {
		rt_set_os(e, "ibv_create_cq(B)", 0);
		goto cleanup;
	}

	memset(&qia, 0, sizeof(qia));
	qia.qp_type = IBV_QPT_RC;
	qia.sq_sig_all = 0;
	qia.cap.max_send_wr = 4;
	qia.cap.max_recv_wr = 1;
	qia.cap.max_send_sge = 1;
	qia.cap.max_recv_sge = 1;
	qia.cap.max_inline_data = 0;
	qia.send_cq = cq_a;
	qia.recv_cq = cq_a;
	a.qp = ibv_create_qp(pd, &qia);
	if (!a.qp) {
		rt_set_os(e, "ibv_create_qp(A)", 0);
		goto cleanup;
	}
	qia.send_cq = cq_b;
	qia.recv_cq = cq_b;
	b.qp = ibv_create_qp(pd, &qia);
	if (!b.qp) {
		rt_set_os(e, "ibv_create_qp(B)", 0);
		goto cleanup;
	}

	len = (size_t)size;
	if (posix_memalign((void **)&buf_a, (size_t)page, len) ||
	    posix_memalign((void **)&buf_a2, (size_t)page, len) ||
	    posix_memalign((void **)&buf_b, (size_t)page, len)) {
		rt_set(e, RT_NOMEM, ENOMEM, "cannot allocate three %zu-byte buffers", len);
		goto cleanup;
	}
	memset(buf_a, 0, len);
	memset(buf_a2, 0, len);
	memset(buf_b, 0, len);
	mr_a = ibv_reg_mr(pd, buf_a, len, access);
	if (!mr_a) {
		rt_set_os(e, "ibv_reg_mr(A)", 0);
		goto cleanup;
	}
	mr_a2 = ibv_reg_mr(pd, buf_a2, len, access);
	if (!mr_a2) {
		rt_set_os(e, "ibv_reg_mr(A2)", 0);
		goto cleanup;
	}
	mr_b = ibv_reg_mr(pd, buf_b, len, access);
	if (!mr_b) {
		rt_set_os(e, "ibv_reg_mr(B)", 0);
		goto cleanup;
	}

	if (connect_pair(&a, &b, &path, e))
		goto cleanup;

	/* The data phase touches only C state: let other Python threads run. */
	Py_BEGIN_ALLOW_THREADS
	fill_pattern(buf_a, len, 0x9e3779b97f4a7c15ull);
	rc = post_and_wait(a.qp, cq_a, IBV_WR_RDMA_WRITE, "RDMA WRITE", mr_a, mr_b, (uint32_t)len, 1,
			   timeout_ms, &write_ns, e);
	if (rc == 0) {
		out->write_verified = memcmp(buf_a, buf_b, len) == 0;
		fill_pattern(buf_b, len, 0xd1b54a32d192ed03ull);
		rc = post_and_wait(a.qp, cq_a, IBV_WR_RDMA_READ, "RDMA READ", mr_a2, mr_b,
				   (uint32_t)len, 2, timeout_ms, &read_ns, e);
		if (rc == 0)
			out->read_verified = memcmp(buf_a2, buf_b, len) == 0;
	}
	Py_END_ALLOW_THREADS
	if (rc)
		goto cleanup;

	out->write_us = (double)write_ns / 1000.0;
	out->read_us = (double)read_ns / 1000.0;
	ok = 1;

cleanup:
	/* Reverse order of creation; a failure here is reported only if nothing failed before. */
	if (mr_b && (rc = ibv_dereg_mr(mr_b)))
		rt_set_os(e, "ibv_dereg_mr(B)", rc);
	if (mr_a2 && (rc = ibv_dereg_mr(mr_a2)))
		rt_set_os(e, "ibv_dereg_mr(A2)", rc);
	if (mr_a && (rc = ibv_dereg_mr(mr_a)))
		rt_set_os(e, "ibv_dereg_mr(A)", rc);
	free(buf_b);
	free(buf_a2);
	free(buf_a);
	if (b.qp && (rc = ibv_destroy_qp(b.qp)))
		rt_set_os(e, "ibv_destroy_qp(B)", rc);
	if (a.qp && (rc = ibv_destroy_qp(a.qp)))
		rt_set_os(e, "ibv_destroy_qp(A)", rc);
	if (cq_b && (rc = ibv_destroy_cq(cq_b)))
		rt_set_os(e, "ibv_destroy_cq(B)", rc);
	if (cq_a && (rc = ibv_destroy_cq(cq_a)))
		rt_set_os(e, "ibv_destroy_cq(A)", rc);
	if (pd && (rc = ibv_dealloc_pd(pd)))
		rt_set_os(e, "ibv_dealloc_pd", rc);
	if (ctx && (rc = ibv_close_device(ctx)))
		rt_set_os(e, "ibv_close_device", rc);
	if (devs)
		ibv_free_device_list(devs);
	return ok && e->kind == RT_OK ? 0 : -1;
}

PyDoc_STRVAR(roundtrip_doc,
"roundtrip($module, /, device, gid_index, size, port=1, timeout_ms=5000)\n"
"--\n"
"\n"
"Connect two RC QPs on one verbs device to each other, RDMA WRITE `size` bytes\n"
"from A to B and RDMA READ them back from B into A, verifying both byte for byte.\n"
"\n"
"Returns {'engine': 'native', 'device', 'gid_index', 'size', 'write_verified',\n"
"'read_verified', 'write_us', 'read_us', 'active_mtu'}; the times are post to\n"
"completion in microseconds, active_mtu is in bytes.\n"
"Raises LookupError (unknown device, lists the ones here), ValueError (bad size,\n"
"port, gid_index or timeout_ms), TimeoutError (no completion in timeout_ms) or\n"
"OSError with errno (a verbs call or a completion failed).");

static PyObject *py_roundtrip(PyObject *self, PyObject *args, PyObject *kwargs)
{
	static char *kwlist[] = { "device", "gid_index", "size", "port", "timeout_ms", NULL };
	const char *device;
	int gid_index, port = 1, timeout_ms = 5000;
	Py_ssize_t size;
	struct rt_result res;
	struct rt_err err;

	(void)self;
	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sin|ii:roundtrip", kwlist, &device,
					 &gid_index, &size, &port, &timeout_ms))
		return NULL;
	memset(&res, 0, sizeof(res));
	memset(&err, 0, sizeof(err));
	if (size > (Py_ssize_t)UINT32_MAX) {
		/* An SGE length is 32 bits; no device's max_msg_sz is larger. */
		PyErr_Format(PyExc_ValueError, "size %zd exceeds the 4 GiB limit of one RDMA message",
			     size);
		return NULL;
	}
	if (do_roundtrip(device, gid_index, size, port, timeout_ms, &res, &err))
		return rt_raise(&err);
	return Py_BuildValue("{s:s,s:s,s:i,s:n,s:O,s:O,s:d,s:d,s:i}",
			     "engine", "native",
			     "device", device,
			     "gid_index", gid_index,
			     "size", size,
			     "write_verified", res.write_verified ? Py_True : Py_False,
			     "read_verified", res.read_verified ? Py_True : Py_False,
			     "write_us", res.write_us,
			     "read_us", res.read_us,
			     "active_mtu", res.active_mtu);
}

static PyMethodDef native_methods[] = {
	{ "roundtrip", (PyCFunction)(void (*)(void))py_roundtrip, METH_VARARGS | METH_KEYWORDS,
	  roundtrip_doc },
	{ NULL, NULL, 0, NULL },
};

static struct PyModuleDef native_module = {
	PyModuleDef_HEAD_INIT,
	"_native",
	"rdmabench native hot loops: verbs objects opened and driven from C.",
	-1,
	native_methods,
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
