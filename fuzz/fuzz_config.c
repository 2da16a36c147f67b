/* fuzz_config.c -- libFuzzer harness for the JSON policy loader (config.c) */
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "pattern.h"
#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[CONFIG_ERRLEN];
	struct policy *p = policy_new();

	if (config_load_buffer(p, "fuzz.json", (const char *)data, size, err)) {
		/* exercise what was loaded */
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
	policy_unref(p);
	return 0;
}
