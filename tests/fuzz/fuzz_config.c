/* libFuzzer target: the agent's config loader (YAML with line numbers) never
 * crashes on any file, and every refusal carries "file:line: reason" or
 * "file: reason". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], err[1024];
	struct config *c = NULL;
	snprintf(path, sizeof(path), "/tmp/vigil-fuzz-config-%d.yaml", (int)getpid());
	FILE *f = fopen(path, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	err[0] = 0;
	if (config_load(path, &c, err, sizeof(err)) == 0)
		config_free(c);
	else if (strncmp(err, path, strlen(path)) != 0)
		abort();
	unlink(path);
	return 0;
}
