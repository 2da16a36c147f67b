/* pattern.h -- allowNet/denyNet patterns and targets: parsing and matching */
#ifndef EGRESSD_PATTERN_H
#define EGRESSD_PATTERN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define PATTERN_ERRLEN 256
#define HOST_MAX 253

/* A normalised destination: a lower-case name without trailing dot, or an IP
 * address (any numeric IPv4 form, bracketed IPv6, mapped IPv4 all become ip). */
struct target {
	bool is_ip;
	char host[HOST_MAX + 1]; /* name, or the formatted address if is_ip */
	struct ipaddr ip;        /* valid if is_ip */
	uint16_t port;           /* 1..65535 */
};

struct pattern;

/* Parses one pattern (see SPEC "allowNet patterns"). s is n bytes, not
 * necessarily NUL-terminated. On success returns a new pattern (free with
 * pattern_free) ; on error returns NULL and writes a one-line message naming
 * the offending pattern into err (PATTERN_ERRLEN bytes). */
struct pattern *pattern_parse(const char *s, size_t n, char *err);
void pattern_free(struct pattern *p);

/* The pattern as written by the user (borrowed, lives as long as p). */
const char *pattern_text(const struct pattern *p);
/* The pattern's port, or 0 for any port. */
uint16_t pattern_port(const struct pattern *p);
/* true for IP and CIDR patterns. */
bool pattern_is_ip(const struct pattern *p);

/* Does p match target t (name patterns match names, IP patterns match IP
 * targets; the port, if the pattern has one, must equal t->port)? */
bool pattern_match_target(const struct pattern *p, const struct target *t);
/* Does IP/CIDR pattern p name address a on port? Name patterns: false. */
bool pattern_match_addr(const struct pattern *p, const struct ipaddr *a, uint16_t port);

/* Normalises host (n bytes, no port, IPv6 may be bracketed or not) with port
 * into *t. Same validity rules as patterns (labels, lengths, all-digit last
 * label must be IPv4, no zone, no Unicode). Returns true or writes err. */
bool target_from_host(const char *host, size_t n, uint16_t port, struct target *t, char *err);

/* Parses an authority "host:port", "[v6]:port", or "host" (then default_port;
 * default_port 0 means the port is required), as in CONNECT, a Host header or
 * a `check` argument. Rejects userinfo, paths, empty host, port 0 / >65535 /
 * non-digits. Returns true or writes err. */
bool target_parse_authority(const char *s, size_t n, uint16_t default_port,
			    struct target *t, char *err);

/* A list of patterns in the order given. */
struct patlist;

struct patlist *patlist_new(void);
void patlist_free(struct patlist *l);
/* Adds the comma-separated patterns in s ("" adds none). Whitespace around
 * commas is not allowed to hide anything: each item is parsed strictly.
 * Returns true, or false with err set (list unchanged on error). */
bool patlist_add_csv(struct patlist *l, const char *s, char *err);
/* Takes ownership of p. */
void patlist_add(struct patlist *l, struct pattern *p);
size_t patlist_len(const struct patlist *l);
const struct pattern *patlist_get(const struct patlist *l, size_t i);
/* First pattern matching t / naming a on port, or NULL. Borrowed. */
const struct pattern *patlist_match_target(const struct patlist *l, const struct target *t);
const struct pattern *patlist_match_addr(const struct patlist *l, const struct ipaddr *a,
					 uint16_t port);

#endif
