/* The Endpoint object: verbs resources, construction and teardown, and its Python type. (see endpoint.h) */
#include "endpoint.h"

#include <fcntl.h>

const char *const test_names[] = { "write_bw", "read_bw", "send_bw", "write_lat",
				   "read_lat", "send_lat", "atomic_bw", "atomic_lat" };

/* ------------------------------------------------------------------ resources */

void ep_release(Endpoint *ep, struct rt_err *e)
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
	ep_buf_free(ep);
	if (ep->rcq && (rc = ibv_destroy_cq(ep->rcq)))
		rt_set_os(e, "ibv_destroy_cq(recv)", rc);
	ep->rcq = NULL;
	if (ep->scq && (rc = ibv_destroy_cq(ep->scq)))
		rt_set_os(e, "ibv_destroy_cq(send)", rc);
	ep->scq = NULL;
	if (ep->cc && (rc = ibv_destroy_comp_channel(ep->cc)))
		rt_set_os(e, "ibv_destroy_comp_channel", rc);
	ep->cc = NULL;
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
int ep_check_args(Endpoint *ep, int qps, int64_t size, int depth, int slots, int mtu, int cq_mod,
		  int inline_size, struct rt_err *e)
{
	if (qps < 1 || qps > MAX_QPS) {
		rt_set(e, RT_VALUE, 0, "qps must be between 1 and %d, got %d", MAX_QPS, qps);
		return -1;
	}
	if (size <= 0 || size > (int64_t)UINT32_MAX) {
		rt_set(e, RT_VALUE, 0, "size must be between 1 byte and 4 GiB, got %lld", (long long)size);
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
int ep_setup_verbs(Endpoint *ep, struct rt_err *e)
{
	struct ibv_device_attr dattr;
	struct ibv_port_attr pattr;
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
	ep->atomic_cap = (int)dattr.atomic_cap;
	/* outstanding RDMA READs: as many as the device allows, perftest's default (-o); the QP
	 * attribute is one byte */
	if (ep->max_rd_atomic > MAX_RD_ATOMIC)
		ep->max_rd_atomic = MAX_RD_ATOMIC;
	if (ep->max_dest_rd_atomic > MAX_RD_ATOMIC)
		ep->max_dest_rd_atomic = MAX_RD_ATOMIC;

	ep->pd = ibv_alloc_pd(ep->ctx);
	if (!ep->pd) {
		rt_set_os(e, "ibv_alloc_pd", 0);
		return -1;
	}
	cqe = (int)((uint64_t)ep->nqps * ep->depth + 16);
	if (cqe > dattr.max_cqe)
		cqe = dattr.max_cqe;
	ep->cc = ibv_create_comp_channel(ep->ctx); /* optional: without it the file loops only spin */
	if (ep->cc) {
		int fl = fcntl(ep->cc->fd, F_GETFL);

		if (fl < 0 || fcntl(ep->cc->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
			ibv_destroy_comp_channel(ep->cc);
			ep->cc = NULL;
		}
	}
	ep->scq = ibv_create_cq(ep->ctx, cqe, NULL, ep->cc, 0);
	if (!ep->scq) {
		rt_set_os(e, "ibv_create_cq(send)", 0);
		return -1;
	}
	ep->rcq = ibv_create_cq(ep->ctx, cqe, NULL, ep->cc, 0);
	if (!ep->rcq) {
		rt_set_os(e, "ibv_create_cq(recv)", 0);
		return -1;
	}
	if (ep_buf_alloc(ep, e))
		return -1;
	ep->mr = ibv_reg_mr(ep->pd, ep->buf, ep->buf_len,
			    IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
				    (ep->atomic_cap != IBV_ATOMIC_NONE ? IBV_ACCESS_REMOTE_ATOMIC : 0));
	if (!ep->mr) {
		rt_set_os(e, "ibv_reg_mr", 0);
		return -1;
	}
	return 0;
}

void ep_qp_init_attr(Endpoint *ep, struct ibv_qp_init_attr *qia)
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

/* ------------------------------------------------------------------ open */

void ep_init(Endpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
	ep->port = 1;
	ep->numa_node = -1;
	ep->corrupt_seq = -1;
}

/* Open `device`, check the options against it, make PD, CQs, buffer and the QPs (not connected). */
int ep_open(Endpoint *ep, const char *device, int gid_index, int port, int qps, int64_t size,
	    int depth, int slots, int mtu, int cq_mod, int inline_size, struct rt_err *e)
{
	struct ibv_device **devs = NULL;
	struct ibv_device *dev;
	struct ibv_port_attr pattr;
	struct ibv_qp_init_attr qia;
	int ndev = 0, rc, i;

	snprintf(ep->devname, sizeof(ep->devname), "%s", device);
	ep->port = port;
	ep->gid_index = gid_index;
	if (ep_check_knobs(ep, 0, e) || ep_check_args(ep, qps, size, depth, slots, mtu, cq_mod, inline_size, e))
		goto fail;
	if (port < 1 || port > 255) {
		rt_set(e, RT_VALUE, 0, "port must be between 1 and 255, got %d", port);
		goto fail;
	}
	if (gid_index < 0 || gid_index > 255) {
		rt_set(e, RT_VALUE, 0, "gid_index must be between 0 and 255, got %d", gid_index);
		goto fail;
	}
	errno = 0;
	devs = ibv_get_device_list(&ndev);
	if (!devs) {
		rt_set(e, RT_LOOKUP, 0, "no RDMA device named '%s'; devices here: none (%s)", device,
		       strerror(errno ? errno : ENOSYS));
		goto fail;
	}
	dev = find_device(devs, ndev, device, e);
	if (!dev)
		goto fail;
	ep->ctx = ibv_open_device(dev);
	if (!ep->ctx) {
		rt_set_os(e, "ibv_open_device", 0);
		goto fail;
	}
	ep->own_ctx = 1;
	ibv_free_device_list(devs);
	devs = NULL;
	if (ep_setup_verbs(ep, e))
		goto fail;
	rc = ibv_query_port(ep->ctx, (uint8_t)port, &pattr);
	if (rc) {
		rt_set_os(e, "ibv_query_port", rc);
		goto fail;
	}
	if (gid_index >= pattr.gid_tbl_len) {
		rt_set(e, RT_VALUE, 0, "gid_index %d is out of range: %s port %d has %d GID entries",
		       gid_index, device, port, pattr.gid_tbl_len);
		goto fail;
	}
	rc = ibv_query_gid(ep->ctx, (uint8_t)port, gid_index, &ep->gid);
	if (rc) {
		rt_set_os(e, "ibv_query_gid", rc);
		goto fail;
	}
	if (gid_is_zero(&ep->gid)) {
		rt_set(e, RT_VALUE, 0,
		       "gid_index %d is empty on %s port %d (on rxe the IPv4-mapped RoCE v2 GID is "
		       "usually index 1)",
		       gid_index, device, port);
		goto fail;
	}
	ep_qp_init_attr(ep, &qia);
	for (i = 0; i < qps; i++) {
		ep->q[i].qp = ibv_create_qp(ep->pd, &qia);
		if (!ep->q[i].qp) {
			rt_set_os(e, "ibv_create_qp", 0);
			goto fail;
		}
		ep->nqps_created = i + 1;
	}
	return 0;

fail:
	if (devs)
		ibv_free_device_list(devs);
	ep_release(ep, e);
	return -1;
}
