/* fakeip_test.c -- unit tests for the synthetic-address map (proxy/fakeip.c):
 * stability, uniqueness, range, order, LRU recycling, reverse lookup, threads */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakeip.h"
#include "tap.h"

static uint32_t u32(const struct ipaddr *a)
{
	return (uint32_t)a->b[0] << 24 | (uint32_t)a->b[1] << 16 | (uint32_t)a->b[2] << 8 |
	       a->b[3];
}

static const char *fmt(const struct ipaddr *a)
{
	static char buf[4][ADDR_STRLEN];
	static int i;
	char *p = buf[i++ % 4];

	return addr_format(a, p);
}

static void test_basic(void)
{
	struct fakeip *f = fakeip_new(100);
	struct ipaddr a, b, c;
	char name[300];

	ok(fakeip_addr_for(f, "example.com", &a), "first name");
	is_str(fmt(&a), "198.18.0.1", "first address is 198.18.0.1");
	ok(fakeip_addr_for(f, "example.com", &b) && addr_equal(&a, &b), "same name, same address");
	ok(fakeip_addr_for(f, "api.example.com", &c) && !addr_equal(&a, &c), "another name");
	is_str(fmt(&c), "198.18.0.2", "allocated in order");
	ok(fakeip_in_range(&a) && fakeip_in_range(&c), "in range");
	ok(fakeip_name_for(f, &a, name, sizeof(name)), "name_for the first");
	is_str(name, "example.com", "reverse of 198.18.0.1");
	ok(fakeip_name_for(f, &c, name, sizeof(name)), "name_for the second");
	is_str(name, "api.example.com", "reverse of 198.18.0.2");
	ok(!fakeip_name_for(f, &c, name, 15), "name_for: cap too small is false");
	ok(fakeip_name_for(f, &c, name, 16), "name_for: exact cap (name + NUL)");

	b = a;
	b.b[3] = 3;
	ok(!fakeip_name_for(f, &b, name, sizeof(name)), "unallocated address: false");
	b.b[3] = 0;
	ok(!fakeip_name_for(f, &b, name, sizeof(name)), ".0 address: false");
	b.b[3] = 255;
	ok(!fakeip_name_for(f, &b, name, sizeof(name)), ".255 address: false");
	struct ipaddr other = { 4, { 10, 0, 0, 1 } }, v6 = { 6, { 0x20, 1, 0xd, 0xb8 } };
	ok(!fakeip_name_for(f, &other, name, sizeof(name)), "outside range: false");
	ok(!fakeip_name_for(f, &v6, name, sizeof(name)), "IPv6: false");

	/* bad input */
	ok(!fakeip_addr_for(f, "", &a), "empty name refused");
	ok(!fakeip_addr_for(f, NULL, &a), "NULL name refused");
	ok(!fakeip_addr_for(f, "Example.com", &a), "upper case refused");
	ok(!fakeip_addr_for(f, "example.com.", &a), "trailing dot refused");
	ok(!fakeip_addr_for(f, "exa mple.com", &a), "space refused");
	memset(name, 'a', sizeof(name));
	name[253] = '\0';
	ok(fakeip_addr_for(f, name, &a), "253 characters accepted");
	name[253] = 'a', name[254] = '\0';
	ok(!fakeip_addr_for(f, name, &a), "254 characters refused");
	ok(!fakeip_addr_for(NULL, "x", &a), "NULL table");
	fakeip_free(f);
	fakeip_free(NULL);
}

static void test_range(void)
{
	struct ipaddr lo = { 4, { 198, 18, 0, 0 } }, hi = { 4, { 198, 19, 255, 255 } };
	struct ipaddr below = { 4, { 198, 17, 255, 255 } }, above = { 4, { 198, 20, 0, 0 } };
	struct ipaddr v6 = { 6, { 0 } };

	v6.b[0] = 198, v6.b[1] = 18;
	ok(fakeip_in_range(&lo) && fakeip_in_range(&hi), "range ends in");
	ok(!fakeip_in_range(&below) && !fakeip_in_range(&above), "neighbours out");
	ok(!fakeip_in_range(&v6) && !fakeip_in_range(NULL), "IPv6 and NULL out");
}

/* The whole /15: every address unique, in order, never .0 or .255. */
static void test_full(void)
{
	struct fakeip *f = fakeip_new(1000000); /* clamped to the range */
	struct ipaddr a, prev = { 4, { 0 } };
	char name[32];
	uint32_t n = 0, bad = 0, first_wrap = 0;
	bool ordered = true;

	for (;; n++) {
		snprintf(name, sizeof(name), "h%u.test", n);
		if (!fakeip_addr_for(f, name, &a))
			break;
		if (!fakeip_in_range(&a) || a.b[3] == 0 || a.b[3] == 255)
			bad++;
		if (n && u32(&a) <= u32(&prev)) {
			if (first_wrap == 0)
				first_wrap = n;
			ordered = false;
			break;
		}
		if (n == 253)
			ok(strcmp(fmt(&a), "198.18.0.254") == 0, "254th: 198.18.0.254");
		if (n == 254)
			ok(strcmp(fmt(&a), "198.18.1.1") == 0, "255th: 198.18.1.1 (skips .255 and .0)");
		prev = a;
	}
	ok(!ordered && first_wrap == 512 * 254, "130048 addresses, then recycling (%u)",
	   first_wrap);
	ok(bad == 0, "none outside range or ending .0/.255");
	is_str(fmt(&prev), "198.19.255.254", "last address 198.19.255.254");
	is_str(fmt(&a), "198.18.0.1", "the least recently used (first) is recycled");
	ok(fakeip_name_for(f, &a, name, sizeof(name)) && strcmp(name, "h130048.test") == 0,
	   "recycled address names the new name");
	ok(fakeip_addr_for(f, "h1.test", &a) && strcmp(fmt(&a), "198.18.0.2") == 0,
	   "h1 kept its address");
	ok(fakeip_addr_for(f, "h0.test", &a) && strcmp(fmt(&a), "198.18.0.3") == 0,
	   "h0 again: it was recycled, now takes the next least recently used (h2's)");
	fakeip_free(f);
}

static void test_lru(void)
{
	struct fakeip *f = fakeip_new(3);
	struct ipaddr a, b, c, d, x;
	char name[64];

	fakeip_addr_for(f, "a.test", &a);
	fakeip_addr_for(f, "b.test", &b);
	fakeip_addr_for(f, "c.test", &c);
	ok(fakeip_addr_for(f, "a.test", &x) && addr_equal(&x, &a), "a touched");
	ok(fakeip_addr_for(f, "d.test", &d) && addr_equal(&d, &b), "d takes b's address (LRU)");
	ok(fakeip_name_for(f, &b, name, sizeof(name)) && strcmp(name, "d.test") == 0,
	   "b's address now names d");
	ok(fakeip_name_for(f, &c, name, sizeof(name)), "name_for touches c");
	ok(fakeip_addr_for(f, "e.test", &x) && addr_equal(&x, &a), "e takes a's (c was touched)");
	ok(fakeip_addr_for(f, "b.test", &x) && addr_equal(&x, &b),
	   "b back: d's address (d older than c)");
	ok(fakeip_name_for(f, &c, name, sizeof(name)) && strcmp(name, "c.test") == 0,
	   "c unchanged");
	fakeip_free(f);

	f = fakeip_new(0);
	ok(fakeip_addr_for(f, "one.test", &a) && fakeip_addr_for(f, "two.test", &b) &&
		   addr_equal(&a, &b),
	   "cap 0 is clamped to 1");
	ok(fakeip_name_for(f, &a, name, sizeof(name)) && strcmp(name, "two.test") == 0,
	   "cap 1 holds the latest");
	fakeip_free(f);
}

struct worker {
	struct fakeip *f;
	int id;
	int errors;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	char name[32], back[32];
	struct ipaddr a;

	for (int i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "n%d.test", (i * 7 + w->id) % 300);
		if (!fakeip_addr_for(w->f, name, &a) || !fakeip_in_range(&a)) {
			w->errors++;
			continue;
		}
		/* another thread may recycle it in between; a name if any is valid */
		if (fakeip_name_for(w->f, &a, back, sizeof(back)) && strncmp(back, "n", 1) != 0)
			w->errors++;
	}
	return NULL;
}

static void test_threads(void)
{
	struct fakeip *f = fakeip_new(256);
	pthread_t t[4];
	struct worker w[4];
	int errors = 0, started = 0;
	struct ipaddr a, b;
	char name[32];
	bool unique = true;

	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ f, i, 0 };
		if (pthread_create(&t[i], NULL, work, &w[i]) == 0)
			started++;
	}
	for (int i = 0; i < started; i++) {
		pthread_join(t[i], NULL);
		errors += w[i].errors;
	}
	ok(started == 4 && errors == 0, "4 threads, no errors");
	/* the table is consistent afterwards: every mapped address maps back */
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "m%d.test", i);
		fakeip_addr_for(f, name, &a);
		if (!fakeip_name_for(f, &a, name + 16, 16) || strcmp(name, name + 16) != 0)
			unique = false;
	}
	ok(unique, "consistent after concurrent use");
	fakeip_addr_for(f, "m299.test", &a);
	fakeip_addr_for(f, "m298.test", &b);
	ok(!addr_equal(&a, &b), "distinct names, distinct addresses");
	fakeip_free(f);
}

int main(void)
{
	test_basic();
	test_range();
	test_full();
	test_lru();
	test_threads();
	return done_testing();
}
