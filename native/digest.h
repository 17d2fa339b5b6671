/*
 * digest.h: XXH3-128 (rdmabench/integrity.py's digest) for the file pipeline, streamed. The
 * AVX2 build of xxHash is used where the CPU has AVX2 (about 3x the SSE2 build's speed: one core
 * then digests faster than a 100 Gb/s link delivers), else the SSE2 build; both give the same
 * digest. digest_impl() says which one runs.
 */
#ifndef RDMABENCH_DIGEST_H
#define RDMABENCH_DIGEST_H

#include <stddef.h>
#include <stdint.h>

void *digest_new(void);
void digest_free(void *h);
void digest_reset(void *h);
void digest_update(void *h, const void *data, size_t len);
void digest_final(void *h, uint8_t out[16]); /* canonical (big-endian) bytes, as hexdigest() shows them */
void digest_once(const void *data, size_t len, uint8_t out[16]);
const char *digest_impl(void);

#endif
