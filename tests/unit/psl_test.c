/* psl_test.c -- the Public Suffix List parser and registrable domains: an
 * inline list for the algorithm's corners (wildcards, exceptions, the
 * default rule), malformed lists, and Debian's list when it is installed */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "psl.h"
#include "tap.h"

static const char LIST[] =
	"// comment line\n"
	"com\n"
	"\n"
	"uk\n"
	"co.uk   trailing words are ignored\r\n"
	"*.ck\n"
	"!www.ck\n"
	"JP\n"
	"*.kobe.jp\n"
	"!city.kobe.jp\n"
	"github.io";

static void reg(const struct psl *l, const char *host, const char *want)
{
	char out[256];
	bool r = psl_registrable(l, host, out, sizeof(out));

	if (!want)
		ok(!r, "%s: no registrable domain", host);
	else
		is_str(r ? out : NULL, want, "%s -> %s", host, want);
}

static void bad(const char *text, const char *why)
{
	char err[PSL_ERRLEN] = "";
	struct psl *l = psl_parse(text, strlen(text), err);

	ok(!l && err[0], "refused: %s (%s)", why, err);
	psl_free(l);
}

int main(void)
{
	char err[PSL_ERRLEN] = "", out[8];
	struct psl *l = psl_parse(LIST, strlen(LIST), err);

	ok(l != NULL, "the inline list parses (%s)", err);
	ok(psl_rule_count(l) == 9, "9 rules (got %zu)", psl_rule_count(l));
	reg(l, "example.com", "example.com");
	reg(l, "a.b.Example.COM", "example.com");
	reg(l, "example.com.", "example.com");
	reg(l, "com", NULL);
	reg(l, "foo.co.uk", "foo.co.uk");
	reg(l, "www.foo.co.uk", "foo.co.uk");
	reg(l, "co.uk", NULL);
	reg(l, "bar.uk", "bar.uk");
	reg(l, "foo.ck", NULL);             /* *.ck: foo.ck is a suffix */
	reg(l, "a.foo.ck", "a.foo.ck");
	reg(l, "www.ck", "www.ck");         /* !www.ck: an exception */
	reg(l, "x.www.ck", "www.ck");
	reg(l, "x.city.kobe.jp", "city.kobe.jp");
	reg(l, "x.y.kobe.jp", "x.y.kobe.jp");
	reg(l, "user.github.io", "user.github.io");
	reg(l, "a.user.github.io", "user.github.io");
	reg(l, "pkg.registry.test", "registry.test"); /* the default rule "*" */
	reg(l, "test", NULL);
	reg(l, "", NULL);
	reg(l, "a..com", NULL);
	reg(l, ".com", NULL);
	ok(!psl_registrable(l, "averylongname.com", out, sizeof(out)), "a result too long for out");
	ok(!psl_registrable(NULL, "example.com", out, sizeof(out)), "no list: false");
	psl_free(l);
	psl_free(NULL);

	bad("", "an empty list");
	bad("// only a comment\n\n", "comments only");
	bad("com\n.com\n", "a leading dot");
	bad("a..b\n", "an empty label");
	bad("*.\n", "a wildcard of nothing");
	{
		char longline[400];
		memset(longline, 'a', sizeof(longline) - 1);
		longline[sizeof(longline) - 1] = '\0';
		bad(longline, "a line over 255 bytes");
	}
	l = psl_load("/nonexistent/psl.dat", err);
	ok(!l && strstr(err, "/nonexistent/psl.dat"), "a missing file names itself (%s)", err);

	if (access(PSL_DEFAULT_PATH, R_OK) == 0) {
		l = psl_load(PSL_DEFAULT_PATH, err);
		ok(l && psl_rule_count(l) > 5000, "Debian's list loads (%zu rules) %s",
		   psl_rule_count(l), l ? "" : err);
		reg(l, "www.example.co.uk", "example.co.uk");
		reg(l, "pypi.org", "pypi.org");
		reg(l, "files.pythonhosted.org", "pythonhosted.org");
		reg(l, "registry.npmjs.org", "npmjs.org");
		reg(l, "foo.bar.github.io", "bar.github.io");
		reg(l, "s3.amazonaws.com", NULL);
		psl_free(l);
	} else {
		ok(1, "# SKIP %s is not installed", PSL_DEFAULT_PATH);
	}
	return done_testing();
}
