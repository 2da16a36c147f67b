/* errmsg.c -- filling caller-supplied error buffers, and hex digits */
#include "errmsg.h"

#include <stdarg.h>
#include <stdio.h>

#include <openssl/err.h>

void errmsg_set(char *err, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (!err || !cap)
		return;
	va_start(ap, fmt);
	vsnprintf(err, cap, fmt, ap);
	va_end(ap);
}

void errmsg_ossl(char *err, size_t cap, const char *what)
{
	char buf[160] = "unknown OpenSSL error";
	unsigned long e = ERR_get_error();

	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	errmsg_set(err, cap, "%s: %s", what, buf);
}

int hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}
