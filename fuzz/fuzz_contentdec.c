/* fuzz_contentdec.c -- libFuzzer harness for the content decoder chain: byte
 * 0 picks one or two codings, byte 1 the input piece and output buffer sizes;
 * the rest is the stream. It must never crash, overrun, stall (MORE without
 * progress) or go on after an error; output is capped at 1 MiB per input. */
#include <stdint.h>
#include <stdlib.h>

#include "contentdec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum contentdec_coding cs[2];
	struct contentdec *d;
	char out[4096];
	size_t off = 2, step, cap, total = 0;
	enum contentdec_status r = CONTENTDEC_NEED_MORE;

	if (size < 2)
		return 0;
	cs[0] = (enum contentdec_coding)(data[0] & 3);
	cs[1] = (enum contentdec_coding)(data[0] >> 2 & 3);
	step = (size_t)(data[1] & 15) * 97 + 1;
	cap = (size_t)(data[1] >> 4) * 255 + 1;
	d = contentdec_new(cs, data[0] & 16 ? 2 : 1);
	while (r != CONTENTDEC_DONE && r != CONTENTDEC_ERROR && total < (1u << 20)) {
		size_t lim = size - off < step ? size : off + step, used, made;
		r = contentdec_feed(d, (const char *)data + off, lim - off, &used, out, cap, &made,
				    lim == size);
		if (used > lim - off || made > cap || (r == CONTENTDEC_MORE && !used && !made))
			abort();
		if (r == CONTENTDEC_NEED_MORE && (used != lim - off || lim == size))
			abort();
		off += used;
		total += made;
	}
	if (r == CONTENTDEC_ERROR && contentdec_feed(d, "", 0, &off, out, cap, &total, true) !=
					     CONTENTDEC_ERROR)
		abort();
	contentdec_free(d);
	return 0;
}
