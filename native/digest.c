/* XXH3-128 streamed, the fastest build this CPU runs. (see digest.h) */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "digest.h"

#include <string.h>

#ifdef __x86_64__
void *digest_avx2_new(void);
void digest_avx2_reset(void *h);
void digest_avx2_update(void *h, const void *d, size_t n);
void digest_avx2_final(void *h, uint8_t out[16]);
#endif

static void base_reset(void *h) { XXH3_128bits_reset(h); }
static void base_update(void *h, const void *d, size_t n) { XXH3_128bits_update(h, d, n); }

static void base_final(void *h, uint8_t out[16])
{
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(h));
	memcpy(out, c.digest, 16);
}

struct impl {
	const char *name;
	void (*reset)(void *);
	void (*update)(void *, const void *, size_t);
	void (*final)(void *, uint8_t[16]);
};

static const struct impl *chosen(void)
{
	static const struct impl base = { "xxh3-128 (sse2)", base_reset, base_update, base_final };
#ifdef __x86_64__
	static const struct impl avx2 = { "xxh3-128 (avx2)", digest_avx2_reset, digest_avx2_update, digest_avx2_final };

	if (__builtin_cpu_supports("avx2"))
		return &avx2;
#endif
	return &base;
}

/* The state is the same structure in both builds: XXH3_createState's, 64-byte aligned. */
void *digest_new(void) { return XXH3_createState(); }
void digest_free(void *h) { XXH3_freeState(h); }
void digest_reset(void *h) { chosen()->reset(h); }
void digest_update(void *h, const void *data, size_t len) { chosen()->update(h, data, len); }
void digest_final(void *h, uint8_t out[16]) { chosen()->final(h, out); }
const char *digest_impl(void) { return chosen()->name; }

void digest_once(const void *data, size_t len, uint8_t out[16])
{
	void *h = digest_new();

	digest_reset(h);
	digest_update(h, data, len);
	digest_final(h, out);
	digest_free(h);
}
