/* jail.h -- the network namespace of `egressd run`: veth pair, addresses,
 * routes, resolv.conf, iptables redirection to egressd, and full teardown */
#ifndef EGRESSD_JAIL_H
#define EGRESSD_JAIL_H

#include <stdint.h>
#include <sys/types.h>

#include "addr.h"

#define JAIL_ERRLEN 512
#define JAIL_LOCK_FILE "/run/egressd-jail.lock" /* held while a /30 is picked */
#define JAIL_OWNER_DIR "/run/egressd-jails"     /* one lock per live jail */

struct jail;

/* Creates a fresh network namespace "egressd-<id>" with a veth pair to the
 * host namespace (IPv4 /30 out of 10.200.0.0/16, chosen so concurrent jails
 * do not collide), lo up, default route via the host end, IPv6 disabled
 * inside, and /etc/netns/<name>/resolv.conf naming the host end. Requires
 * root. On error everything made so far is removed; NULL with err. */
struct jail *jail_create(char *err);

/* The host end's address (egressd binds its transparent listener and DNS
 * responder there) and the jail's address. Borrowed. */
const struct ipaddr *jail_host_ip(const struct jail *j);
const struct ipaddr *jail_jail_ip(const struct jail *j);
const char *jail_name(const struct jail *j);
/* /var/run/netns/<name>, /etc/netns/<name>/resolv.conf (the nameserver is
 * the host end) and /etc/netns/<name>/ca-bundle.pem. Borrowed. */
const char *jail_netns_path(const struct jail *j);
const char *jail_resolv_conf(const struct jail *j);
const char *jail_bundle_path(const struct jail *j);

/* Copies the CA bundle src (in the state dir, which the command cannot
 * read) to jail_bundle_path (mode 0644, removed with the jail). 0 or -1
 * with err. */
int jail_add_bundle(struct jail *j, const char *src, char *err);

/* Host-namespace iptables rules for the jail's veth: all TCP -> REDIRECT to
 * tport, all UDP port 53 -> REDIRECT to dport, everything else from the jail
 * (other UDP, ICMP, forwarded traffic) dropped. Returns 0 or -1 with err. */
int jail_redirect(struct jail *j, uint16_t tport, uint16_t dport, char *err);

/* Kills every process left in the namespace, removes the rules, veth,
 * namespace and files made; idempotent; frees j. NULL: no-op. */
void jail_destroy(struct jail *j);

#endif
