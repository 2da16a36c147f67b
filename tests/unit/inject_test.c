/* inject_test.c -- unit tests for inject.c: the capped buffer, placeholder
 * injection (raw and in Basic credentials), leak scanning and redact_string */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "inject.h"
#include "policy.h"
#include "secrets.h"
#include "tap.h"

static const unsigned char fixed_key[PLACEHOLDER_KEYLEN] = "0123456789abcdef0123456789abcde";
static struct policy *pol;
static struct secretset *set;
static char PA[PLACEHOLDER_LEN + 1], PB[PLACEHOLDER_LEN + 1], PC[PLACEHOLDER_LEN + 1];

#define A 1u /* secret bits */
#define B 2u
#define C 4u

static void setup(void)
{
	char err[SECRETS_ERRLEN];

	pol = policy_new();
	policy_add_secret(pol, "A", "a.test", SECRET_VALUE, "sk-alpha", err);
	policy_add_secret(pol, "B", "b.test", SECRET_VALUE, "bravo:pw", err);
	policy_add_secret(pol, "C", "*.c.test", SECRET_VALUE, "sk-alpha-long", err);
	set = secretset_load(pol, fixed_key, err);
	if (!set)
		printf("# setup: %s\n", err);
	strcpy(PA, secretset_placeholder(set, 0));
	strcpy(PB, secretset_placeholder(set, 1));
	strcpy(PC, secretset_placeholder(set, 2));
}


static char *b64(const char *s)
{
	static char out[4][16384];
	static int k;
	char *o = out[k++ & 3];

	EVP_EncodeBlock((unsigned char *)o, (const unsigned char *)s, (int)strlen(s));
	return o;
}

/* inject_header into a fresh buffer; checks output and used bits */
static void inj(uint64_t approved, const char *name, const char *val, const char *want,
		uint64_t want_used, const char *what)
{
	struct obuf o;
	uint64_t used = 99;
	bool r;

	obuf_init(&o, 4096);
	r = inject_header(set, approved, name, strlen(name), val, strlen(val), &o, &used);
	ok(r && used == want_used, "%s: return and used bits", what);
	is_str(o.len ? o.p : "", want, "%s", what);
	obuf_dispose(&o);
}

static void test_obuf(void)
{
	struct obuf o;

	obuf_init(&o, 10);
	ok(obuf_add(&o, "hello", 5) && obuf_add(&o, "", 0) && o.len == 5, "obuf adds");
	ok(!obuf_add(&o, "world!", 6) && o.len == 5, "obuf refuses past its cap, unchanged");
	ok(obuf_add(&o, "world", 5) && o.len == 10 && strcmp(o.p, "helloworld") == 0,
	   "obuf fills exactly to its cap");
	obuf_dispose(&o);
	ok(o.p == NULL && o.len == 0, "obuf disposed");
	obuf_dispose(&o);
	obuf_init(&o, 1 << 20);
	for (int i = 0; i < 1000; i++)
		obuf_add(&o, "0123456789", 10);
	ok(o.len == 10000 && memcmp(o.p + 9990, "0123456789", 10) == 0, "obuf grows");
	obuf_dispose(&o);
}

static void test_inject(void)
{
	struct obuf o;
	uint64_t used = 0;

	inj(A, "Authorization", tap_fmt("Bearer %s", PA), "Bearer sk-alpha", A, "Bearer");
	inj(A, "X-Api-Key", PA, "sk-alpha", A, "custom header, whole value");
	inj(A, "X-Custom", tap_fmt("k=%s;k2=%s", PA, PA), "k=sk-alpha;k2=sk-alpha", A,
	    "twice in one value");
	inj(A | B, "X-Custom", tap_fmt("%s%s", PA, PB), "sk-alphabravo:pw", A | B,
	    "two secrets back to back");
	inj(A, "X-Custom", tap_fmt("%s %s", PA, PB), tap_fmt("sk-alpha %s", PB), A,
	    "only approved replaced");
	inj(0, "Authorization", tap_fmt("Bearer %s", PA), tap_fmt("Bearer %s", PA), 0,
	    "nothing approved: unchanged");
	inj(A, "X-Custom", "no placeholder here", "no placeholder here", 0, "no placeholder");
	inj(A, "X-Custom", "", "", 0, "empty value");
	inj(A, "X-Custom", tap_fmt("%.42s", PA), tap_fmt("%.42s", PA), 0, "truncated placeholder");
	{
		char up[PLACEHOLDER_LEN + 1];
		strcpy(up, PA);
		for (char *c = up; *c; c++)
			if (*c >= 'a' && *c <= 'f')
				*c = (char)(*c - 32);
		inj(A, "X-Custom", up, up, 0, "upper-cased placeholder is not injected");
	}
	inj(A, "X-Custom", tap_fmt("egressd-ph-%s", PA), tap_fmt("egressd-ph-sk-alpha"), A,
	    "placeholder after a false prefix");

	/* Basic */
	inj(B, "Authorization", tap_fmt("Basic %s", b64(tap_fmt("%s:x", PB))),
	    tap_fmt("Basic %s", b64("bravo:pw:x")), B, "Basic, placeholder as user");
	inj(A, "Authorization", tap_fmt("Basic %s", b64(tap_fmt("user:%s", PA))),
	    tap_fmt("Basic %s", b64("user:sk-alpha")), A, "Basic, placeholder as password");
	inj(A, "proxy-authorization", tap_fmt("basic   %s", b64(tap_fmt("user:%s", PA))),
	    tap_fmt("basic   %s", b64("user:sk-alpha")), A,
	    "lower-case basic, several spaces, Proxy-Authorization");
	inj(A | B, "AUTHORIZATION", tap_fmt("BASIC %s", b64(tap_fmt("%s:%s", PB, PA))),
	    tap_fmt("BASIC %s", b64("bravo:pw:sk-alpha")), A | B, "Basic, user and password");
	inj(B, "Authorization", tap_fmt("Basic %s", b64(tap_fmt("%s:x", PA))),
	    tap_fmt("Basic %s", b64(tap_fmt("%s:x", PA))), 0, "Basic, unapproved left alone");
	inj(A, "X-Other", tap_fmt("Basic %s", b64(tap_fmt("u:%s", PA))),
	    tap_fmt("Basic %s", b64(tap_fmt("u:%s", PA))), 0, "Basic in another header: raw only");
	{
		char *enc = b64(tap_fmt("user:%s", PA)), bad[512];
		size_t n = strlen(enc);

		strcpy(bad, enc);
		bad[n - 1] = '\0'; /* drop padding: not strict base64 */
		inj(A, "Authorization", tap_fmt("Basic %s", bad), tap_fmt("Basic %s", bad), 0,
		    "Basic without padding left alone");
		strcpy(bad, enc);
		bad[3] = '*';
		inj(A, "Authorization", tap_fmt("Basic %s", bad), tap_fmt("Basic %s", bad), 0,
		    "Basic with a bad character left alone");
	}
	inj(A, "Authorization", "Basic dGVzdA=", "Basic dGVzdA=", 0, "bad padding left alone");
	inj(A, "Authorization", "Basic dGVzdB==", "Basic dGVzdB==", 0,
	    "non-canonical base64 left alone");
	inj(A, "Authorization", tap_fmt("Basic %s", PA), "Basic sk-alpha", A,
	    "Basic with a raw placeholder: raw substitution");
	inj(A, "Authorization", "Basic ", "Basic ", 0, "empty Basic");
	inj(A, "Authorization", "Basic dGVzdA==", "Basic dGVzdA==", 0,
	    "Basic without placeholder re-encodes identically");

	/* cap */
	obuf_init(&o, 5);
	obuf_add(&o, "ab", 2);
	ok(!inject_header(set, A, "X", 1, PA, strlen(PA), &o, &used) && o.len == 2 &&
	   strcmp(o.p, "ab") == 0, "cap hit: false, buffer restored");
	obuf_dispose(&o);
	obuf_init(&o, 12);
	ok(inject_header(set, A, "X", 1, tap_fmt("%s!", PA), PLACEHOLDER_LEN + 1, &o, &used) &&
	   o.len == 9, "output may be shorter than the cap of the input");
	obuf_dispose(&o);
}

static char *pct(const char *s)
{
	static char out[4][16384];
	static int k;
	char *o = out[k++ & 3], *q = o;

	for (; *s; s++)
		q += sprintf(q, (*s == '-') ? "%%%02X" : "%%%02x", (unsigned char)*s);
	return o;
}

static char *upper(const char *s)
{
	static char out[4][16384];
	static int k;
	char *o = out[k++ & 3];
	size_t i = 0;

	for (; s[i]; i++)
		o[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
	o[i] = '\0';
	return o;
}

static uint64_t leaks(uint64_t approved, const char *t, bool basic)
{
	return inject_scan_leaks(set, approved, t, strlen(t), basic);
}

static void test_leaks(void)
{
	char p1[256];

	ok(leaks(0, tap_fmt("x-key: %s", PA), false) == A, "raw leak");
	ok(leaks(A, tap_fmt("x-key: %s", PA), false) == 0, "approved is not a leak");
	ok(leaks(A, tap_fmt("%s,%s,%s", PA, PB, PC), false) == (B | C), "several leaks");
	ok(leaks(0, "/v1/nothing?q=1", false) == 0, "no leak");
	ok(leaks(0, tap_fmt("%.42s", PA), false) == 0, "truncated placeholder: no leak");
	ok(leaks(0, tap_fmt("/p?k=%s", pct(PA)), false) == A, "percent-encoded leak");
	ok(leaks(0, tap_fmt("/p?k=%s", upper(pct(PA))), false) == A,
	   "percent-encoded with upper-case %%XX");
	strcpy(p1, pct(PB));
	ok(leaks(0, tap_fmt("/p?k=%s", pct(p1)), false) == B, "double percent-encoded leak");
	ok(leaks(0, tap_fmt("/p?k=%s", pct(pct(p1))), false) == B, "triple percent-encoded leak");
	ok(leaks(0, tap_fmt("/p?k=%s", pct(pct(pct(p1)))), false) == 0,
	   "four rounds: beyond the limit");
	ok(leaks(0, upper(PA), false) == A, "upper-cased placeholder");
	ok(leaks(0, tap_fmt("%.11s%s", PA, upper(PA + 11)), false) == A, "upper-cased hex only");
	ok(leaks(0, tap_fmt("%%%s", PA), false) == A, "stray %% before the placeholder");
	ok(leaks(0, tap_fmt("Basic %s", b64(tap_fmt("user:%s", PA))), true) == A, "leak inside Basic");
	ok(leaks(0, tap_fmt("Basic %s", b64(tap_fmt("%s:pw", PB))), false) == 0,
	   "Basic not decoded when basic is false");
	ok(leaks(B, tap_fmt("Basic %s", b64(tap_fmt("%s:pw", PB))), true) == 0,
	   "approved inside Basic: no leak");
	{
		char enc[512];
		strcpy(enc, b64(tap_fmt("u:%s", PC)));
		enc[strcspn(enc, "=")] = '\0';
		ok(leaks(0, tap_fmt("basic %s", enc), true) == C, "Basic without padding still scanned");
	}
	ok(leaks(0, tap_fmt("Basic %s", b64(tap_fmt("u:%s", pct(PA)))), true) == A,
	   "percent-encoded inside Basic");
	ok(leaks(0, tap_fmt("Basic %s", b64(upper(PA))), true) == A, "upper-case inside Basic");
	ok(leaks(0, "Basic !!!!", true) == 0, "invalid Basic: no crash, no leak");
	ok(leaks(0, "", true) == 0, "empty text");
}

/* hex of a placeholder, into a static buffer */
static const char *hexs(const char *ph, bool upper)
{
	static char out[2 * PLACEHOLDER_LEN + 1];

	for (size_t i = 0; i < PLACEHOLDER_LEN; i++)
		sprintf(out + 2 * i, upper ? "%02X" : "%02x", (unsigned char)ph[i]);
	return out;
}

static void red(uint64_t mask, const char *in, const char *want, const char *what)
{
	struct obuf o;

	obuf_init(&o, 4096);
	ok(redact_string(set, mask, in, strlen(in), &o), "%s: returns true", what);
	is_str(o.len ? o.p : "", want, "%s", what);
	obuf_dispose(&o);
}

static void test_redact_string(void)
{
	struct obuf o;

	red(A, "echo sk-alpha!", tap_fmt("echo %s!", PA), "one value");
	red(A, "sk-alphask-alpha", tap_fmt("%s%s", PA, PA), "back to back");
	red(B, "sk-alpha", "sk-alpha", "not in mask");
	red(A | C, "x sk-alpha-long y sk-alpha z", tap_fmt("x %s y %s z", PC, PA),
	    "longest value first when one contains another");
	red(A | C, "sk-alpha-lon", tap_fmt("%s-lon", PA), "prefix of the longer value");
	red(A | B | C, "bravo:pwsk-alpha", tap_fmt("%s%s", PB, PA), "two secrets");
	red(A, "", "", "empty");
	red(A, "sk-alph", "sk-alph", "partial value kept");
	red(A, "{\"k\":\"sk\\u002Dalpha\"}", tap_fmt("{\"k\":\"%s\"}", PA), "JSON \\u escape");
	red(B, "u=bravo%3Apw&", tap_fmt("u=%s&", PB), "percent-encoded (%3A)");
	red(B, "u=bravo%3apw", tap_fmt("u=%s", PB), "percent-encoded, lower-case hex");
	red(A | C, "sk%2Dalpha%2dlong", PC, "percent-encoded, longest value wins");
	red(A, "736B2D616C706861", hexs(PA, true), "hex upper-case");
	red(A, "x736b2d616c706861y", tap_fmt("x%sy", hexs(PA, false)), "hex lower-case");
	red(A, "sk-alpha%", tap_fmt("%s%%", PA), "raw value before a stray %");
	obuf_init(&o, 10);
	ok(!redact_string(set, A, "sk-alpha", 8, &o) && o.len == 0, "cap hit: false, restored");
	obuf_dispose(&o);
}

int main(void)
{
	setup();
	if (!set)
		return 1;
	test_obuf();
	test_inject();
	test_leaks();
	test_redact_string();
	secretset_free(set);
	policy_unref(pol);
	return done_testing();
}
