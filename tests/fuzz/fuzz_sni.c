/* libFuzzer target: the ClientHello reader must never read out of bounds,
 * and a name it returns is always a valid lowercase host name without a
 * trailing dot. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "net/sni.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char name[256];
	enum sni_status st = sni_parse(data, size, name, sizeof(name));
	if (st == SNI_FOUND) {
		size_t n = strlen(name);
		if (n == 0 || n > 253 || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789.-_") != n ||
		    name[n - 1] == '.')
			abort();
	}
	/* A prefix of an input that parsed completely may only ask for more. */
	if (st == SNI_FOUND || st == SNI_ABSENT || st == SNI_BAD_NAME) {
		for (size_t cut = 0; cut < size; cut += 1 + size / 16) {
			enum sni_status p = sni_parse(data, cut, name, sizeof(name));
			if (p != SNI_NEED_MORE && p != st && p != SNI_MALFORMED && p != SNI_NOT_TLS &&
			    p != SNI_BAD_NAME)
				abort();
		}
	}
	return 0;
}
