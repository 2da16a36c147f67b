/* config_test.c -- unit tests for config.c: loading JSON policies and the
 * FILE:LINE:COL of every kind of error */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "injspec.h"
#include "policy.h"
#include "tap.h"

static struct target tgt(const char *host, uint16_t port)
{
	struct target t;
	char err[PATTERN_ERRLEN];

	memset(&t, 0, sizeof(t));
	if (!target_from_host(host, strlen(host), port, &t, err))
		printf("# bad test target %s: %s\n", host, err);
	return t;
}

static bool allowed(const struct policy *p, const char *host, uint16_t port)
{
	struct target t = tgt(host, port);
	struct decision d;

	policy_check_target(p, &t, &d);
	return d.allow;
}

/* Loads text into a fresh policy; it must fail with an error that starts
 * with "t.json:POS: " and contains want. The policy must be left unchanged. */
static void bad(const char *text, const char *pos, const char *want, const char *what)
{
	char err[CONFIG_ERRLEN], prefix[64];
	struct policy *p = policy_new();
	bool loaded;

	snprintf(prefix, sizeof(prefix), "t.json:%s: ", pos);
	err[0] = '\0';
	loaded = config_load_buffer(p, "t.json", text, strlen(text), err);
	if (!ok(!loaded && strncmp(err, prefix, strlen(prefix)) == 0 && strstr(err, want),
		"%s -> %s... %s", what, prefix, want))
		printf("#   got: %s\n", loaded ? "(loaded)" : err);
	ok(!policy_allow_present(p) && policy_secret_count(p) == 0 && !policy_rules(p),
	   "  %s: policy left unchanged", what);
	policy_unref(p);
}

static const char deno_style[] =
	"{\n"
	"  \"allowNet\": [\"api.openai.com\", \"*.github.com\", \"example.com:443\",\n"
	"               \"203.0.113.110\", \"[2001:db8::1]:443\"],\n"
	"  \"denyNet\": [\"evil.github.com\"],\n"
	"  \"intercept\": [\"*.example.org\"],\n"
	"  \"secrets\": {\n"
	"    \"OPENAI_API_KEY\": { \"hosts\": [\"api.openai.com\"], \"value\": \"sk-...\" },\n"
	"    \"GITHUB_TOKEN\":   { \"hosts\": [\"api.github.com\", \"github.com\"], "
	"\"valueFromEnv\": \"GH_TOKEN\" },\n"
	"    \"DB_PASSWORD\":    { \"hosts\": [\"db.example.com\"], \"valueFromFile\": "
	"\"/run/secrets/db\" }\n"
	"  }\n"
	"}\n";

static void test_valid(void)
{
	char err[CONFIG_ERRLEN];
	struct policy *p = policy_new();
	struct target t;
	struct decision d;

	ok(config_load_buffer(p, "deno.json", deno_style, strlen(deno_style), err),
	   "Deno-style policy loads");
	ok(policy_allow_present(p), "  allowNet present");
	ok(allowed(p, "api.openai.com", 443), "  api.openai.com allowed");
	ok(allowed(p, "x.github.com", 22), "  x.github.com allowed");
	ok(!allowed(p, "github.com", 443), "  github.com not allowed (subdomains only)");
	ok(allowed(p, "example.com", 443) && !allowed(p, "example.com", 80),
	   "  example.com:443 only");
	ok(allowed(p, "203.0.113.110", 80), "  IPv4 pattern");
	ok(allowed(p, "[2001:db8::1]", 443) && !allowed(p, "[2001:db8::1]", 80),
	   "  IPv6 pattern with port");
	t = tgt("evil.github.com", 443);
	policy_check_target(p, &t, &d);
	ok(!d.allow && d.reason == REASON_DENIED, "  denyNet wins");
	is_str(d.rule, "evil.github.com", "  deny rule text");
	t = tgt("api.openai.com", 443);
	policy_check_target(p, &t, &d);
	is_str(d.rule, "api.openai.com", "  allow rule text");
	t = tgt("a.example.org", 443);
	ok(policy_intercepts(p, &t), "  intercept list loaded");
	t = tgt("github.com", 443);
	ok(policy_intercepts(p, &t), "  secret host intercepted");
	ok(policy_secret_count(p) == 3, "  three secrets");
	is_str(policy_secret_name(p, 0), "OPENAI_API_KEY", "  secrets in file order (0)");
	is_str(policy_secret_name(p, 1), "GITHUB_TOKEN", "  secrets in file order (1)");
	is_str(policy_secret_name(p, 2), "DB_PASSWORD", "  secrets in file order (2)");
	ok(policy_secret_source(p, 0) == SECRET_VALUE, "  value");
	is_str(policy_secret_source_arg(p, 0), "sk-...", "  literal value");
	ok(policy_secret_source(p, 1) == SECRET_FROM_ENV, "  valueFromEnv");
	is_str(policy_secret_source_arg(p, 1), "GH_TOKEN", "  env var name");
	ok(policy_secret_source(p, 2) == SECRET_FROM_FILE, "  valueFromFile");
	is_str(policy_secret_source_arg(p, 2), "/run/secrets/db", "  file path");
	ok(patlist_len(policy_secret_hosts(p, 1)) == 2, "  two hosts for GITHUB_TOKEN");
	policy_unref(p);

	/* absent vs empty allowNet */
	p = policy_new();
	ok(config_load_buffer(p, "t.json", "{}", 2, err), "{} loads");
	ok(!policy_allow_present(p) && allowed(p, "example.com", 443), "  unrestricted");
	policy_unref(p);
	p = policy_new();
	ok(config_load_buffer(p, "t.json", "{\"allowNet\": []}", 16, err), "empty allowNet loads");
	ok(policy_allow_present(p) && !allowed(p, "example.com", 443), "  denies everything");
	policy_unref(p);
	p = policy_new();
	ok(config_load_buffer(p, "t.json", "{\"denyNet\":[],\"intercept\":[],\"secrets\":{}}",
			      42, err), "empty denyNet, intercept and secrets load");
	ok(!policy_allow_present(p), "  allowNet still absent");
	policy_unref(p);

	/* escaped keys are the keys they decode to; not NUL-terminated input */
	p = policy_new();
	{
		static const char esc[] =
			"{\"\\u0061llowNet\": [\"a.example.com\"], \"secrets\": {\"K\\u00e9Y\": 1}}";
		ok(!config_load_buffer(p, "t.json", esc, strlen(esc), err) &&
		   strncmp(err, "t.json:1:50: ", 13) == 0,
		   "escaped key: error located through escapes (%s)", err);
		ok(!policy_allow_present(p), "  nothing applied");
	}
	{
		static const char unterminated[] = "{\"allowNet\": [\"a.example.com\"]}XXXX";
		ok(config_load_buffer(p, "t.json", unterminated, 31, err),
		   "buffer read only up to len");
		ok(allowed(p, "a.example.com", 443), "  and applied");
	}
	policy_unref(p);

	/* a secret already defined (e.g. by --secret) */
	p = policy_new();
	ok(policy_add_secret(p, "TOKEN", "cli.example.com", SECRET_FROM_ENV, "TOKEN", err),
	   "secret from the command line");
	{
		static const char dup[] =
			"{\"allowNet\": [\"a.example.com\"],\n"
			" \"secrets\": {\"TOKEN\": {\"hosts\": [\"a.example.com\"], \"value\": \"v\"}}}";
		ok(!config_load_buffer(p, "t.json", dup, strlen(dup), err) &&
		   strncmp(err, "t.json:2:14: ", 13) == 0 && strstr(err, "TOKEN"),
		   "secret already defined: %s", err);
		ok(!policy_allow_present(p) && policy_secret_count(p) == 1, "  nothing applied");
	}
	policy_unref(p);
}

static void test_errors(void)
{
	/* syntax, from jansson */
	bad("", "1:1", "empty", "empty file");
	bad(" \n\t\n", "1:1", "empty", "whitespace-only file");
	bad("{}\nx", "2:1", "end of file expected", "trailing garbage");
	bad("{} {}", "1:4", "end of file expected", "two objects");
	bad("{\"allowNet\": [}", "1:15", "", "syntax error");
	bad("{\n", "2:1", "", "truncated object");
	bad("{\n  \"allowNet\": [],\n  \"allowNet\": [\"x.com\"]\n}", "3:12",
	    "duplicate object key", "duplicate top-level key");
	bad("{\"secrets\": {\"A\": {\"hosts\": [\"a.com\"], \"hosts\": [], \"value\": \"v\"}}}",
	    "1:46", "duplicate object key", "duplicate key in a secret");
	bad("{\"allowNet\": [\"a.com\"], \"x\": \"\\u0000\"}", "1:37", "", "NUL escape");
	bad("\"example.com\"", "1:13", "", "string root");

	/* non-object root */
	bad("[\"example.com\"]", "1:1", "must be a JSON object, not an array", "array root");
	bad("\n  []", "2:3", "must be a JSON object", "array root, indented");

	/* unknown keys at each level */
	bad("{\n  \"allowNet\": [],\n  \"alowNet\": []\n}", "3:3", "unknown key \"alowNet\"",
	    "unknown top-level key");
	bad("{\"rules\": [{\"host\": \"a.com\", \"action\": \"deny\", \"paths\": \"x\"}]}", "1:48",
	    "rules[0]: unknown key \"paths\" (expected host, method, path or action)",
	    "unknown key in a rule");
	bad("{\"secrets\": {\"A\": {\"hosts\": [\"a.com\"], \"value\": \"v\", \"extra\": 1}}}",
	    "1:54", "secrets.A: unknown key \"extra\"", "unknown key in a secret");
	bad("{\"secrets\": {\"A\": {\"hosts\": [\"a.com\"], \"Value\": \"v\"}}}", "1:40",
	    "unknown key \"Value\"", "keys are case-sensitive");
	/* "inject": where a secret goes besides headers */
	{
		static const char txt[] = "{\"secrets\": {\"A\": {\"hosts\": [\"a.com\"], "
					  "\"value\": \"v\", \"inject\": {\"query\": \"key\", "
					  "\"json\": [\"$.a.b\"]}}}}";
		struct policy *p = policy_new();
		char err[CONFIG_ERRLEN];
		const struct injspec *sp;

		ok(config_load_buffer(p, "t.json", txt, strlen(txt), err), "inject loads: %s", err);
		sp = policy_secret_inject(p, 0);
		ok(injspec_names(sp, INJ_QUERY, "key", 3) && injspec_names(sp, INJ_JSON, "a.b", 3) &&
		   !injspec_wants(sp, INJ_FORM), "  inject applied: query key, json $.a.b, no form");
		policy_unref(p);
	}
	bad("{\"secrets\": {\"A\": {\"hosts\": [\"a.com\"], \"value\": \"v\",\n"
	    "  \"inject\": {\"query\": [\"key\"], \"body\": [\"x\"]}}}}", "2:32",
	    "secrets.A.inject: unknown key \"body\" (expected query, form or json)",
	    "unknown place in inject");
	bad("{\"secrets\": {\"A\": {\"hosts\": [\"a.com\"], \"value\": \"v\",\n"
	    "  \"inject\": {\"json\": [\"$.a\", \"client_secret\"]}}}}", "2:30",
	    "secrets.A.inject.json[1]: json path \"client_secret\" is not of the form",
	    "json path without $.");
	bad("{\"secrets\": {\"A\": {\"hosts\": [\"a.com\"], \"value\": \"v\",\n"
	    "  \"inject\": {\"form\": [\"k\", \"k\"]}}}}", "2:28",
	    "secrets.A.inject.form[1]: form name \"k\" given twice", "duplicate form name");
	bad("{\"secrets\": {\"A\": {\"hosts\": [\"a.com\"], \"value\": \"v\",\n"
	    "  \"inject\": [\"query\"]}}}", "2:13",
	    "secrets.A.inject must be an object", "inject not an object");

	/* wrong types */
	bad("{\"allowNet\": \"example.com\"}", "1:14", "allowNet must be an array", "allowNet string");
	bad("{\"allowNet\": null}", "1:14", "not null", "allowNet null");
	bad("{\"allowNet\": [\"a.com\",\n  42]}", "2:3",
	    "allowNet[1] must be a pattern string, not a number", "allowNet element number");
	bad("{\"denyNet\": {}}", "1:13", "denyNet must be an array", "denyNet object");
	bad("{\"intercept\": [true]}", "1:16", "intercept[0] must be a pattern string, not a boolean",
	    "intercept element boolean");
	bad("{\"secrets\": []}", "1:13", "secrets must be an object", "secrets array");
	bad("{\"secrets\": {\"A\": \"sk-abc\"}}", "1:19", "secrets.A must be an object",
	    "secret not an object");
	bad("{\"secrets\": {\"A\": {\"hosts\": \"a.com\", \"value\": \"v\"}}}", "1:29",
	    "secrets.A.hosts must be an array", "hosts string");
	bad("{\"secrets\": {\"A\": {\"hosts\": [\"a.com\", null], \"value\": \"v\"}}}", "1:39",
	    "secrets.A.hosts[1] must be a pattern string, not null", "hosts element null");

	/* invalid patterns, with the parser's message and the pattern */
	bad("{\n  \"allowNet\": [\n    \"example.com\",\n    \"bad..example.com\"\n  ]\n}", "4:5",
	    "allowNet[1]: invalid pattern \"bad..example.com\": ", "bad allowNet pattern");
	bad("{\"allowNet\": [\"\"]}", "1:15", "invalid pattern \"\"", "empty pattern");
	bad("{\"allowNet\": [\"a.com,b.com\"]}", "1:15", "one pattern per string",
	    "comma-separated pattern string");
	bad("{\"denyNet\": [\"*\"]}", "1:14", "denyNet[0]: invalid pattern \"*\"", "bad denyNet pattern");
	bad("{\"intercept\": [\"https://example.com\"]}", "1:16", "intercept[0]: invalid pattern",
	    "URL as intercept pattern");
	bad("{\"secrets\": {\"A\": {\"hosts\": [\"ok.com\", \"::1\"], \"value\": \"v\"}}}", "1:40",
	    "secrets.A.hosts[1]: invalid pattern \"::1\"", "bad secret host pattern");

	/* request rules */
	bad("{\"rules\": {}}", "1:11", "rules must be an array of rule objects, not an object",
	    "rules object");
	bad("{\"rules\": [\"a.com\"]}", "1:12", "rules[0] must be an object", "rule string");
	bad("{\"rules\": [\n  {\"host\": \"a.com\", \"action\": \"deny\"},\n  {\"action\": \"deny\"}\n]}",
	    "3:3", "rules[1]: missing \"host\"", "rule without host");
	bad("{\"rules\": [{\"host\": \"a.com\"}]}", "1:12", "rules[0]: missing \"action\"",
	    "rule without action");
	bad("{\"rules\": [{\"host\": \"a.com\", \"action\": \"block\"}]}", "1:40",
	    "rules[0].action: \"block\" is not an action (expected \"allow\" or \"deny\")",
	    "bad action");
	bad("{\"rules\": [{\"host\": \"a.com\", \"action\": true}]}", "1:40",
	    "rules[0].action must be \"allow\" or \"deny\", not a boolean", "action boolean");
	bad("{\"rules\": [{\"host\": 7, \"action\": \"deny\"}]}", "1:21",
	    "rules[0].host must be a pattern string or an array of them, not a number",
	    "host number");
	bad("{\"rules\": [{\"host\": [], \"action\": \"deny\"}]}", "1:21",
	    "rules[0].host is an empty array", "host empty array");
	bad("{\"rules\": [{\"host\": [\"a.com\", \"b..com\"], \"action\": \"deny\"}]}", "1:31",
	    "rules[0].host[1]: invalid pattern \"b..com\"", "bad host pattern in an array");
	bad("{\"rules\": [{\"host\": \"*\", \"action\": \"deny\"}]}", "1:21",
	    "rules[0].host: invalid pattern \"*\"", "bad host pattern");
	bad("{\"rules\": [{\"host\": [\"a.com\", null], \"action\": \"deny\"}]}", "1:31",
	    "rules[0].host[1] must be a pattern string, not null", "host element null");
	bad("{\"rules\": [{\"host\": \"a.com\", \"method\": \"get\", \"action\": \"deny\"}]}",
	    "1:40", "rules[0].method: invalid method \"get\"", "lower-case method");
	bad("{\"rules\": [{\"host\": \"a.com\", \"method\": [\"GET\", \"PO ST\"], "
	    "\"action\": \"deny\"}]}", "1:48", "rules[0].method[1]: invalid method \"PO ST\"",
	    "method with a space");
	bad("{\"rules\": [{\"host\": \"a.com\", \"method\": [], \"action\": \"deny\"}]}", "1:40",
	    "rules[0].method is an empty array", "method empty array");
	bad("{\"rules\": [{\"host\": \"a.com\", \"path\": 5, \"action\": \"deny\"}]}", "1:38",
	    "rules[0].path must be a regular expression string, not a number", "path number");
	bad("{\n  \"rules\": [\n    {\"host\": \"a.com\", \"action\": \"deny\"},\n"
	    "    {\"host\": \"a.com\", \"path\": \"^/repos/(acme\", \"action\": \"allow\"}\n  ]\n}",
	    "4:31", "rules[1].path \"^/repos/(acme\": invalid regular expression: missing closing "
	    "parenthesis at offset 13", "bad regex, with PCRE2's message and offset");
	bad("{\"rules\": [{\"host\": \"a.com\", \"path\": \"a{2,1}\", \"action\": \"deny\"}]}",
	    "1:38", "rules[0].path \"a{2,1}\": invalid regular expression: numbers out of order in {} quantifier at offset 5",
	    "bad regex quantifier");
	bad("{\"rulesDefault\": \"maybe\"}", "1:18",
	    "rulesDefault: \"maybe\" is not an action (expected \"allow\" or \"deny\")",
	    "bad rulesDefault");
	bad("{\"rulesDefault\": null}", "1:18", "rulesDefault must be \"allow\" or \"deny\", not null",
	    "rulesDefault null");

	/* secrets */
	bad("{\"secrets\": {\"1BAD\": {\"hosts\": [\"a.com\"], \"value\": \"v\"}}}", "1:14",
	    "secret name \"1BAD\" is not a valid environment variable name", "bad secret name");
	bad("{\"secrets\": {\"A-B\": {}}}", "1:14", "\"A-B\"", "secret name with '-'");
	bad("{\"secrets\": {\"\": {}}}", "1:14", "secret name \"\"", "empty secret name");
	{
		char text[400];
		snprintf(text, sizeof(text), "{\"secrets\": {\"%0256d\": {}}}", 0);
		text[14] = 'A';
		bad(text, "1:14", "not a valid environment variable name", "256-character name");
	}
	bad("{\"secrets\": {\"A\": {\"value\": \"v\"}}}", "1:19", "secrets.A: missing \"hosts\"",
	    "missing hosts");
	bad("{\"secrets\": {\"A\": {\"hosts\": [], \"value\": \"v\"}}}", "1:29",
	    "secrets.A.hosts is empty", "empty hosts");
	bad("{\"secrets\": {\"A\": {\"hosts\": [\"a.com\"]}}}", "1:19",
	    "secrets.A: needs one of value, valueFromEnv or valueFromFile", "no value");
	bad("{\"secrets\": {\"A\": {\n  \"hosts\": [\"a.com\"],\n  \"value\": \"v\",\n"
	    "  \"valueFromEnv\": \"E\"}}}", "4:3", "both value and valueFromEnv", "two values");
	bad("{\"secrets\": {\"A\": {\"valueFromFile\": \"/f\", \"value\": \"v\", "
	    "\"hosts\": [\"a.com\"]}}}", "1:43", "both valueFromFile and value",
	    "two values, other order");
	bad("{\"secrets\": {\"A\": {\"hosts\": [\"a.com\"], \"value\": 42}}}", "1:49",
	    "secrets.A.value must be a string, not a number", "numeric value");
	bad("{\"secrets\": {\"A\": {\"hosts\": [\"a.com\"], \"valueFromEnv\": \"\"}}}", "1:56",
	    "secrets.A.valueFromEnv is empty", "empty valueFromEnv");
	bad("{\"secrets\": {\"A\": {\"hosts\": [\"a.com\"], \"valueFromFile\": false}}}", "1:57",
	    "must be a string, not a boolean", "boolean valueFromFile");

	/* the position counts characters, not bytes, as jansson does */
	bad("{\"secrets\": {\"A\": {\"hosts\": [\"a.com\"], \"value\": \"\xc3\xa9\xc3\xa9\", \"x\": 1}}}",
	    "1:55", "unknown key \"x\"", "column after UTF-8 text");
	bad("{\"allowNet\": [\"\xc3\xa9xample.com\"]}", "1:15", "invalid pattern \"\\xc3\\xa9xample.com\"",
	    "Unicode name quoted safely");
	bad("{\"\\n\\u001b[31m\": 1}", "1:2", "unknown key \"\\x0a\\x1b[31m\"",
	    "control characters in a key are escaped");
}

/* A secret's literal value never appears in an error message. */
static void test_no_secret_in_errors(void)
{
	static const char *const texts[] = {
		"{\"secrets\": {\"A\": {\"hosts\": [\"a.com\"], \"value\": [\"sk-SEKRIT\"]}}}",
		"{\"secrets\": {\"A\": {\"hosts\": [\"a.com\"], \"value\": {\"k\": \"sk-SEKRIT\"}}}}",
		"{\"secrets\": {\"A\": {\"hosts\": [], \"value\": \"sk-SEKRIT\"}}}",
		"{\"secrets\": {\"A\": {\"value\": \"sk-SEKRIT\", \"valueFromEnv\": \"E\", "
		"\"hosts\": [\"a.com\"]}}}",
		"{\"secrets\": {\"A\": {\"value\": \"sk-SEKRIT\", \"hosts\": [\"a..com\"]}}}",
		"{\"secrets\": {\"A\": {\"value\": \"sk-SEKRIT\"}}}",
	};
	char err[CONFIG_ERRLEN];

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct policy *p = policy_new();
		bool loaded = config_load_buffer(p, "t.json", texts[i], strlen(texts[i]), err);
		ok(!loaded && !strstr(err, "SEKRIT"), "no secret value in error %zu: %s", i, err);
		policy_unref(p);
	}
}

static char tmpdir[] = "/tmp/config_test.XXXXXX";

static void write_file(const char *path, const char *data, size_t n)
{
	FILE *f = fopen(path, "wb");

	if (!f || fwrite(data, 1, n, f) != n)
		printf("# cannot write %s\n", path);
	if (f)
		fclose(f);
}

static void test_files(void)
{
	char err[CONFIG_ERRLEN], path[256], want[300];
	struct policy *p;
	char *big;
	size_t n = ((size_t)4 << 20) + 1;

	if (!ok(mkdtemp(tmpdir) != NULL, "temporary directory"))
		return;

	snprintf(path, sizeof(path), "%s/policy.json", tmpdir);
	write_file(path, deno_style, strlen(deno_style));
	p = policy_new();
	ok(config_load_file(p, path, err), "file loads");
	ok(policy_secret_count(p) == 3, "  with its secrets");
	policy_unref(p);

	p = policy_new();
	ok(config_load_file(p, "examples/policy.json", err) ||
	   config_load_file(p, "../../examples/policy.json", err),
	   "examples/policy.json loads: %s", err);
	policy_unref(p);

	snprintf(path, sizeof(path), "%s/missing.json", tmpdir);
	snprintf(want, sizeof(want), "%s: %s", path, strerror(ENOENT));
	p = policy_new();
	ok(!config_load_file(p, path, err), "missing file refused");
	is_str(err, want, "  with strerror");
	policy_unref(p);

	p = policy_new();
	ok(!config_load_file(p, tmpdir, err) && strstr(err, strerror(EISDIR)),
	   "directory refused: %s", err);
	policy_unref(p);

	/* just over 4 MiB: refused before parsing */
	big = malloc(n);
	if (big) {
		memset(big, ' ', n);
		big[0] = '{';
		big[n - 1] = '}';
		snprintf(path, sizeof(path), "%s/huge.json", tmpdir);
		write_file(path, big, n);
		p = policy_new();
		snprintf(want, sizeof(want), "%s: larger than 4 MiB", path);
		ok(!config_load_file(p, path, err), "huge file refused");
		is_str(err, want, "  with its size");
		policy_unref(p);
		unlink(path);
		/* exactly 4 MiB is fine */
		big[n - 2] = '}';
		write_file(path, big, n - 1);
		p = policy_new();
		ok(config_load_file(p, path, err), "4 MiB file loads: %s", err);
		policy_unref(p);
		unlink(path);
		free(big);
	}

	snprintf(path, sizeof(path), "%s/bad.json", tmpdir);
	write_file(path, "{\n  \"allowNet\": [\"a..b\"]\n}\n", 27);
	snprintf(want, sizeof(want), "%s:2:16: ", path);
	p = policy_new();
	ok(!config_load_file(p, path, err) && strncmp(err, want, strlen(want)) == 0,
	   "file error names the file: %s", err);
	policy_unref(p);

	snprintf(path, sizeof(path), "%s/empty.json", tmpdir);
	write_file(path, "", 0);
	snprintf(want, sizeof(want), "%s:1:1: ", path);
	p = policy_new();
	ok(!config_load_file(p, path, err) && strncmp(err, want, strlen(want)) == 0,
	   "empty file: %s", err);
	policy_unref(p);

	snprintf(path, sizeof(path), "%s/policy.json", tmpdir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/bad.json", tmpdir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/empty.json", tmpdir);
	unlink(path);
	rmdir(tmpdir);
}

int main(void)
{
	test_valid();
	test_errors();
	test_no_secret_in_errors();
	test_files();
	return done_testing();
}
