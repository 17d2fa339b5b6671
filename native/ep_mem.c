/* The registered buffer: mmap()ed, on 2 MiB huge pages when asked, its pages preferred on the NIC's
 * NUMA node before they are first touched. (see endpoint.h)
 *
 * Placement is MPOL_PREFERRED through the mbind system call (no libnuma): the kernel puts the pages
 * on that node while it has room and elsewhere rather than failing, so ep_buf_node() reads back
 * where the pages really are (get_mempolicy MPOL_F_NODE | MPOL_F_ADDR) and the result records that,
 * not the wish. */
#include "endpoint.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
#endif
/* the kernel's mempolicy ABI (linux/mempolicy.h) */
#define RB_MPOL_PREFERRED 1
#define RB_MPOL_F_NODE 1
#define RB_MPOL_F_ADDR 2
#define HUGE_2M (2ull << 20)
#define MAX_NODES 1024

static long hugepages_free(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	long n = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "HugePages_Free: %ld", &n) == 1)
			break;
	fclose(f);
	return n;
}

int ep_buf_alloc(Endpoint *ep, struct rt_err *e)
{
	size_t page = ep->hugepages ? HUGE_2M : (size_t)sysconf(_SC_PAGESIZE);
	int flags = MAP_PRIVATE | MAP_ANONYMOUS;
	void *p;

	if (page == 0 || page == (size_t)-1)
		page = 4096;
	ep->buf_len = (size_t)ep->nqps * ep->slots * ep->size;
	ep->buf_map_len = (ep->buf_len + page - 1) / page * page;
	if (ep->hugepages)
		flags |= MAP_HUGETLB | MAP_HUGE_2MB;
	p = mmap(NULL, ep->buf_map_len, PROT_READ | PROT_WRITE, flags, -1, 0);
	if (p == MAP_FAILED) {
		int err = errno;

		if (ep->hugepages) {
			unsigned long long need = (unsigned long long)ep->buf_map_len / HUGE_2M;

			rt_set(e, RT_OS, err,
			       "--hugepages: no room for the %zu-byte buffer in 2 MiB huge pages (%llu needed, "
			       "%ld free: %s); reserve them first, as root: echo %llu > /proc/sys/vm/nr_hugepages "
			       "(that many for each end on this host)",
			       ep->buf_len, need, hugepages_free(), strerror(err), need);
			ep->buf_map_len = 0;
			return -1;
		}
		ep->buf_map_len = 0;
		rt_set(e, RT_NOMEM, err, "cannot map the %zu-byte buffer: %s", ep->buf_len, strerror(err));
		return -1;
	}
	ep->buf = p;
	if (ep->numa_node >= 0) {
		unsigned long mask[MAX_NODES / (8 * sizeof(unsigned long))];

		if (ep->numa_node >= MAX_NODES) {
			rt_set(e, RT_VALUE, 0, "NUMA node %d is out of range", ep->numa_node);
			return -1;
		}
		memset(mask, 0, sizeof(mask));
		mask[ep->numa_node / (8 * sizeof(unsigned long))] |= 1ul << (ep->numa_node % (8 * sizeof(unsigned long)));
		if (syscall(SYS_mbind, p, ep->buf_map_len, RB_MPOL_PREFERRED, mask, (unsigned long)MAX_NODES, 0)) {
			rt_set(e, RT_OS, errno, "mbind(buffer, node %d) failed: %s", ep->numa_node, strerror(errno));
			return -1;
		}
	}
	/* first touch: the pages are allocated now, on the preferred node (huge pages: SIGBUS-free,
	 * mmap reserved them) */
	memset(ep->buf, 0, ep->buf_len);
	return 0;
}

void ep_buf_free(Endpoint *ep)
{
	if (ep->buf && ep->buf_map_len)
		munmap(ep->buf, ep->buf_map_len);
	ep->buf = NULL;
	ep->buf_map_len = 0;
}

/* The node of the buffer's first, middle and last pages: that node, -2 when they differ, -1 when the
 * kernel cannot say (no NUMA support). */
int ep_buf_node(const Endpoint *ep)
{
	size_t offs[3];
	int node = -1, i;

	if (!ep->buf || !ep->buf_len)
		return -1;
	offs[0] = 0;
	offs[1] = ep->buf_len / 2;
	offs[2] = ep->buf_len - 1;
	for (i = 0; i < 3; i++) {
		int n = -1;

		if (syscall(SYS_get_mempolicy, &n, NULL, 0UL, ep->buf + offs[i], RB_MPOL_F_NODE | RB_MPOL_F_ADDR))
			return -1;
		if (i && n != node)
			return -2;
		node = n;
	}
	return node;
}
