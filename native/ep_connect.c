/* Out-of-band connection: our QPs' facts out, the peer's in, each QP to RTS. (see endpoint.h) */
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
	attr.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
			       (ep->atomic_cap != IBV_ATOMIC_NONE ? IBV_ACCESS_REMOTE_ATOMIC : 0);
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
	attr.ah_attr.grh.traffic_class = (uint8_t)ep->tclass; /* DSCP << 2 | ECN: the fabric's class */
	attr.ah_attr.sl = (uint8_t)ep->sl;
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

void ep_local_qp(const Endpoint *ep, int i, struct remote_qp *out)
{
	memset(out, 0, sizeof(*out));
	out->qpn = ep->q[i].qp->qp_num;
	out->psn = ep->q[i].psn;
	out->gid = ep->gid;
	out->lid = ep->lid;
	out->addr = (uint64_t)(uintptr_t)slot_addr(ep, (uint32_t)i, 0);
	out->rkey = ep->mr->rkey;
	out->size = ep->size;
	out->slots = ep->slots;
	out->mtu = (uint32_t)ep_mtu_bytes((Endpoint *)ep);
	out->rd_atomic = ep->max_dest_rd_atomic; /* RDMA READs this end answers at once: the peer's READ depth */
}

int ep_connect_qps(Endpoint *ep, const struct remote_qp *r, int n, struct rt_err *e)
{
	int i;

	if (n != ep->nqps) {
		rt_set(e, RT_VALUE, 0, "remote describes %d QPs, this endpoint has %d", n, ep->nqps);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (r[i].slots == 0 || r[i].size == 0) {
			rt_set(e, RT_VALUE, 0, "remote[%d] has no slots", i);
			return -1;
		}
		if (r[i].size < ep->size) {
			rt_set(e, RT_VALUE, 0, "remote[%d] slots are %llu bytes, smaller than this size (%u)",
			       i, (unsigned long long)r[i].size, ep->size);
			return -1;
		}
	}
	for (i = 0; i < n; i++)
		if (qp_modify_connect(ep, (uint32_t)i, &r[i], e))
			return -1;
	ep->connected = 1;
	return 0;
}
