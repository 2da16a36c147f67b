/* fuzz_sandbox.c -- libFuzzer harness for the control API's sandbox body
 * (config_load_sandbox: selectors and policy keys at the top, the path of
 * the bad value on error), and the registry that indexes what it builds */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config.h"
#include "pattern.h"
#include "sandboxes.h"
#include "sbxreg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[CONFIG_ERRLEN], where[CONFIG_WHERELEN], perr[PATTERN_ERRLEN];
	struct sbtable *t = config_load_sandbox("fz", (const char *)data, size, err, where);
	struct sbxreg *r = sbxreg_new();
	struct target l, c;
	static int val;

	if (t) {
		(void)sbxreg_conflict(r, t, 0, NULL);
		sbxreg_put(r, t, &val); /* r owns t now */
		if (target_parse_authority("127.0.0.1:3128", 14, 0, &l, perr) &&
		    target_from_host("10.0.0.1", 8, 1, &c, perr))
			(void)sbxreg_match(r, &l.ip, l.port, &c.ip);
		(void)sbxreg_remove(r, "fz");
	}
	sbxreg_free(r, NULL);
	return 0;
}
