/* RoCE production knobs on the QPs: the traffic class (DSCP << 2 | ECN: the switch's PFC/ECN class)
 * and the service level, on both connection paths; what the device says it holds. (see endpoint.h) */
#include "endpoint.h"

int ep_check_knobs(const Endpoint *ep, int cm, struct rt_err *e)
{
	if (ep->tclass < 0 || ep->tclass > 255) {
		rt_set(e, RT_VALUE, 0, "tclass must be 0..255 (DSCP << 2 | ECN), got %d", ep->tclass);
		return -1;
	}
	if (ep->sl < 0 || ep->sl > 15) {
		rt_set(e, RT_VALUE, 0, "sl must be 0..15, got %d", ep->sl);
		return -1;
	}
	if (cm && ep->sl) {
		rt_set(e, RT_VALUE, 0,
		       "sl %d with rdma_cm: the kernel's rdma_cm picks a RoCE QP's service level from the "
		       "traffic class (and the VLAN's priority map), it cannot be set: connect out of band "
		       "for an explicit service level",
		       ep->sl);
		return -1;
	}
	return 0;
}

/* The id's type of service: rdma_cm puts it in the GRH's traffic class of the route it resolves. */
int ep_set_tos(Endpoint *ep, struct rdma_cm_id *id, struct rt_err *e)
{
	uint8_t tos = (uint8_t)ep->tclass;

	if (!ep->tclass)
		return 0; /* the kernel's default */
	if (rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_TOS, &tos, sizeof(tos))) {
		rt_set(e, RT_OS, errno ? errno : EINVAL, "rdma_set_option(TOS %u) failed: %s", tos,
		       strerror(errno ? errno : EINVAL));
		return -1;
	}
	return 0;
}

/* rdma_create_ep's active side, with the TOS set between creating the id and resolving the route
 * (rdma_create_ep resolves both at once, too early to set it). Synchronous, 2 s each as librdmacm's. */
int ep_cm_create_id(Endpoint *ep, struct rdma_addrinfo *res, struct rdma_cm_id **id, struct rt_err *e)
{
	struct rdma_cm_id *cid = NULL;
	const char *call;

	if (!ep->tclass) {
		if (rdma_create_ep(id, res, NULL, NULL) == 0)
			return 0;
		call = "rdma_create_ep";
		goto fail;
	}
	call = "rdma_create_id";
	if (rdma_create_id(NULL, &cid, NULL, (enum rdma_port_space)res->ai_port_space))
		goto fail;
	if (ep_set_tos(ep, cid, e)) {
		rdma_destroy_id(cid);
		return -1;
	}
	call = "rdma_resolve_addr";
	if (rdma_resolve_addr(cid, res->ai_src_addr, res->ai_dst_addr, 2000))
		goto fail;
	call = "rdma_resolve_route";
	if (rdma_resolve_route(cid, 2000))
		goto fail;
	*id = cid;
	return 0;
fail:
	rt_set(e, RT_OS, errno ? errno : EIO, "%s failed: %s (is the address on an RDMA device?)", call,
	       strerror(errno ? errno : EIO));
	if (cid)
		rdma_destroy_id(cid);
	return -1;
}

void ep_qp_av(const Endpoint *ep, int *traffic_class, int *sl)
{
	struct ibv_qp_attr attr;
	struct ibv_qp_init_attr init;

	*traffic_class = *sl = -1;
	if (!ep->connected || ep->closed || !ep->q || !ep->q[0].qp)
		return;
	if (ibv_query_qp(ep->q[0].qp, &attr, IBV_QP_AV, &init) == 0) {
		*traffic_class = attr.ah_attr.grh.traffic_class;
		*sl = attr.ah_attr.sl;
	}
}

const char *atomic_cap_name(int cap)
{
	switch (cap) {
	case IBV_ATOMIC_NONE:
		return "none";
	case IBV_ATOMIC_HCA:
		return "hca";
	case IBV_ATOMIC_GLOB:
		return "glob";
	default:
		return "unknown";
	}
}
