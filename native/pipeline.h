/*
 * pipeline.h: the file side of a transfer, no network in it (pipeline.c). The wire loops
 * (filexfer.c) and the null wire (pl_null, pipeline.c) are built on it.
 *
 * A transfer moves a list of files (a file item is a list of one, a blob is one file held in
 * memory) as a sequence of chunks g = 0 .. n-1 of at most `chunk` bytes. The ORDER of the chunks
 * (pl_sched) is the same at both ends, computed from the sizes alone: `parallel` lanes each move
 * one file at a time, in name order, and the chunks go round-robin over the lanes (parallel = 1:
 * file after file). Chunk g lives in slot g % slots_total of the registered memory while it moves;
 * with `streams` QPs, chunk g travels on QP g % streams (see filexfer.c).
 *
 * One I/O thread per end does the disk: at the source it preads chunk g into its slot and digests
 * it; at the destination it digests the slot and pwrites it. It takes the chunks in order, and
 * only those it is allowed (g < *gate + gate_plus: the wire loop, or the other thread of a null
 * wire, moves the gate); `done` says how many it has finished. Nothing is read twice: each file's
 * XXH3-128 (the digest of rdmabench/integrity.py) is built from the bytes as they pass, one hasher
 * per lane, since a lane's chunks are in file order.
 */
#ifndef RDMABENCH_PIPELINE_H
#define RDMABENCH_PIPELINE_H

#include "common.h"

#include <pthread.h>
#include <stdatomic.h>

#define PL_MAX_LANES 64

struct pl_file {
	int fd;       /* -1: in memory */
	uint8_t *mem; /* a blob */
	uint64_t size;
	int direct;   /* opened with O_DIRECT: pl_init finds out once, not per chunk */
};

struct pl_piece {
	uint32_t file, lane;
	uint64_t off;
	uint32_t len;
	int first, last; /* the file's first and last chunk */
};

struct pl_sched {
	const struct pl_file *files;
	uint32_t nfiles, next_file, lanes, cur;
	uint64_t chunk;
	int64_t lane_file[PL_MAX_LANES]; /* -1: the lane is idle for good */
	uint64_t lane_off[PL_MAX_LANES];
};

void pl_sched_init(struct pl_sched *s, const struct pl_file *files, uint32_t nfiles, uint64_t chunk,
		   uint32_t parallel);
int pl_sched_next(struct pl_sched *s, struct pl_piece *out); /* 1: a piece, 0: no more */
uint64_t pl_chunks(const struct pl_file *files, uint32_t nfiles, uint64_t chunk);

enum pl_role { PL_READ, PL_WRITE };

struct pl {
	enum pl_role role;
	struct pl_file *files;
	uint32_t nfiles, parallel;
	uint64_t chunk, n, bytes;
	uint32_t nslots;                        /* slots in the ring: chunk g uses slot g % nslots */
	uint8_t *(*slot)(const struct pl *, uint64_t g);
	const void *slot_ctx;
	uint32_t *lens;                         /* [nslots]: length of the chunk in each slot (set by a READ end) */
	/* the gate: chunk g may be processed once g < *gate + gate_plus */
	_Atomic uint64_t *gate;
	uint64_t gate_plus;
	_Atomic uint64_t done;                  /* chunks this end's I/O thread has finished, in order */
	_Atomic int stop;                       /* the wire loop gives up: the thread returns */
	_Atomic int failed;                     /* the thread failed: err says why */
	_Atomic int sleeping;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct pl *partner;                     /* null wire: the thread to wake when done moves */
	int wake_fd;                            /* wire loops: an eventfd written when done moves while... */
	_Atomic int wire_sleeping;              /* ...the wire loop sleeps (filexfer.c) */
	struct rt_err err;
	/* digests, one per file (16 bytes, canonical) */
	uint8_t (*digest)[16];
	void *hashers;                          /* [parallel] XXH3 states */
	/* test hooks: fail after this many chunks; flip a byte of this chunk after digesting it */
	int64_t abort_after, corrupt_at;
	/* figures */
	uint64_t busy_ns, wait_ns;
	uint64_t timeout_ns;
	pthread_t thread;
	int started;
};

/* Set up (0, or -1 with e set); the caller fills files/slot/gate first. */
int pl_init(struct pl *p, struct rt_err *e);
void pl_free(struct pl *p);
int pl_start(struct pl *p, struct rt_err *e);  /* the I/O thread */
void *pl_main(void *arg);                      /* the thread's body: also run inline by pl_null */
/* Move the gate's counter (what the wire loop owns) and wake the thread if it sleeps. */
void pl_open_gate(struct pl *p, _Atomic uint64_t *counter, uint64_t value);
void pl_wake(struct pl *p);
/* Stop the thread (if started) and wait for it; its error, if any, is copied into e. */
int pl_join(struct pl *p, struct rt_err *e);
void pl_hex(const uint8_t d[16], char out[33]);

/* The null wire: src files -> a ring of `slots` x `chunk` bytes -> dst files, one reader and one
 * writer thread, digests at both ends; no network. */
struct pl_null_result {
	uint64_t bytes, chunks, ns, read_busy_ns, write_busy_ns;
};
int pl_null(struct pl_file *src, struct pl_file *dst, uint32_t nfiles, uint64_t chunk, uint32_t slots,
	    uint32_t parallel, int timeout_ms, uint8_t (*src_digest)[16], uint8_t (*dst_digest)[16],
	    struct pl_null_result *out, struct rt_err *e);

#endif
