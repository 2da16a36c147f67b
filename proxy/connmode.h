/* connmode.h -- what egressd does with a connection's bytes: the one notion of
 * a connection's mode, kept in struct conn, labelling the metrics
 * (egressd_connections_total{mode}) and deriving the log's "mode"/"intercept".
 * How the connection arrived (explicit or transparent listener) is separate. */
#ifndef EGRESSD_CONNMODE_H
#define EGRESSD_CONNMODE_H

enum conn_mode {
	MODE_NONE,        /* not decided yet; a connection that ends so (bad head,
			   * timeout, 503, hung up while the upstream was reached) */
	MODE_CONNECT,     /* CONNECT tunnel, untouched */
	MODE_HTTP,        /* absolute-form plain HTTP on the explicit listener */
	MODE_INTERCEPT,   /* TLS terminated by egressd (CONNECT or transparent) */
	MODE_ORIGIN,      /* transparent plain HTTP, checked request by request */
	MODE_TRANSPARENT, /* transparent, tunnelled untouched */
	MODE_COUNT,
};

#endif
