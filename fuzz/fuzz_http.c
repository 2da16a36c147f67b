/* fuzz_http.c -- libFuzzer harness for the HTTP message stream parser
 * (requests and responses, split at an input-chosen point, pipelined) */
#include <stddef.h>
#include <stdint.h>

#include "httpmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run(enum httpmsg_kind kind, const char *d, size_t n, size_t split)
{
	struct httpmsg *m = httpmsg_new(kind, 4096);
	size_t off = 0, lim = split;

	for (int guard = 0; off < n && guard < 10000; guard++) {
		size_t used = 0;
		enum httpmsg_status s = httpmsg_feed(m, d + off, (lim > off ? lim : n) - off, &used);
		const char *v;
		size_t vl;

		off += used;
		if (lim <= off)
			lim = n;
		if (s == HTTPMSG_ERROR || s == HTTPMSG_UPGRADE)
			break;
		if (s == HTTPMSG_HEAD) {
			httpmsg_header_find(m, "host", &v, &vl);
			httpmsg_target(m, &vl);
			httpmsg_resume(m);
		} else if (s == HTTPMSG_DONE) {
			httpmsg_keep_alive(m);
			httpmsg_next(m);
		}
	}
	httpmsg_finish(m);
	httpmsg_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	run(data[0] & 1 ? HTTPMSG_RESPONSE : HTTPMSG_REQUEST, (const char *)data + 1, size - 1,
	    size > 2 ? data[1] % (size - 1) : 0);
	return 0;
}
