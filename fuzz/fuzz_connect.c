/* fuzz_connect.c -- libFuzzer harness for CONNECT / Host authorities
 * (target_parse_authority): a parsed target is normalised and re-parses */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pattern.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[PATTERN_ERRLEN], again[HOST_MAX + 16];
	struct target t, u;
	uint16_t dflt = size ? (uint16_t)(data[0] % 2 ? 443 : 0) : 0;

	if (!target_parse_authority((const char *)data, size, dflt, &t, err)) {
		if (strncmp(err, "invalid authority \"", 19) != 0 || strchr(err, '\n'))
			abort();
		return 0;
	}
	if (t.port == 0 || t.host[0] == '\0' || strlen(t.host) > HOST_MAX)
		abort();
	for (const char *c = t.host; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			abort(); /* names are lower-case */
	/* the normal form is a fixed point */
	snprintf(again, sizeof(again), t.is_ip && t.ip.family == 6 ? "[%s]:%u" : "%s:%u",
		 t.host, t.port);
	if (!target_parse_authority(again, strlen(again), 0, &u, err) || u.is_ip != t.is_ip ||
	    u.port != t.port || strcmp(u.host, t.host) != 0 ||
	    (t.is_ip && !addr_equal(&u.ip, &t.ip)))
		abort();
	if (!target_from_host(t.host, strlen(t.host), t.port, &u, err) || strcmp(u.host, t.host))
		abort();
	return 0;
}
