/* addr.h -- IP addresses: strict parsing (incl. C-resolver numeric IPv4 forms),
 * IPv4-mapped normalisation, CIDR membership and the special-purpose ranges */
#ifndef EGRESSD_ADDR_H
#define EGRESSD_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/* An IPv4 address is always stored as family 4 (an IPv4-mapped IPv6 address
 * ::ffff:a.b.c.d is normalised to the IPv4 address it maps). */
struct ipaddr {
	int family;      /* 4 or 6 */
	uint8_t b[16];   /* network order; only b[0..3] for family 4 */
};

#define ADDR_STRLEN 46 /* enough for any formatted address + NUL */

/* Parses an IPv4 address written in any form inet_aton() accepts (1 to 4 parts,
 * each decimal, octal with a leading 0, or hex with 0x; the last part fills the
 * remaining bytes: "127.1", "0x7f.1", "2130706433"), and nothing else: no
 * whitespace, no trailing bytes, no empty parts. s need not be NUL-terminated.
 * Returns true and fills *out on success. */
bool addr_parse_ipv4(const char *s, size_t n, struct ipaddr *out);

/* Parses an unbracketed IPv6 address (as inet_pton). A zone index ("%eth0")
 * is rejected. ::ffff:a.b.c.d is normalised to IPv4. Returns true on success. */
bool addr_parse_ipv6(const char *s, size_t n, struct ipaddr *out);

/* Formats as dotted quad or RFC 5952 IPv6 text into buf (ADDR_STRLEN bytes). */
const char *addr_format(const struct ipaddr *a, char *buf);

/* Converts a sockaddr_in / sockaddr_in6 (mapped forms normalised); fills *port
 * if non-NULL. Returns false for other families. */
bool addr_from_sockaddr(const struct sockaddr *sa, struct ipaddr *out, uint16_t *port);

/* Fills a sockaddr_in or sockaddr_in6 (ss must hold a sockaddr_storage);
 * returns its length. */
unsigned addr_to_sockaddr(const struct ipaddr *a, uint16_t port, struct sockaddr *ss);

bool addr_equal(const struct ipaddr *a, const struct ipaddr *b);

/* true if a lies in net/prefix (same family required). */
bool addr_in_cidr(const struct ipaddr *a, const struct ipaddr *net, unsigned prefix);

/* true if every bit of a after the first prefix bits is zero. */
bool addr_host_bits_clear(const struct ipaddr *a, unsigned prefix);

/* Parses "A", "A/N", "[A]", "[A]/N" or "[A/N]" (A IPv4 or IPv6, brackets for
 * IPv6 only; no bits set after the prefix); a mapped IPv6 range
 * (::ffff:10.0.0.0/104) becomes the IPv4 range it maps. s need not be
 * NUL-terminated. Returns false with a reason in why (cap bytes). */
bool addr_parse_cidr(const char *s, size_t n, struct ipaddr *net, unsigned *prefix,
		     char *why, size_t cap);

/* true if a is special-purpose: unspecified, loopback, RFC 1918, CGNAT,
 * link-local (incl. 169.254.169.254), IETF protocol assignments, benchmarking,
 * multicast, reserved/broadcast; for IPv6 also ULA, link-/site-local, multicast,
 * discard-only, and the IPv4 embedded in NAT64 / 6to4 / IPv4-compatible forms
 * is checked as IPv4. Documentation ranges (192.0.2.0/24, 198.51.100.0/24,
 * 203.0.113.0/24, 2001:db8::/32) are NOT special (see README). */
bool addr_is_special(const struct ipaddr *a);

#endif
