/* prefixbio.c -- a filter BIO in front of an SSL's socket BIO on the read
 * side: it serves bytes read before the SSL took the socket (a peeked
 * ClientHello) first, then reads through, holding nothing once they are
 * served. Used by sock.c (sock_preload). */
#include "prefixbio.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>

#include "alloc.h"

/* A filter BIO in front of the socket BIO on the read side: it serves the
 * preloaded bytes first, then reads through. */
struct prefix {
	char *p;
	size_t off, len;
};

static BIO_METHOD *prefix_method;
static pthread_once_t prefix_once = PTHREAD_ONCE_INIT;

static int prefix_read(BIO *b, char *out, int outl)
{
	struct prefix *px = BIO_get_data(b);
	int n;

	BIO_clear_retry_flags(b);
	if (px && px->off < px->len) {
		n = px->len - px->off < (size_t)outl ? (int)(px->len - px->off) : outl;
		memcpy(out, px->p + px->off, (size_t)n);
		px->off += (size_t)n;
		if (px->off == px->len) { /* served: nothing held from here on */
			free(px->p);
			px->p = NULL;
			px->off = px->len = 0;
		}
		return n;
	}
	n = BIO_read(BIO_next(b), out, outl);
	BIO_copy_next_retry(b);
	return n;
}

static int prefix_write(BIO *b, const char *in, int inl)
{
	int n = BIO_write(BIO_next(b), in, inl);

	BIO_clear_retry_flags(b);
	BIO_copy_next_retry(b);
	return n;
}

static long prefix_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct prefix *px = BIO_get_data(b);
	long more = cmd == BIO_CTRL_PENDING && px ? (long)(px->len - px->off) : 0;

	return BIO_next(b) ? more + BIO_ctrl(BIO_next(b), cmd, num, ptr) : more;
}

static int prefix_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int prefix_destroy(BIO *b)
{
	struct prefix *px = BIO_get_data(b);

	if (px)
		free(px->p);
	free(px);
	BIO_set_data(b, NULL);
	return 1;
}

static void prefix_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_FILTER, "egressd prefix");

	if (m && (!BIO_meth_set_read(m, prefix_read) || !BIO_meth_set_write(m, prefix_write) ||
		  !BIO_meth_set_ctrl(m, prefix_ctrl) || !BIO_meth_set_create(m, prefix_create) ||
		  !BIO_meth_set_destroy(m, prefix_destroy))) {
		BIO_meth_free(m);
		m = NULL;
	}
	prefix_method = m;
}

int prefixbio_push(SSL *ssl, const void *p, size_t n)
{
	BIO *sb, *f = NULL;
	struct prefix *px;
	int rc = -1;

	sb = SSL_get_rbio(ssl);
	if (pthread_once(&prefix_once, prefix_init) != 0 || !prefix_method || !sb ||
	    sb != SSL_get_wbio(ssl) || !SSL_in_before(ssl) || !(f = BIO_new(prefix_method)))
		goto out;
	px = xcalloc(1, sizeof(*px));
	px->p = xmalloc(n);
	memcpy(px->p, p, n);
	px->len = n;
	BIO_set_data(f, px);
	BIO_up_ref(sb);      /* the filter's reference; the SSL keeps its two */
	BIO_push(f, sb);
	SSL_set0_rbio(ssl, f); /* drops the SSL's read reference to sb */
	f = NULL;
	rc = 0;
out:
	BIO_free(f);
	return rc;
}

