/* injparam.c -- substitution in named query parameters and form fields:
 * names are compared percent-decoded, values rewritten in place so that
 * every byte not part of a placeholder reaches the upstream as sent */
#include "injparam.h"

#include <string.h>

#include <openssl/crypto.h>

#include "errmsg.h"
#include "inject.h"
#include "policy.h"
#include "secform.h"
#include "secrets.h"

uint64_t injparam_mask(const struct policy *p, uint64_t mask, enum injwhere w)
{
	uint64_t m = 0;

	for (size_t i = 0; i < policy_secret_count(p) && i < SECRETS_MAX; i++)
		if ((mask >> i & 1) && injspec_wants(policy_secret_inject(p, i), w))
			m |= (uint64_t)1 << i;
	return m;
}

/* Percent-decodes t[0..n) ('+' a space) into buf (n bytes of room). */
static size_t pct_decode(const char *t, size_t n, char *buf)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (t[i] == '%' && i + 2 < n && (hi = hex_digit((unsigned char)t[i + 1])) >= 0 &&
		    (lo = hex_digit((unsigned char)t[i + 2])) >= 0) {
			buf[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			buf[o++] = t[i] == '+' ? ' ' : t[i];
		}
	}
	return o;
}

/* The secrets of cand whose spec names the parameter t[0..n) for w. */
static uint64_t named_by(const struct policy *p, uint64_t cand, enum injwhere w, const char *t,
			 size_t n)
{
	char name[3 * INJSPEC_NAME_MAX];
	uint64_t m = 0;
	size_t len;

	if (n > sizeof(name))
		return 0; /* decodes to more than any name */
	len = pct_decode(t, n, name);
	for (size_t i = 0; i < SECRETS_MAX && cand >> i; i++)
		if ((cand >> i & 1) && injspec_names(policy_secret_inject(p, i), w, name, len))
			m |= (uint64_t)1 << i;
	return m;
}

/* Appends v percent-encoded (unreserved bytes raw). */
static bool pct_encode(const char *v, size_t n, struct obuf *out)
{
	static const char hex[] = "0123456789ABCDEF";
	char chunk[96];
	size_t k = 0;
	bool ok = true;

	for (size_t i = 0; i < n && ok; i++) {
		unsigned char c = (unsigned char)v[i];
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~') {
			chunk[k++] = (char)c;
		} else {
			chunk[k++] = '%';
			chunk[k++] = hex[c >> 4];
			chunk[k++] = hex[c & 15];
		}
		if (k > sizeof(chunk) - 3) {
			ok = obuf_add(out, chunk, k);
			k = 0;
		}
	}
	ok = ok && obuf_add(out, chunk, k);
	OPENSSL_cleanse(chunk, sizeof(chunk));
	return ok;
}

/* One value v[0..n): placeholders of the secrets in who replaced. */
static bool rewrite_value(const struct secretset *s, uint64_t who, const char *v, size_t n,
			  struct obuf *out, uint64_t *used)
{
	size_t lit = 0, i = 0;

	while (i < n) {
		size_t m = 0, k;
		if (v[i] != 'e' && v[i] != '%') {
			i++;
			continue;
		}
		for (k = 0; k < SECRETS_MAX && who >> k; k++) {
			struct secform f = { .kind = SECFORM_PCT, .len = PLACEHOLDER_LEN };
			if (!(who >> k & 1))
				continue;
			f.v = secretset_placeholder(s, k);
			if ((m = secform_match(&f, v + i, n - i, true)) > 0)
				break;
		}
		if (!m) {
			i++;
			continue;
		}
		size_t vlen;
		const char *val = secretset_value(s, k, &vlen);
		if (!obuf_add(out, v + lit, i - lit) || !pct_encode(val, vlen, out))
			return false;
		*used |= (uint64_t)1 << k;
		i = lit = i + m;
	}
	return obuf_add(out, v + lit, n - lit);
}

bool injparam_rewrite(const struct policy *p, const struct secretset *s, uint64_t mask,
		      enum injwhere w, const char *t, size_t n, struct obuf *out, uint64_t *used)
{
	size_t start = out->len, i = 0, lit = 0;
	uint64_t cand = injparam_mask(p, mask, w), u = 0;
	bool ok = false;

	while (cand && i < n) {
		const char *amp = memchr(t + i, '&', n - i);
		size_t end = amp ? (size_t)(amp - t) : n;
		const char *eq = memchr(t + i, '=', end - i);
		uint64_t who;

		if (eq && (who = named_by(p, cand, w, t + i, (size_t)(eq - t) - i)) != 0) {
			size_t vs = (size_t)(eq - t) + 1;
			if (!obuf_add(out, t + lit, vs - lit) ||
			    !rewrite_value(s, who, t + vs, end - vs, out, &u))
				goto out;
			lit = end;
		}
		i = end + 1;
	}
	ok = obuf_add(out, t + lit, n - lit);
	if (used)
		*used |= u;
out:
	if (!ok && out->len > start) {
		OPENSSL_cleanse(out->p + start, out->len - start);
		out->len = start;
		out->p[start] = '\0';
	}
	return ok;
}
