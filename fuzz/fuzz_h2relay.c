/* fuzz_h2relay.c -- libFuzzer harness for the HTTP/2 relay: records
 * [side|len hi, len lo, bytes] fed from the sandbox (after the client
 * preface) and from the upstream, with injection and redaction on (the
 * secrets of tests/unit/h2relay_test.c, so its captured seeds hit them);
 * byte 0 picks request rules, leak blocking, a sandbox that reads nothing
 * and a host without secrets. The relay must never hold more than its
 * bounds allow, and a secret's value must never be in a DATA frame to the
 * sandbox from its host, unless the placeholder itself completes it: text
 * ending in the value's first bytes, then the placeholder, when the value
 * ends with the placeholder's first bytes ("...valu" + "egressd-ph-..."
 * holds "...value"; the sandbox learns nothing it did not have). Header
 * blocks are not checked: HPACK's Huffman code can hold the value's bytes
 * without the decoded fields holding it (and the reverse). */
#include <stdlib.h>
#include <string.h>
#include <nghttp2/nghttp2.h>
#include "h2relay.h"
#include "pattern.h"
#include "policy.h"
#include "secrets.h"
static struct policy *pol[2];
static struct secretset *set[2];
/* Is there a raw value in p[0..n) that no placeholder overlaps? */
static bool raw_value(const uint8_t *p, size_t n, const char *v, const char *ph)
{
	size_t vl = strlen(v);
	for (const uint8_t *at = p; (at = memmem(at, n - (size_t)(at - p), v, vl)); at++) {
		size_t left = n - (size_t)(at - p) - 1, w = vl + strlen(ph) < left ? vl + strlen(ph) : left;
		const uint8_t *q = memmem(at + 1, w, ph, strlen(ph));
		if (!q || q >= at + vl)
			return true;
	}
	return false;
}
#define VALUE "sk-test-0123456789abcdef-value"
static ssize_t sink(void *ctx, enum h2relay_side side, const uint8_t *p, size_t n)
{
	uint8_t flags = *(const uint8_t *)ctx;
	for (size_t o = 0, l; side == H2_SANDBOX && !(flags & 8) && o + 9 <= n; o += 9 + l) {
		l = (size_t)p[o] << 16 | (size_t)p[o + 1] << 8 | p[o + 2]; /* whole frames each call */
		if (p[o + 3] == NGHTTP2_DATA && raw_value(p + o + 9, l < n - o - 9 ? l : n - o - 9, VALUE,
							   secretset_placeholder(set[0], 0)))
			abort();
	}
	return flags & 4 && side == H2_SANDBOX ? 0 : (ssize_t)n;
}
static uint64_t still(void *ctx) /* a clock that never moves: deterministic idle-frame bucket */
{
	return (void)ctx, 0;
}
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned char key[PLACEHOLDER_KEYLEN] = "0123456789abcdef0123456789abcde";
	char err[SECRETS_ERRLEN];
	const char *get = "GET";
	struct target t;
	struct h2relay_conf conf = { &t, NULL, NULL, 0, false, { 0 } };
	struct h2relay_cbs cbs = { (void *)data, sink, NULL, still };
	struct h2relay *r;
	for (int i = 0; !pol[1] && i < 2; i++) {
		struct ruleset *rs = ruleset_new();
		struct patlist *h = patlist_new();
		pol[i] = policy_new();
		policy_add_secret(pol[i], "API_KEY", "api.test", SECRET_VALUE, VALUE, err);
		policy_add_secret(pol[i], "OTHER_KEY", "other.test", SECRET_VALUE, "other-test-value-9876543210", err);
		patlist_add_csv(h, "api.test", err);
		ruleset_add(rs, h, &get, 1, "^/allowed", 9, true, err);
		i ? policy_set_rules(pol[i], rs, err) : (ruleset_free(rs), true);
		set[i] = secretset_load(pol[i], key, err);
	}
	if (size < 1 || !target_parse_authority("api.test", 8, 443, &t, err))
		return 0;
	conf.pol = pol[data[0] & 1], conf.ss = data[0] & 8 ? NULL : set[data[0] & 1];
	conf.leak_block = data[0] & 2;
	conf.approved = secretset_approved(conf.ss, conf.pol, &t);
	h2relay_limits_default(&conf.lim);
	conf.lim.stream_buf = 65535, conf.lim.conn_buf = 131072, conf.lim.max_streams = 8;
	conf.lim.header_list = 8192, conf.lim.idle_burst = 200;
	r = h2relay_new(&conf, &cbs);
	h2relay_feed(r, H2_SANDBOX, (const uint8_t *)NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN);
	for (size_t off = 1; off + 2 <= size;) {
		size_t n = (size_t)(data[off] >> 1) << 8 | data[off + 1];
		enum h2relay_side side = data[off] & 1 ? H2_UPSTREAM : H2_SANDBOX;
		off += 2, n = n < size - off ? n : size - off;
		h2relay_feed(r, side, data + off, n);
		off += n;
		if (h2relay_buffered(r) > 4 * conf.lim.conn_buf + 65536) /* 2 queues + redaction growth */
			abort();
	}
	h2relay_free(r);
	return 0;
}
