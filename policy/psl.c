/* psl.c -- the Public Suffix List: rules parsed from the .dat text into a
 * hash set, and the registrable domain of a name by the list's algorithm */
#include "psl.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "errmsg.h"

#define LINE_MAX_LEN 255
#define NAME_MAX_LEN 253
#define FILE_MAX (16u << 20) /* a list file over 16 MiB is refused */

enum { R_NORMAL = 1, R_WILD = 2, R_EXCEPT = 4 };

struct entry {
	char *s;        /* the rule's name part (no "*." or "!"), lower case */
	unsigned flags; /* R_ bits: the kinds of rule with this name */
};

struct psl {
	struct entry *tab; /* open addressing; s NULL = free slot */
	size_t cap;        /* a power of two */
	size_t used;       /* distinct names */
	size_t rules;      /* rules parsed */
};

#define seterr(err, ...) errmsg_set((err), PSL_ERRLEN, __VA_ARGS__)

static uint64_t hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
	return h;
}

static struct entry *slot(const struct psl *l, const char *s, size_t n)
{
	size_t i = (size_t)hash(s, n) & (l->cap - 1);

	while (l->tab[i].s && (strlen(l->tab[i].s) != n || memcmp(l->tab[i].s, s, n) != 0))
		i = (i + 1) & (l->cap - 1);
	return &l->tab[i];
}

static void grow(struct psl *l)
{
	struct entry *old = l->tab;
	size_t ocap = l->cap;

	l->cap = ocap ? ocap * 2 : 1024;
	l->tab = xcalloc(l->cap, sizeof(*l->tab));
	for (size_t i = 0; i < ocap; i++)
		if (old[i].s)
			*slot(l, old[i].s, strlen(old[i].s)) = old[i];
	free(old);
}

static void add(struct psl *l, const char *s, size_t n, unsigned kind)
{
	struct entry *e;

	if ((l->used + 1) * 2 > l->cap)
		grow(l);
	e = slot(l, s, n);
	if (!e->s) {
		e->s = xstrndup(s, n);
		l->used++;
	}
	e->flags |= kind;
}

static unsigned flags_of(const struct psl *l, const char *s, size_t n)
{
	return l->cap ? slot(l, s, n)->flags : 0;
}

/* A name of labels: not empty, no empty label. */
static bool labels_ok(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 1; i < n; i++)
		if (s[i] == '.' && s[i - 1] == '.')
			return false;
	return true;
}

/* One rule (line already cut at white space); 0, or -1 with err. */
static int parse_rule(struct psl *l, const char *r, size_t n, size_t lineno, char *err)
{
	char low[LINE_MAX_LEN + 1];
	unsigned kind = R_NORMAL;

	for (size_t i = 0; i < n; i++)
		low[i] = (r[i] >= 'A' && r[i] <= 'Z') ? (char)(r[i] - 'A' + 'a') : r[i];
	r = low;
	if (n >= 1 && r[0] == '!') {
		kind = R_EXCEPT;
		r++, n--;
	} else if (n >= 2 && r[0] == '*' && r[1] == '.') {
		kind = R_WILD;
		r += 2, n -= 2;
	}
	if (!labels_ok(r, n)) {
		seterr(err, "line %zu: a rule with an empty label", lineno);
		return -1;
	}
	if (++l->rules > PSL_MAX_RULES) {
		seterr(err, "more than %d rules", PSL_MAX_RULES);
		return -1;
	}
	add(l, r, n, kind);
	return 0;
}

struct psl *psl_parse(const char *text, size_t len, char *err)
{
	struct psl *l = xcalloc(1, sizeof(*l)), *ret = NULL;
	size_t pos = 0, lineno = 0;

	while (pos < len) {
		const char *line = text + pos, *nl = memchr(line, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - line) : len - pos, rl = 0;

		pos += ll + (nl ? 1 : 0);
		lineno++;
		if (ll > LINE_MAX_LEN) {
			seterr(err, "line %zu: longer than %d bytes", lineno, LINE_MAX_LEN);
			goto out;
		}
		while (rl < ll && line[rl] != ' ' && line[rl] != '\t' && line[rl] != '\r')
			rl++;
		if (rl == 0 || (rl >= 2 && line[0] == '/' && line[1] == '/'))
			continue;
		if (parse_rule(l, line, rl, lineno, err) < 0)
			goto out;
	}
	if (l->rules == 0) {
		seterr(err, "no rules");
		goto out;
	}
	ret = l;
	l = NULL;
out:
	psl_free(l);
	return ret;
}

struct psl *psl_load(const char *path, char *err)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t n = 0, cap = 0;
	struct psl *l = NULL;
	char e[PSL_ERRLEN];

	if (!f) {
		seterr(err, "%s: %s", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		size_t k;
		if (n == cap) {
			cap = cap ? cap * 2 : 256 * 1024;
			buf = xrealloc(buf, cap);
		}
		k = fread(buf + n, 1, cap - n, f);
		n += k;
		if (k == 0 || n > FILE_MAX)
			break;
	}
	if (ferror(f)) {
		seterr(err, "%s: read error", path);
	} else if (n > FILE_MAX) {
		seterr(err, "%s: larger than %u bytes", path, FILE_MAX);
	} else if (!(l = psl_parse(buf, n, e))) {
		seterr(err, "%s: %s", path, e);
	}
	fclose(f);
	free(buf);
	return l;
}

void psl_free(struct psl *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->cap; i++)
		free(l->tab[i].s);
	free(l->tab);
	free(l);
}

size_t psl_rule_count(const struct psl *l)
{
	return l ? l->rules : 0;
}

/* The number of labels of host's public suffix (name: n bytes, lower case,
 * labels starting at off[0..nl-1]). */
static size_t suffix_labels(const struct psl *l, const char *name, size_t n, const size_t *off,
			    size_t nl)
{
	size_t best = 1;

	for (size_t i = 0; i < nl; i++) {
		const char *s = name + off[i];
		size_t sl = n - off[i];
		unsigned f = flags_of(l, s, sl);

		if (f & R_EXCEPT)
			return nl - i - 1; /* an exception wins: its parent is the suffix */
		if ((f & R_NORMAL) && nl - i > best)
			best = nl - i;
		if (i + 1 < nl && (flags_of(l, name + off[i + 1], n - off[i + 1]) & R_WILD) &&
		    nl - i > best)
			best = nl - i;
	}
	return best;
}

bool psl_registrable(const struct psl *l, const char *host, char *out, size_t cap)
{
	char name[NAME_MAX_LEN + 1];
	size_t off[NAME_MAX_LEN / 2 + 1], n = host ? strlen(host) : 0, nl = 0, ps;

	if (n > 0 && host[n - 1] == '.')
		n--;
	if (!l || n == 0 || n > NAME_MAX_LEN || !labels_ok(host, n))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = host[i];
		name[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
		if (i == 0 || host[i - 1] == '.')
			off[nl++] = i;
	}
	name[n] = '\0';
	ps = suffix_labels(l, name, n, off, nl);
	if (ps >= nl || n - off[nl - ps - 1] + 1 > cap)
		return false;
	memcpy(out, name + off[nl - ps - 1], n - off[nl - ps - 1] + 1);
	return true;
}
