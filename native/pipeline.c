/* The file side of a transfer: the chunk order, the I/O thread, digests in the stream, the null
 * wire. (see pipeline.h) */
#define _GNU_SOURCE
#include "pipeline.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "digest.h"

#define DIRECT_ALIGN 4096u

/* ------------------------------------------------------------------ the order of the chunks */

static int64_t next_file(struct pl_sched *s)
{
	while (s->next_file < s->nfiles && s->files[s->next_file].size == 0)
		s->next_file++; /* an empty file has no chunk: it is created and digested, never moved */
	return s->next_file < s->nfiles ? (int64_t)s->next_file++ : -1;
}

void pl_sched_init(struct pl_sched *s, const struct pl_file *files, uint32_t nfiles, uint64_t chunk,
		   uint32_t parallel)
{
	uint32_t i;

	memset(s, 0, sizeof(*s));
	s->files = files;
	s->nfiles = nfiles;
	s->chunk = chunk;
	s->lanes = parallel < 1 ? 1 : parallel > PL_MAX_LANES ? PL_MAX_LANES : parallel;
	for (i = 0; i < s->lanes; i++)
		s->lane_file[i] = next_file(s);
}

int pl_sched_next(struct pl_sched *s, struct pl_piece *out)
{
	uint32_t tries;

	for (tries = 0; tries < s->lanes; tries++) {
		uint32_t l = s->cur;
		const struct pl_file *f;
		uint64_t off, len;

		s->cur = (s->cur + 1) % s->lanes;
		if (s->lane_file[l] < 0)
			continue;
		f = &s->files[s->lane_file[l]];
		off = s->lane_off[l];
		len = f->size - off < s->chunk ? f->size - off : s->chunk;
		out->file = (uint32_t)s->lane_file[l];
		out->lane = l;
		out->off = off;
		out->len = (uint32_t)len;
		out->first = off == 0;
		out->last = off + len == f->size;
		s->lane_off[l] = off + len;
		if (out->last) {
			s->lane_file[l] = next_file(s);
			s->lane_off[l] = 0;
		}
		return 1;
	}
	return 0;
}

uint64_t pl_chunks(const struct pl_file *files, uint32_t nfiles, uint64_t chunk)
{
	uint64_t n = 0;
	uint32_t i;

	for (i = 0; i < nfiles; i++)
		n += (files[i].size + chunk - 1) / chunk;
	return n;
}

/* ------------------------------------------------------------------ setup */

void pl_hex(const uint8_t d[16], char out[33])
{
	static const char hex[] = "0123456789abcdef";
	int i;

	for (i = 0; i < 16; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[32] = 0;
}

int pl_init(struct pl *p, struct rt_err *e)
{
	pthread_condattr_t ca;
	void **hs;
	uint32_t i;

	if (p->parallel < 1)
		p->parallel = 1;
	if (p->parallel > PL_MAX_LANES)
		p->parallel = PL_MAX_LANES;
	p->n = pl_chunks(p->files, p->nfiles, p->chunk);
	p->bytes = 0;
	for (i = 0; i < p->nfiles; i++)
		p->bytes += p->files[i].size;
	atomic_store(&p->done, 0);
	atomic_store(&p->stop, 0);
	atomic_store(&p->failed, 0);
	atomic_store(&p->sleeping, 0);
	p->digest = calloc(p->nfiles ? p->nfiles : 1, 16);
	hs = calloc(p->parallel, sizeof(*hs));
	p->hashers = hs;
	if (!p->digest || !hs) {
		rt_set(e, RT_NOMEM, ENOMEM, "no memory for %u digests", p->nfiles);
		return -1;
	}
	for (i = 0; i < p->parallel; i++)
		if (!(hs[i] = digest_new())) {
			rt_set(e, RT_NOMEM, ENOMEM, "no memory for a hasher");
			return -1;
		}
	for (i = 0; i < p->nfiles; i++) {
		int fl = p->files[i].fd >= 0 ? fcntl(p->files[i].fd, F_GETFL) : -1;

		p->files[i].direct = fl >= 0 && (fl & O_DIRECT);
	}
	for (i = 0; i < p->nfiles; i++)
		if (p->files[i].size == 0)
			digest_once(NULL, 0, p->digest[i]);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&p->mu, NULL);
	memset(&p->err, 0, sizeof(p->err));
	return 0;
}

void pl_free(struct pl *p)
{
	void **hs = p->hashers;
	uint32_t i;

	if (hs)
		for (i = 0; i < p->parallel; i++)
			if (hs[i])
				digest_free(hs[i]);
	free(hs);
	free(p->digest);
	p->hashers = NULL;
	p->digest = NULL;
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
}

/* ------------------------------------------------------------------ the I/O thread */

/* The thread has moved `done` or failed: wake whoever waits for it. */
static void pl_tell(struct pl *p)
{
	if (p->partner)
		pl_wake(p->partner);
	if (p->wake_fd >= 0 && atomic_load(&p->wire_sleeping)) {
		uint64_t one = 1;
		ssize_t rc = write(p->wake_fd, &one, sizeof(one));

		(void)rc; /* a full eventfd already wakes the reader */
	}
}

void pl_wake(struct pl *p)
{
	if (atomic_load(&p->sleeping)) {
		pthread_mutex_lock(&p->mu);
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
}

void pl_open_gate(struct pl *p, _Atomic uint64_t *counter, uint64_t value)
{
	atomic_store(counter, value);
	pl_wake(p);
}

static int gate_open(struct pl *p, uint64_t g)
{
	return g < atomic_load(p->gate) + p->gate_plus;
}

static int must_stop(struct pl *p)
{
	return atomic_load(&p->stop) || (p->partner && atomic_load(&p->partner->failed));
}

/* Wait until chunk g may be processed: 0, or -1 when told to stop. */
static int wait_gate(struct pl *p, uint64_t g)
{
	uint64_t t0;
	int spins;

	for (spins = 0; spins < 64; spins++)
		if (gate_open(p, g))
			return 0;
	t0 = now_ns();
	while (!gate_open(p, g)) {
		struct timespec ts;

		if (must_stop(p))
			return -1;
		pthread_mutex_lock(&p->mu);
		atomic_store(&p->sleeping, 1);
		if (!gate_open(p, g) && !must_stop(p)) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += 10 * 1000 * 1000;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&p->cv, &p->mu, &ts);
		}
		atomic_store(&p->sleeping, 0);
		pthread_mutex_unlock(&p->mu);
	}
	p->wait_ns += now_ns() - t0;
	return 0;
}

static int load(struct pl *p, const struct pl_piece *pc, uint8_t *dst)
{
	const struct pl_file *f = &p->files[pc->file];
	uint64_t want = pc->len, got = 0;

	if (f->fd < 0) {
		memcpy(dst, f->mem + pc->off, pc->len);
		return 0;
	}
	if (f->direct) /* O_DIRECT reads whole blocks; the slot has room (chunk is a multiple of 4 KiB) */
		want = (pc->len + DIRECT_ALIGN - 1) / DIRECT_ALIGN * DIRECT_ALIGN;
	while (got < pc->len) {
		ssize_t r = pread(f->fd, dst + got, want - got, (off_t)(pc->off + got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rt_set(&p->err, RT_OS, r < 0 ? errno : EIO, "pread of file %u at %llu failed: %s", pc->file,
			       (unsigned long long)(pc->off + got), r < 0 ? strerror(errno) : "the file is shorter than announced");
			return -1;
		}
		got += (uint64_t)r;
	}
	return 0;
}

static int store(struct pl *p, const struct pl_piece *pc, const uint8_t *src)
{
	struct pl_file *f = &p->files[pc->file];
	uint64_t put = 0;

	if (f->fd < 0) {
		memcpy(f->mem + pc->off, src, pc->len);
		return 0;
	}
	if (pc->len % DIRECT_ALIGN && f->direct) {
		/* the file's tail is not whole blocks: O_DIRECT would refuse it, so it is written buffered */
		int fl = fcntl(f->fd, F_GETFL);

		if (fl < 0 || fcntl(f->fd, F_SETFL, fl & ~O_DIRECT) < 0) {
			rt_set(&p->err, RT_OS, errno, "cannot clear O_DIRECT for the tail of file %u: %s", pc->file,
			       strerror(errno));
			return -1;
		}
		f->direct = 0;
	}
	while (put < pc->len) {
		ssize_t r = pwrite(f->fd, src + put, pc->len - put, (off_t)(pc->off + put));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rt_set(&p->err, RT_OS, r < 0 ? errno : EIO, "pwrite of file %u at %llu failed: %s", pc->file,
			       (unsigned long long)(pc->off + put), r < 0 ? strerror(errno) : "no progress");
			return -1;
		}
		put += (uint64_t)r;
	}
	return 0;
}

static void digest_piece(struct pl *p, const struct pl_piece *pc, const uint8_t *data)
{
	void *h = ((void **)p->hashers)[pc->lane];

	if (pc->first)
		digest_reset(h);
	digest_update(h, data, pc->len);
	if (pc->last)
		digest_final(h, p->digest[pc->file]);
}

void *pl_main(void *arg)
{
	struct pl *p = arg;
	struct pl_sched s;
	struct pl_piece pc;
	uint64_t g = 0;

	pl_sched_init(&s, p->files, p->nfiles, p->chunk, p->parallel);
	while (pl_sched_next(&s, &pc)) {
		uint8_t *slot;
		uint64_t t0;

		if (wait_gate(p, g))
			return NULL;
		t0 = now_ns();
		slot = p->slot(p, g);
		if (p->abort_after >= 0 && g >= (uint64_t)p->abort_after) {
			rt_set(&p->err, RT_OS, ECANCELED, "transfer aborted after %llu chunks (injected failure)",
			       (unsigned long long)g);
			goto fail;
		}
		if (p->role == PL_READ) {
			if (load(p, &pc, slot))
				goto fail;
			digest_piece(p, &pc, slot);
			if ((int64_t)g == p->corrupt_at)
				slot[pc.len / 2] ^= 0x5a; /* test hook: the wire carries a byte the source did not read */
		} else {
			digest_piece(p, &pc, slot);
			if (store(p, &pc, slot))
				goto fail;
		}
		p->busy_ns += now_ns() - t0;
		atomic_store(&p->done, ++g);
		pl_tell(p);
	}
	return NULL;
fail:
	atomic_store(&p->failed, 1);
	pl_tell(p);
	return NULL;
}

int pl_start(struct pl *p, struct rt_err *e)
{
	int rc = pthread_create(&p->thread, NULL, pl_main, p);

	if (rc) {
		rt_set(e, RT_OS, rc, "cannot start the I/O thread: %s", strerror(rc));
		return -1;
	}
	p->started = 1;
	return 0;
}

int pl_join(struct pl *p, struct rt_err *e)
{
	if (p->started) {
		atomic_store(&p->stop, 1);
		pthread_mutex_lock(&p->mu);
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->thread, NULL);
		p->started = 0;
	}
	if (atomic_load(&p->failed)) {
		if (e->kind == RT_OK)
			*e = p->err;
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ the null wire */

static uint8_t *ring_slot(const struct pl *p, uint64_t g)
{
	return (uint8_t *)p->slot_ctx + (g % p->nslots) * p->chunk;
}

int pl_null(struct pl_file *src, struct pl_file *dst, uint32_t nfiles, uint64_t chunk, uint32_t slots,
	    uint32_t parallel, int timeout_ms, uint8_t (*src_digest)[16], uint8_t (*dst_digest)[16],
	    struct pl_null_result *out, struct rt_err *e)
{
	struct pl r, w;
	uint8_t *buf = NULL;
	uint64_t t0;
	int rc = -1;

	(void)timeout_ms; /* no wire, nothing to wait for but the disks */
	if (chunk == 0 || chunk % DIRECT_ALIGN || slots == 0 || (uint64_t)slots * chunk > (1ull << 30)) {
		rt_set(e, RT_VALUE, 0, "chunk must be a multiple of 4096 and slots x chunk at most 1 GiB");
		return -1;
	}
	if (posix_memalign((void **)&buf, DIRECT_ALIGN, (size_t)slots * chunk)) {
		rt_set(e, RT_NOMEM, ENOMEM, "no memory for %u slots of %llu bytes", slots, (unsigned long long)chunk);
		return -1;
	}
	memset(&r, 0, sizeof(r));
	memset(&w, 0, sizeof(w));
	r.role = PL_READ;
	w.role = PL_WRITE;
	r.files = src;
	w.files = dst;
	r.nfiles = w.nfiles = nfiles;
	r.parallel = w.parallel = parallel;
	r.chunk = w.chunk = chunk;
	r.nslots = w.nslots = slots;
	r.slot = w.slot = ring_slot;
	r.slot_ctx = w.slot_ctx = buf;
	r.abort_after = w.abort_after = r.corrupt_at = w.corrupt_at = -1;
	r.wake_fd = w.wake_fd = -1;
	r.gate = &w.done;
	r.gate_plus = slots; /* the reader may run a ring ahead of the writer */
	w.gate = &r.done;
	w.gate_plus = 0;
	r.partner = &w;
	w.partner = &r;
	if (pl_init(&r, e) || pl_init(&w, e))
		goto out;
	t0 = now_ns();
	if (pl_start(&r, e))
		goto out;
	pl_main(&w); /* this thread writes */
	if (atomic_load(&w.failed))
		*e = w.err;
	if (pl_join(&r, e) || atomic_load(&w.failed))
		goto out;
	out->ns = now_ns() - t0;
	out->bytes = r.bytes;
	out->chunks = r.n;
	out->read_busy_ns = r.busy_ns;
	out->write_busy_ns = w.busy_ns;
	memcpy(src_digest, r.digest, (size_t)nfiles * 16);
	memcpy(dst_digest, w.digest, (size_t)nfiles * 16);
	rc = 0;
out:
	if (r.started)
		pl_join(&r, e);
	pl_free(&r);
	pl_free(&w);
	free(buf);
	return rc;
}
