/* runas.h -- who `egressd run`'s command runs as (the sudo user, or --user)
 * and dropping to it for good: groups, gid, uid, no capability ever again */
#ifndef EGRESSD_RUNAS_H
#define EGRESSD_RUNAS_H

#include <sys/types.h>

#define RUNAS_ERRLEN 512

struct runas;

/* spec is --user's "USER[:GROUP]" (each a name or a number; GROUP defaults
 * to USER's primary group), or NULL: the user who started egressd through
 * sudo (SUDO_UID, SUDO_GID, supplementary groups of SUDO_USER). Looks up
 * the passwd and group databases (call before any thread starts). NULL with
 * err if the user or group is unknown, or if spec is NULL and egressd was
 * not started through sudo (CMD would run as root). Caller frees. */
struct runas *runas_new(const char *spec, char *err);
void runas_free(struct runas *r); /* NULL: no-op */

uid_t runas_uid(const struct runas *r);
gid_t runas_gid(const struct runas *r);
/* The user's name and home directory from the passwd entry (the number as
 * text and "/" when it has none). Borrowed, valid until runas_free. */
const char *runas_name(const struct runas *r);
const char *runas_home(const struct runas *r);

/* Becomes r for good, in a child about to exec (raw system calls only: safe
 * after a raw clone of a threaded process). Order: securebits so that uid 0
 * never regains capabilities (NOROOT, NO_SETUID_FIXUP, KEEP_CAPS off,
 * NO_CAP_AMBIENT_RAISE, all locked), bounding set emptied, ambient set
 * cleared, supplementary groups, gid, uid, then effective, permitted and
 * inheritable sets emptied and PR_SET_NO_NEW_PRIVS. Needs CAP_SETPCAP,
 * CAP_SETUID and CAP_SETGID. Returns 0, or -1 with errno set and *step
 * naming what failed (static string). */
int runas_apply(const struct runas *r, const char **step);

#endif
