/* grpcframe.c -- gRPC's length-prefixed messages found in a byte stream */
#include "grpcframe.h"

#include <string.h>

void grpcframe_init(struct grpcframe *g)
{
	memset(g, 0, sizeof(*g));
}

/* Prefix bytes: *ev NEED, or START once all five are in. */
static size_t read_head(struct grpcframe *g, const uint8_t *p, size_t n, enum grpcframe_ev *ev)
{
	size_t k = sizeof(g->head) - g->head_len;

	if (g->head_len == 0 && p[0] > 1) {
		*ev = GRPCFRAME_BAD;
		return 0;
	}
	k = k < n ? k : n;
	memcpy(g->head + g->head_len, p, k);
	g->head_len += k;
	*ev = GRPCFRAME_NEED;
	if (g->head_len < sizeof(g->head))
		return k;
	g->compressed = g->head[0] == 1;
	g->len = (uint32_t)g->head[1] << 24 | (uint32_t)g->head[2] << 16 |
		 (uint32_t)g->head[3] << 8 | g->head[4];
	g->left = g->len;
	g->head_len = 0;
	g->in_msg = g->len > 0;
	*ev = GRPCFRAME_START;
	return k;
}

size_t grpcframe_next(struct grpcframe *g, const uint8_t *p, size_t n, enum grpcframe_ev *ev)
{
	size_t k;

	if (!g->in_msg)
		return read_head(g, p, n, ev);
	k = g->left < n ? g->left : n;
	g->left -= (uint32_t)k;
	g->in_msg = g->left > 0;
	*ev = GRPCFRAME_BYTES;
	return k;
}

bool grpcframe_msg_done(const struct grpcframe *g)
{
	return !g->in_msg && g->head_len == 0;
}

void grpcframe_prefix(uint8_t out[5], bool compressed, uint32_t len)
{
	out[0] = compressed ? 1 : 0;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}
