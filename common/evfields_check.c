/* evfields-check: run by the build before linking any binary. Fails it when
 * common/evfields.h and proto/vigil/audit.proto disagree about the audit
 * event's fields (one added, renumbered or retyped in one place only).
 * Must never: be linked into a product binary (the Makefile keeps it out of
 * libcommon). */
#include <stdio.h>
#include "evcodec.h"

int main(void)
{
	char err[256];
	if (evcodec_fields_check(err, sizeof(err))) {
		fprintf(stderr, "evfields-check: %s\n", err);
		return 1;
	}
	return 0;
}
