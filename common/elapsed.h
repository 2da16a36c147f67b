/* elapsed.h -- time since a moment taken with gettimeofday(2): milliseconds
 * for log lines and timeouts, microseconds for the metrics histograms */
#ifndef EGRESSD_ELAPSED_H
#define EGRESSD_ELAPSED_H

#include <stdint.h>
#include <sys/time.h>

/* Milliseconds from *since to now: whole seconds times 1000 plus the
 * microsecond difference divided by 1000 (truncated); negative if *since
 * is in the future. */
long elapsed_ms(const struct timeval *since);
/* Microseconds from *since to now; 0 if *since is not in the past. */
uint64_t elapsed_usec(const struct timeval *since);

#endif
