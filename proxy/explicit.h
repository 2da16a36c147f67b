/* explicit.h -- a connection on the explicit proxy listener: CONNECT or an
 * absolute-form request, checked, then a tunnel or request forwarding */
#ifndef EGRESSD_EXPLICIT_H
#define EGRESSD_EXPLICIT_H

#include <event2/util.h>

struct worker;
struct sockaddr;

/* Takes ownership of fd (closed on any failure), accepted on listener li
 * (its index among the server's listeners: it picks the sandbox). */
void explicit_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *peer, int li);

#endif
