/* rdma_cm connection: one rdma_cm connection per QP, the buffer's address in the private data. (see endpoint.h) */
#include "endpoint.h"

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
		rc = ep_cm_create_id(ep, res, &id, e); /* the TOS set before the route */
		rdma_freeaddrinfo(res);
		if (rc)
			return -1;
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
	if (ep_set_tos(ep, lid, e))
		goto out;
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

/* Open and connect through rdma_cm: listen for (or connect to) `qps` connections on ip:port. */
int ep_cm_open(Endpoint *ep, int listen, const char *ip, int port, int qps, int64_t size, int depth,
	       int slots, int cq_mod, int inline_size, int timeout_ms, struct rt_err *e)
{
	char portstr[16];
	int rc;

	if (port < 1 || port > 65535 || timeout_ms <= 0) {
		rt_set(e, RT_VALUE, 0, "port must be 1..65535 and timeout_ms positive (got %d, %d)", port,
		       timeout_ms);
		return -1;
	}
	if (ep_check_knobs(ep, 1, e) || ep_check_args(ep, qps, size, depth, slots, 0, cq_mod, inline_size, e)) {
		ep_release(ep, e);
		return -1;
	}
	snprintf(portstr, sizeof(portstr), "%d", port);
	rc = listen ? do_cm_listen(ep, ip, portstr, timeout_ms, e)
		    : do_cm_connect(ep, ip, portstr, timeout_ms, e);
	if (rc) {
		ep_release(ep, e);
		return -1;
	}
	ep->connected = 1;
	return 0;
}
