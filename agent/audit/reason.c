/* reason: the names and texts of enum reason, generated from REASON_LIST. */
#include <stddef.h>
#include "audit/reason.h"

static const char *const names[REASON__COUNT] = {
#define REASON_NAME(e, name, text) [REASON_##e] = name,
	REASON_LIST(REASON_NAME)
#undef REASON_NAME
};

static const char *const texts[REASON__COUNT] = {
#define REASON_TEXT(e, name, text) [REASON_##e] = text,
	REASON_LIST(REASON_TEXT)
#undef REASON_TEXT
};

const char *reason_name(enum reason r)
{
	return r > REASON_NONE && r < REASON__COUNT ? names[r] : NULL;
}

const char *reason_text(enum reason r)
{
	return r > REASON_NONE && r < REASON__COUNT ? texts[r] : NULL;
}
