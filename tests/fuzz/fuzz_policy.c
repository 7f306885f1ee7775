/* libFuzzer target: the policy parser on any file: no crash, no leak; a
 * refusal always lists at least one "name:line: reason" line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct policy *p = NULL;
	char *errs = NULL;
	struct policy_load_opts opts = { .dpkg_info_dir = "/nonexistent" };
	if (policy_parse("fuzz.yaml", (const char *)data, size, &opts, &p, &errs) == 0) {
		policy_unref(p);
	} else if (errs && strncmp(errs, "fuzz.yaml", 9) != 0) {
		abort();
	}
	free(errs);
	return 0;
}
