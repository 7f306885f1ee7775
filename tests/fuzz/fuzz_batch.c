/* libFuzzer target: the collector's batch decoder (zstd + protobuf) on
 * bytes from the network: no crash, no leak, no memory blow-up (the
 * decompressed size is capped), and whatever parses can be checked and
 * verified without crashing. */
#include <stdint.h>
#include <stdlib.h>
#include "evcodec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct evcodec_batch *b = NULL;
	char err[256];
	static const uint8_t zero_key[32];
	if (evcodec_batch_parse(data, size, &b, err, sizeof(err)) == 0) {
		evcodec_batch_check(b, err, sizeof(err));
		evcodec_batch_verify(b, zero_key);
		evcodec_batch_free(b);
	}
	return 0;
}
