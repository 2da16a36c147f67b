/* h2mem.h -- an nghttp2 allocator that wipes what it frees */
#ifndef EGRESSD_H2MEM_H
#define EGRESSD_H2MEM_H

#include <nghttp2/nghttp2.h>

/* For nghttp2_session_client_new3 / server_new3: plain malloc underneath
 * (sanitizers see through it), every block cleansed before free. Static,
 * shared by every session and thread (it keeps no state). */
nghttp2_mem *h2mem_wiping(void);

#endif
