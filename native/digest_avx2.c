/* The AVX2 build of xxHash's XXH3-128, for digest.c to pick at run time. (see digest.h) */
#ifdef __x86_64__
#pragma GCC target("avx2")
#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX2
#include <xxhash.h>
#include <stdint.h>
#include <string.h>

void *digest_avx2_new(void) { return XXH3_createState(); }
void digest_avx2_reset(void *h) { XXH3_128bits_reset(h); }
void digest_avx2_update(void *h, const void *d, size_t n) { XXH3_128bits_update(h, d, n); }

void digest_avx2_final(void *h, uint8_t out[16])
{
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(h));
	memcpy(out, c.digest, 16);
}
#endif
