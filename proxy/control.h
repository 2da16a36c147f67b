/* control.h -- the control API: sandboxes created, listed and deleted at
 * runtime over HTTP/1.1 + JSON on a unix socket (--control unix:PATH), on
 * a thread and event loop of its own */
#ifndef EGRESSD_CONTROL_H
#define EGRESSD_CONTROL_H

#include <stdbool.h>

struct policy;
struct server;

#define CONTROL_ERRLEN 256
#define CONTROL_BODY_MAX (1 << 20) /* a larger request body gets 413 */

/* Amends an API sandbox's policy as the command line's policy options
 * amend every sandbox's (--deny-net, --resolve, ...): true, or false with
 * err (CONTROL_ERRLEN bytes). Called on the control thread. */
typedef bool (*control_amend_fn)(void *ctx, struct policy *p, char *err);

struct control;

/* Binds the control socket spec for server s (borrowed; outlives the
 * control): "unix:PATH" (created mode 0600, a stale socket at PATH
 * replaced), or "IP:PORT" over TCP (port 0: any), which needs token_file.
 * token_file (NULL: none): its first line is a bearer token (16 bytes at
 * least) every request must carry, compared in constant time; 401 without.
 * state_dir: the CA and placeholder key (as serve's). amend may be NULL.
 * Returns NULL with err (CONTROL_ERRLEN bytes). */
struct control *control_new(struct server *s, const char *spec, const char *token_file,
			    const char *state_dir, control_amend_fn amend, void *amend_ctx,
			    char *err);
/* Starts answering on the control thread; control_stop ends it (and its
 * open requests). */
void control_start(struct control *c);
void control_stop(struct control *c);
/* Stops, removes the socket file, frees. NULL: no-op. */
void control_free(struct control *c);

#endif
