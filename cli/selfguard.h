/* selfguard.h -- egressd's own process made unreadable to others: not
 * dumpable, and its environment block (/proc/<pid>/environ) wiped */
#ifndef EGRESSD_SELFGUARD_H
#define EGRESSD_SELFGUARD_H

/* Call first in main, before any thread and before any getenv result is
 * kept. Makes the process non-dumpable (PR_SET_DUMPABLE 0: no core file, its
 * /proc/<pid> files owned by root, no ptrace without CAP_SYS_PTRACE); copies
 * every environment string into one private mapping (excluded from core
 * dumps, locked in memory when allowed) and points environ at the copy, so
 * getenv, setenv and a SIGHUP reload's valueFromEnv keep working; then
 * overwrites the original strings -- the block /proc/<pid>/environ reads --
 * with NUL bytes. Aborts if the copy cannot be allocated. */
void selfguard_init(void);

#endif
