/* audit_test.c -- unit tests for the log (proxy/audit.c): level names, level
 * filtering, the level field, reopening after a rename */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "tap.h"

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = calloc(1, 65536);
	size_t n;

	if (!f)
		return buf;
	n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void line(enum audit_level l, const char *event)
{
	struct jsonw w;

	if (!audit_begin(&w, l, event, 7))
		return;
	jsonw_str(&w, "k", "v");
	audit_emit(&w);
}

static void test_levels(void)
{
	enum audit_level l = AUDIT_INFO;

	ok(audit_level_parse("error", &l) && l == AUDIT_ERROR, "parse error");
	ok(audit_level_parse("warn", &l) && l == AUDIT_WARN, "parse warn");
	ok(audit_level_parse("info", &l) && l == AUDIT_INFO, "parse info");
	ok(audit_level_parse("debug", &l) && l == AUDIT_DEBUG, "parse debug");
	l = AUDIT_WARN;
	ok(!audit_level_parse("warning", &l) && !audit_level_parse("", &l) &&
	   !audit_level_parse("INFO", &l) && l == AUDIT_WARN,
	   "unknown names are refused and leave the level alone");
	is_str(audit_level_str(AUDIT_DEBUG), "debug", "debug's name");
}

static void test_file(void)
{
	char dir[] = "/tmp/audit-test-XXXXXX", path[256], moved[256];
	char *a, *b;
	struct jsonw w;

	if (!mkdtemp(dir)) {
		ok(0, "mkdtemp");
		return;
	}
	snprintf(path, sizeof(path), "%s/log", dir);
	snprintf(moved, sizeof(moved), "%s/log.1", dir);
	ok(!audit_begin(&w, AUDIT_ERROR, "x", 0), "nothing is wanted with no log open");
	ok(audit_open(path) == 0, "open %s", path);
	audit_set_level(AUDIT_WARN);
	ok(audit_wants(AUDIT_WARN) && !audit_wants(AUDIT_INFO), "level warn: warn yes, info no");
	line(AUDIT_INFO, "hidden-info");
	line(AUDIT_DEBUG, "hidden-debug");
	line(AUDIT_WARN, "shown-warn");
	line(AUDIT_ERROR, "shown-error");
	audit_set_level(AUDIT_DEBUG);
	line(AUDIT_DEBUG, "shown-debug");
	a = slurp(path);
	ok(!strstr(a, "hidden-"), "lines below the level are not written");
	ok(strstr(a, "\"level\":\"warn\",\"event\":\"shown-warn\",\"id\":7,\"k\":\"v\"}\n") != NULL,
	   "a warn line has its level before the event");
	ok(strstr(a, "\"level\":\"error\",\"event\":\"shown-error\"") != NULL, "error line");
	ok(strstr(a, "\"level\":\"debug\",\"event\":\"shown-debug\"") != NULL,
	   "debug line once the level is debug");
	free(a);
	/* logrotate: rename, then reopen -> new lines go to a new file */
	ok(rename(path, moved) == 0, "rename the log");
	line(AUDIT_WARN, "before-reopen");
	ok(audit_reopen() == 0, "reopen");
	line(AUDIT_WARN, "after-reopen");
	a = slurp(moved);
	b = slurp(path);
	ok(strstr(a, "before-reopen") && !strstr(a, "after-reopen"),
	   "the renamed file has the lines from before the reopen only");
	ok(strstr(b, "after-reopen") && !strstr(b, "before-reopen") && !strstr(b, "shown-"),
	   "the new file has the lines from after it only");
	free(a);
	free(b);
	audit_close();
	audit_set_level(AUDIT_INFO);
	unlink(path);
	unlink(moved);
	rmdir(dir);
	ok(audit_open("-") == 0 && audit_reopen() == 0, "reopen is a no-op for stderr");
	audit_close();
}

/* The sink: every line, whatever the level and with no log at all; the
 * log still filters by level; removed with NULL. */
static char sunk[8192];
static size_t nsunk;

static void sink_fn(void *arg, const char *l, size_t len)
{
	*(int *)arg += 1;
	if (nsunk + len < sizeof(sunk)) {
		memcpy(sunk + nsunk, l, len);
		nsunk += len;
		sunk[nsunk] = '\0';
	}
}

static void test_sink(void)
{
	char dir[] = "/tmp/audit-sink-XXXXXX", path[256];
	struct jsonw w;
	int calls = 0;
	char *a;

	audit_set_sink(sink_fn, &calls);
	ok(audit_begin(&w, AUDIT_DEBUG, "x", 0), "with a sink, a line is built with no log open");
	jsonw_str(&w, "k", "v");
	audit_emit(&w);
	ok(calls == 1 && strstr(sunk, "\"event\":\"x\",\"k\":\"v\"}\n"), "the sink got it");
	if (!mkdtemp(dir)) {
		ok(0, "mkdtemp");
		return;
	}
	snprintf(path, sizeof(path), "%s/log", dir);
	ok(audit_open(path) == 0, "open %s", path);
	audit_set_level(AUDIT_WARN);
	line(AUDIT_INFO, "sink-only-info");
	line(AUDIT_WARN, "both-warn");
	a = slurp(path);
	ok(calls == 3 && strstr(sunk, "sink-only-info") && strstr(sunk, "both-warn"),
	   "the sink sees lines below the level too");
	ok(!strstr(a, "sink-only-info") && strstr(a, "both-warn"), "the log still filters by level");
	free(a);
	audit_set_sink(NULL, NULL);
	ok(!audit_begin(&w, AUDIT_INFO, "y", 0), "sink removed: lines below the level are skipped");
	line(AUDIT_WARN, "after-removal");
	ok(calls == 3, "a removed sink gets nothing");
	audit_close();
	audit_set_level(AUDIT_INFO);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	test_levels();
	test_file();
	test_sink();
	return done_testing();
}
