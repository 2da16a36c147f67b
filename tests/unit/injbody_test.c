/* injbody_test.c -- unit tests for opt-in injection beyond headers: the
 * vocabulary (injspec.c), the query/form rewriter (injparam.c), the JSON
 * rewriter (injjson.c) and the bounded body holder (injbody.c) */
#include <stdlib.h>
#include <string.h>

#include "inject.h"
#include "injbody.h"
#include "injjson.h"
#include "injparam.h"
#include "injspec.h"
#include "policy.h"
#include "secrets.h"
#include "tap.h"

static const unsigned char fixed_key[PLACEHOLDER_KEYLEN] = "0123456789abcdef0123456789abcde";
static struct policy *pol;
static struct secretset *set;
static char PA[PLACEHOLDER_LEN + 1], PB[PLACEHOLDER_LEN + 1];
/* A's value has bytes every encoding escapes; B is plain */
static const char VA[] = "v/+ &=\"\\\x01\xc3\xa9";
#define VA_PCT "v%2F%2B%20%26%3D%22%5C%01%C3%A9"
#define VA_JSON "v/+ &=\\\"\\\\\\u0001\xc3\xa9"
#define VB "bravo"

static void setup(void)
{
	char err[SECRETS_ERRLEN], perr[256];
	struct injspec *a = injspec_new(), *b = injspec_new();

	pol = policy_new();
	policy_add_secret(pol, "A", "a.test", SECRET_VALUE, VA, err);
	policy_add_secret(pol, "B", "a.test", SECRET_VALUE, VB, err);
	ok(injspec_add_csv(a, "query:key,query:client secret,form:client_secret,"
			      "json:$.client_secret,json:$.auth.token,json:$.caf\xc3\xa9", perr),
	   "spec A: %s", perr);
	ok(injspec_add_csv(b, "query:other", perr), "spec B: %s", perr);
	policy_set_secret_inject(pol, "A", a, perr);
	policy_set_secret_inject(pol, "B", b, perr);
	set = secretset_load(pol, fixed_key, err);
	strcpy(PA, secretset_placeholder(set, 0));
	strcpy(PB, secretset_placeholder(set, 1));
}


static void spec_errors(void)
{
	struct injspec *s = injspec_new();
	char err[INJSPEC_ERRLEN];

	ok(!injspec_add(s, INJ_JSON, "client_secret", 13, err), "json path without $.");
	ok(!injspec_add(s, INJ_JSON, "$.a..b", 6, err), "empty member");
	ok(!injspec_add(s, INJ_JSON, "$.a[0]", 6, err), "array index refused");
	ok(!injspec_add(s, INJ_QUERY, "", 0, err), "empty name");
	ok(injspec_add(s, INJ_QUERY, "k", 1, err) && !injspec_add(s, INJ_QUERY, "k", 1, err),
	   "duplicate refused: %s", err);
	ok(!injspec_add_csv(s, "header:x", err), "unknown place: %s", err);
	ok(!injspec_add_csv(s, "query", err), "no colon");
	ok(injspec_names(s, INJ_QUERY, "k", 1) && !injspec_names(s, INJ_FORM, "k", 1),
	   "names per place");
	ok(!injspec_wants(NULL, INJ_QUERY), "NULL spec: headers only");
	injspec_free(s);
	injspec_free(NULL);
}

/* pairs through injparam_rewrite with mask (A and B approved: 3) */
static const char *params(enum injwhere w, uint64_t mask, const char *in, uint64_t *used)
{
	static struct obuf out;
	uint64_t u = 0;

	obuf_dispose(&out);
	obuf_init(&out, 1 << 16);
	if (!injparam_rewrite(pol, set, mask, w, in, strlen(in), &out, &u))
		return "(cap)";
	if (used)
		*used = u;
	return out.p ? out.p : "";
}

static void query_edges(void)
{
	uint64_t u = 0;

	is_str(params(INJ_QUERY, 3, tap_fmt("key=%s", PA), &u), "key=" VA_PCT, "named parameter");
	ok(u == 1, "used A");
	is_str(params(INJ_QUERY, 3, tap_fmt("key=%s&key=x%sy&key=", PA, PA), NULL),
	       "key=" VA_PCT "&key=x" VA_PCT "y&key=", "repeated parameter, text around, empty value");
	is_str(params(INJ_QUERY, 3, tap_fmt("q=%s&key&=%s", PA, PA), NULL),
	       tap_fmt("q=%s&key&=%s", PA, PA), "other parameter, no '=', empty name: unchanged");
	is_str(params(INJ_QUERY, 3, tap_fmt("k%%65Y=%s&%%6Bey=%s", PA, PA), NULL),
	       tap_fmt("k%%65Y=%s&%%6Bey=%s", PA, VA_PCT), "name decoded (case of the name kept exact)");
	is_str(params(INJ_QUERY, 3, tap_fmt("client+secret=%s&client%%20secret=%s", PA, PA), NULL),
	       "client+secret=" VA_PCT "&client%20secret=" VA_PCT, "'+' and %%20 both a space in names");
	is_str(params(INJ_QUERY, 3, tap_fmt("key=%%65%s+%s", PA + 1, PA), NULL),
	       "key=" VA_PCT "+" VA_PCT, "percent-encoded placeholder; '+' after it kept");
	is_str(params(INJ_QUERY, 3, tap_fmt("key=%s&other=%s&key=%s", PB, PB, PA), NULL),
	       tap_fmt("key=%s&other=" VB "&key=%s", PB, VA_PCT), "each secret only in its own names");
	is_str(params(INJ_QUERY, 2, tap_fmt("key=%s", PA), &u), tap_fmt("key=%s", PA),
	       "A not approved: unchanged");
	ok(u == 0, "nothing used");
	is_str(params(INJ_FORM, 3, tap_fmt("key=%s&client_secret=%s", PA, PA), NULL),
	       tap_fmt("key=%s&client_secret=%s", PA, VA_PCT), "form names are not query names");
	is_str(params(INJ_QUERY, 3, tap_fmt("key=%.20s", PA), NULL), tap_fmt("key=%.20s", PA),
	       "truncated placeholder unchanged");
	is_str(params(INJ_QUERY, 3, "", NULL), "", "empty query");
	is_str(params(INJ_QUERY, 3, "&&=&key=", NULL), "&&=&key=", "separators only");
}

static const char *json(uint64_t mask, const char *in, enum injjson_result want)
{
	static struct obuf out;
	uint64_t u = 0;
	enum injjson_result r;

	obuf_dispose(&out);
	obuf_init(&out, 1 << 16);
	r = injjson_rewrite(pol, set, mask, in, strlen(in), &out, &u);
	if (r != want)
		return "(unexpected result)";
	return out.p ? out.p : "";
}

static void json_edges(void)
{
	is_str(json(3, tap_fmt("{\"client_secret\":\"%s\"}", PA), INJJSON_OK),
	       "{\"client_secret\":\"" VA_JSON "\"}", "top-level member, value escaped");
	is_str(json(3, tap_fmt(" {\"auth\" : { \"token\" : \"Bearer %s\" , \"x\":\"%s\"} }\n", PA, PA),
		    INJJSON_OK),
	       tap_fmt(" {\"auth\" : { \"token\" : \"Bearer " VA_JSON "\" , \"x\":\"%s\"} }\n", PA),
	       "nested member; sibling and whitespace unchanged");
	is_str(json(3, tap_fmt("{\"token\":\"%s\",\"list\":[\"%s\"],\"auth\":[{\"token\":\"%s\"}]}",
			   PA, PA, PA), INJJSON_OK),
	       tap_fmt("{\"token\":\"%s\",\"list\":[\"%s\"],\"auth\":[{\"token\":\"%s\"}]}", PA, PA, PA),
	       "wrong depth, arrays: unchanged");
	is_str(json(3, tap_fmt("{\"client_secret\":\"\\u0065%s\\\"\"}", PA + 1), INJJSON_OK),
	       "{\"client_secret\":\"" VA_JSON "\\\"\"}", "escaped placeholder, escapes around kept");
	is_str(json(3, tap_fmt("{\"client\\u005fsecret\":\"%s\",\"caf\\u00e9\":\"%s\"}", PA, PA),
		    INJJSON_OK),
	       "{\"client\\u005fsecret\":\"" VA_JSON "\",\"caf\\u00e9\":\"" VA_JSON "\"}",
	       "escaped member names compared unescaped");
	is_str(json(3, tap_fmt("{\"a.b\":{\"c\":\"%s\"},\"auth.token\":\"%s\"}", PA, PA), INJJSON_OK),
	       tap_fmt("{\"a.b\":{\"c\":\"%s\"},\"auth.token\":\"%s\"}", PA, PA),
	       "a member name with a dot is no path");
	is_str(json(3, tap_fmt("{\"client_secret\":%s}", "12"), INJJSON_OK), "{\"client_secret\":12}",
	       "non-string value");
	is_str(json(3, tap_fmt("{\"client_secret\":\"%s\"", PA), INJJSON_NOT_JSON), "",
	       "truncated document: not JSON, out untouched");
	is_str(json(3, tap_fmt("{\"client_secret\":\"%s\"} {}", PA), INJJSON_NOT_JSON), "",
	       "two documents: not JSON");
	is_str(json(3, "{\"a\":\"\x01\"}", INJJSON_NOT_JSON), "", "control character in a string");
	is_str(json(1, tap_fmt("{\"client_secret\":\"%s%s\"}", PB, PA), INJJSON_OK),
	       tap_fmt("{\"client_secret\":\"%s" VA_JSON "\"}", PB), "B's placeholder is not A's");
	char deep[300] = "";
	for (int i = 0; i < 70; i++)
		strcat(deep, "[");
	is_str(json(3, deep, INJJSON_NOT_JSON), "", "deeper than the limit: not rewritten");
	is_str(json(3, "[1, -2.5e3, true, false, null, \"s\", {}, []]", INJJSON_OK),
	       "[1, -2.5e3, true, false, null, \"s\", {}, []]", "every kind of value copied");
}

/* a body fed in pieces of step bytes, then finished */
static const char *held(enum injwhere kind, size_t max, const char *in, size_t step,
			uint64_t *used)
{
	static struct obuf out;
	struct injbody *b = injbody_new(kind, max, step == 4 ? 8 : 0);
	size_t n = strlen(in);
	bool fed = true;

	obuf_dispose(&out);
	obuf_init(&out, 1 << 16);
	for (size_t i = 0; i < n; i += step)
		fed = injbody_feed(b, in + i, n - i < step ? n - i : step);
	if (!fed || injbody_over(b)) {
		injbody_free(b);
		return "(over)";
	}
	if (!injbody_finish(b, pol, set, 3, &out, used))
		out.len = 0;
	injbody_free(b);
	return out.p ? out.p : "";
}

static void body_edges(void)
{
	uint64_t u = 0;
	char form[256];

	snprintf(form, sizeof(form), "a=1&client_secret=%s&b=%s", PA, PA);

	ok(injbody_kind("application/x-www-form-urlencoded", 33) == INJ_FORM, "form type");
	ok(injbody_kind(" Application/JSON ; charset=utf-8", 34) == INJ_JSON, "json type, case, params");
	ok(injbody_kind("application/vnd.api+json", 24) == INJ_JSON, "+json suffix");
	ok(injbody_kind("text/plain", 10) == INJ_HEADER, "text/plain: not rewritten");
	ok(injbody_kind("application/jsonp", 17) == INJ_HEADER, "jsonp: not rewritten");
	is_str(held(INJ_FORM, 1 << 20, form, 1, &u), tap_fmt("a=1&client_secret=%s&b=%s", VA_PCT, PA),
	       "form fed byte by byte (placeholder split across every read)");
	ok(u == 1, "used A");
	is_str(held(INJ_JSON, 1 << 20, tap_fmt("{\"client_secret\":\"%s\"}", PA), 7, NULL),
	       "{\"client_secret\":\"" VA_JSON "\"}", "JSON fed in 7-byte pieces");
	is_str(held(INJ_JSON, 1 << 20, tap_fmt("not json %s", PA), 3, NULL), tap_fmt("not json %s", PA),
	       "a JSON body that does not parse goes unchanged");
	is_str(held(INJ_FORM, 10, form, 4, NULL), "(over)", "over the bound");
	is_str(held(INJ_FORM, strlen(form), form, 4, NULL), tap_fmt("a=1&client_secret=%s&b=%s", VA_PCT, PA),
	       "exactly at the bound");
	is_str(held(INJ_FORM, 16, "", 1, NULL), "", "empty body");
	injbody_free(NULL);
}

int main(void)
{
	setup();
	spec_errors();
	query_edges();
	json_edges();
	body_edges();
	secretset_free(set);
	policy_unref(pol);
	return done_testing();
}
