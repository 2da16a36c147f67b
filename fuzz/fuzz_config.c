/* fuzz_config.c -- libFuzzer harness for the JSON policy loader (config.c,
 * config_rules.c, config_sandboxes.c), including the "sandboxes" section of a
 * main policy file and the lookup of a connection's sandbox in the table it
 * builds */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config.h"
#include "pattern.h"
#include "policy.h"
#include "sandboxes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* exercise what was loaded */
static void use_policy(const struct policy *p)
{
	struct target t;
	struct decision d;
	char perr[PATTERN_ERRLEN];

	if (target_from_host("api.example.com", 15, 443, &t, perr)) {
		policy_check_target(p, &t, &d);
		(void)policy_intercepts(p, &t);
	}
	for (size_t i = 0; i < policy_secret_count(p); i++)
		(void)policy_secret_name(p, i);
}

static void use_table(const struct sbtable *t)
{
	static const char *const addrs[] = { "10.200.1.2", "127.0.0.1", "fd00::1" };
	struct target l;
	char perr[PATTERN_ERRLEN];

	if (!target_parse_authority("127.0.0.1:3128", 14, 0, &l, perr))
		return;
	for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		struct target c;
		if (target_from_host(addrs[i], strlen(addrs[i]), 1, &c, perr))
			(void)sbx_match(t, &l.ip, l.port, &c.ip);
	}
	for (size_t i = 0; i < sbx_count(t); i++)
		if (sbx_policy(t, i))
			use_policy(sbx_policy(t, i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[CONFIG_ERRLEN];
	struct policy *p = policy_new();
	struct sbtable *t = NULL;

	/* a name without a directory: sandbox policy files resolve as given
	 * (the loader refuses anything but regular files) */
	if (config_load_buffer_main(p, "fuzz.json", (const char *)data, size, size & 1, &t, err)) {
		if (t)
			use_table(t);
		else
			use_policy(p);
	}
	sbx_free(t);
	policy_unref(p);
	return 0;
}
