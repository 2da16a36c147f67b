/* psl.h -- the Public Suffix List (Debian's publicsuffix package): parsing
 * its .dat text and finding a host name's registrable domain */
#ifndef EGRESSD_PSL_H
#define EGRESSD_PSL_H

#include <stdbool.h>
#include <stddef.h>

#define PSL_DEFAULT_PATH "/usr/share/publicsuffix/public_suffix_list.dat"
#define PSL_ERRLEN 256
#define PSL_MAX_RULES 100000 /* more rules than that: an error */

struct psl;

/* Parses the list's text (len bytes, need not be NUL-terminated): one rule
 * per line ("com", "*.ck", "!www.ck"), "//" comments, blank lines; a rule
 * ends at the first white space. Rules are compared case-insensitively;
 * rules that are not ASCII (IDN in UTF-8) are kept but match only the same
 * bytes. Returns a new list (caller frees with psl_free), or NULL with a
 * message in err (PSL_ERRLEN bytes): an empty rule set, a line over 255
 * bytes, a rule with an empty label, or more than PSL_MAX_RULES rules. */
struct psl *psl_parse(const char *text, size_t len, char *err);
/* Reads and parses the file at path. NULL with err (errno's text when the
 * file cannot be read). */
struct psl *psl_load(const char *path, char *err);
void psl_free(struct psl *l); /* NULL: no-op */
size_t psl_rule_count(const struct psl *l);

/* The registrable domain of host (the public suffix plus one label, as the
 * list's algorithm says: exception rules first, then the longest matching
 * rule, "*" when none matches) into out (cap bytes, lower case, no trailing
 * dot). False when host is itself a public suffix, is empty or malformed
 * (an empty label), or the result does not fit. */
bool psl_registrable(const struct psl *l, const char *host, char *out, size_t cap);

#endif
