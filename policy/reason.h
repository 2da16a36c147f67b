/* reason.h -- why a connection or request was refused: names and HTTP statuses */
#ifndef EGRESSD_REASON_H
#define EGRESSD_REASON_H

enum reason {
	REASON_NONE = 0,
	REASON_NOT_ALLOWED,      /* no allowNet pattern matches */
	REASON_DENIED,           /* a denyNet pattern matches */
	REASON_PRIVATE_ADDRESS,  /* resolves only to special-purpose addresses */
	REASON_PROXY_LOOP,       /* target is egressd's own listener */
	REASON_SNI_MISMATCH,     /* ClientHello SNI names another host */
	REASON_HOST_MISMATCH,    /* Host header names another host */
	REASON_PLACEHOLDER_LEAK, /* placeholder bound for an unapproved host */
	REASON_DNS_FAILURE,      /* name did not resolve */
	REASON_CONNECT_FAILED,   /* no checked address accepted the connection */
	REASON_UPSTREAM_CERT,    /* upstream certificate failed verification */
	REASON_BAD_REQUEST,      /* malformed request or target */
	REASON_UNKNOWN_SOURCE,   /* no sandbox claims the connection */
	REASON_RULE_DENIED,      /* a request rule (or rulesDefault) refuses the request */
	REASON_UNREDACTABLE_ENCODING, /* a secret's host replied in a coding egressd cannot decode */
	REASON_BODY_TOO_LARGE,   /* a body to rewrite (injection) is over the bound */
	REASON_H2_PRIOR_KNOWLEDGE, /* an HTTP/2 preface (PRI * HTTP/2.0) where HTTP/1 is read */
};

/* The reason's name as in the spec ("not-allowed"); static string. */
const char *reason_str(enum reason r);
/* The HTTP status that carries it (403, 502, 400, 421, 413). */
int reason_status(enum reason r);

#endif
