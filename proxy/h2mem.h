/* h2mem.h -- for every nghttp2 session egressd makes (the relay's two, the
 * bridge's one): an allocator that wipes what it frees, and the limits */
#ifndef EGRESSD_H2MEM_H
#define EGRESSD_H2MEM_H

#include <nghttp2/nghttp2.h>

/* For nghttp2_session_client_new3 / server_new3: plain malloc underneath
 * (sanitizers see through it), every block cleansed before free. Static,
 * shared by every session and thread (it keeps no state). */
nghttp2_mem *h2mem_wiping(void);
/* A new option set (the caller adds its own and deletes it) with the limits
 * every session takes: closed streams not kept, at most 8 CONTINUATION
 * frames to a header block (CVE-2024-28182), at most 1000 ACKs queued for a
 * peer that does not read, at most 32 entries in a SETTINGS frame. NULL if
 * out of memory. */
nghttp2_option *h2mem_option_new(void);

#endif
