/* control_int.h -- the control API's pieces shared by control.c (the
 * socket, connections, authentication, answers) and controlapi.c (the
 * endpoints). Not for use outside proxy/control*.c: the API is control.h. */
#ifndef EGRESSD_CONTROL_INT_H
#define EGRESSD_CONTROL_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "control.h"
#include "secrets.h"

struct bufferevent;
struct event;
struct event_base;
struct evconnlistener;
struct httpmsg;

struct creq;

struct control {
	struct server *srv;
	char *path;                 /* the socket file (NULL: TCP) */
	unsigned char token[32];    /* SHA-256 of the bearer token every request needs */
	bool has_token;
	char *ca_pem;               /* egressd's CA certificate (PEM) */
	char bundle[4200];          /* STATE_DIR/ca-bundle.pem */
	char truststore[4200];      /* STATE_DIR/ca-truststore.p12 (Java) */
	unsigned char phkey[PLACEHOLDER_KEYLEN];
	control_amend_fn amend;
	void *amend_ctx;
	struct event_base *base;
	struct evconnlistener *ls;
	struct event *stop;         /* on wake_fd */
	int wake_fd;
	struct creq *reqs;          /* open control connections */
	int nreqs;
	pthread_t thread;
	bool running;
};

/* One control connection: one request, one answer, then close. */
struct creq {
	struct control *c;
	struct bufferevent *bev;
	struct httpmsg *msg;
	char *body;                 /* wiped and freed with the request */
	size_t blen, bcap;
	bool too_big;               /* the body passed CONTROL_BODY_MAX */
	bool answered;
	long uid;                   /* the peer's (SO_PEERCRED), -1 over TCP */
	struct creq *prev, *next;
};

/* Answers r with status code and the JSON value v (taken; NULL: no body),
 * extra header lines ("Name: value\r\n") or NULL; then the connection is
 * shut down once written. Counts the answer in the metrics. */
void control_reply(struct creq *r, int code, json_t *v, const char *extra);
/* {"error": msg, "path": where} (where NULL or "": no path). */
void control_reply_error(struct creq *r, int code, const char *msg, const char *where,
			 const char *extra);
/* An audit event (sandbox-put, sandbox-delete, control-refused) for the
 * peer of r: error NULL for a change done (then open >= 0 logs "closing",
 * else "created"). */
void control_log_change(const struct creq *r, const char *event, const char *name, int code,
			const char *error, long open, bool created);

/* controlapi.c: answers an authenticated request whose message is
 * complete (its body, if any, in r->body). */
void controlapi_route(struct creq *r);

#endif
