/* tap.h -- a minimal TAP producer for unit tests: ok(), is_str(), done_testing() */
#ifndef EGRESSD_TAP_H
#define EGRESSD_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

/* Records one check; prints "ok N - name" or "not ok N - name". Returns cond. */
#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

static int tap_ok(int cond, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#include <stdarg.h>
static int tap_ok(int cond, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	tap_n++;
	if (!cond)
		tap_failed++;
	printf("%sok %d - ", cond ? "" : "not ", tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond)
		printf("#   failed at %s:%d\n", file, line);
	return cond;
}

/* String equality check with a diagnostic showing both values. */
#define is_str(got, want, ...)                                                   \
	do {                                                                     \
		const char *g_ = (got), *w_ = (want);                            \
		if (!ok(g_ && w_ && strcmp(g_, w_) == 0, __VA_ARGS__))           \
			printf("#   got: '%s'\n#  want: '%s'\n", g_ ? g_ : "(null)", \
			       w_ ? w_ : "(null)");                              \
	} while (0)

/* printf into one of four rotating static buffers (test inputs built from
 * placeholders) */
static inline char *tap_fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static inline char *tap_fmt(const char *f, ...)
{
	static char bufs[4][16384];
	static int k;
	va_list ap;
	char *b = bufs[k++ & 3];

	va_start(ap, f);
	vsnprintf(b, sizeof(bufs[0]), f, ap);
	va_end(ap);
	return b;
}


/* Prints the plan; returns the exit status for main(). */
static inline int done_testing(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
