/* For libFuzzer targets that inspect: the inspector and its scratch,
 * compiled once before the first input (under ASan the detector database
 * takes seconds, which counted against the first input's -timeout).
 * Include once, in the target's .c file. */
#ifndef VIGIL_FUZZ_INSPECTOR_H
#define VIGIL_FUZZ_INSPECTOR_H

#include <stdint.h>
#include <stdlib.h>

#include "content/inspect.h"

static struct inspector *ins;
static struct inspect_scratch *scr;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	ins = inspector_new(NULL, 0, NULL, 0);
	if (!ins || !(scr = inspect_scratch_new(ins)))
		abort();
	return 0;
}

#endif
