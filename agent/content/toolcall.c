/* toolcall: tool calls in model answers (see toolcall.h).
 *
 * One json_scan pass. A call is a "name" string whose object is either
 * typed as a call (`"type": "tool_use"` / `"function_call"`, Anthropic and
 * Responses) or sits where only calls live (OpenAI chat
 * `tool_calls[i].function`, Gemini `functionCall`). "type" may come after
 * "name" in the object, so names and typed objects are collected by a
 * hash of their object's path and matched at the end. */
#include <stdio.h>
#include <string.h>
#include "content/json.h"
#include "content/toolcall.h"

#define SLOTS 32

struct scan {
	uint64_t name_obj[SLOTS];
	char name[SLOTS][PROVIDER_TOOL_NAME_MAX];
	bool sure[SLOTS];               /* in a place only calls live */
	unsigned nn;
	uint64_t typed_obj[SLOTS];
	unsigned nt;
	struct json_text tmp;
};

/* FNV-1a over the path of the object holding the value (all but the last step). */
static uint64_t obj_hash(const struct json_path *p)
{
	uint64_t h = 1469598103934665603ull;
	for (unsigned i = 0; i + 1 < p->depth; i++) {
		const struct json_path_elem *e = &p->elem[i];
		if (e->key)
			for (uint32_t k = 0; k < e->key_len; k++)
				h = (h ^ (uint8_t)e->key[k]) * 1099511628211ull;
		else
			h = (h ^ (e->index + 0x100u)) * 1099511628211ull;
		h = (h ^ 0xff) * 1099511628211ull;
	}
	return h;
}

static bool key_at(const struct json_path *p, unsigned from_end, const char *lit)
{
	if (p->depth < from_end)
		return false;
	const struct json_path_elem *e = &p->elem[p->depth - from_end];
	return e->key && json_raw_equals(e->key, e->key_len, lit);
}

static void copy_name(char *out, const struct json_text *t)
{
	size_t n = t->len < PROVIDER_TOOL_NAME_MAX - 1 ? t->len : PROVIDER_TOOL_NAME_MAX - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)t->data[i];
		out[i] = c < 0x20 || c == 0x7f || c == ',' || c == ':' ? '_' : (char)c;
	}
	out[n] = 0;
}

static int on_str(void *arg, const char *doc, const struct json_string *s)
{
	struct scan *sc = arg;
	const struct json_path *p = s->path;
	if (s->is_key || s->kind != JSON_STRING || p->depth < 1)
		return 0;
	if (key_at(p, 1, "type") && sc->nt < SLOTS &&
	    (json_raw_equals(doc + s->off, s->len, "tool_use") ||
	     json_raw_equals(doc + s->off, s->len, "function_call"))) {
		sc->typed_obj[sc->nt++] = obj_hash(p);
		return 0;
	}
	if (!key_at(p, 1, "name") || sc->nn >= SLOTS)
		return 0;
	bool sure = (key_at(p, 2, "function") && key_at(p, 4, "tool_calls")) || key_at(p, 2, "functionCall");
	if (json_decode(doc + s->off, s->len, &sc->tmp) || !sc->tmp.len)
		return 0;
	copy_name(sc->name[sc->nn], &sc->tmp);
	sc->sure[sc->nn] = sure;
	sc->name_obj[sc->nn++] = obj_hash(p);
	return 0;
}

static int add(struct toolcall_set *set, const char *name)
{
	for (unsigned i = 0; i < set->n; i++)
		if (!strcmp(set->names[i], name)) {
			set->counts[i]++;
			return (int)i;
		}
	if (set->n >= TOOLCALL_MAX) {
		set->truncated = true;
		return -1;
	}
	memcpy(set->names[set->n], name, PROVIDER_TOOL_NAME_MAX);
	set->counts[set->n] = 1;
	return (int)set->n++;
}

int toolcall_scan(const char *doc, size_t len, struct toolcall_set *set, int *first_new)
{
	struct scan sc;
	int found = 0;

	if (first_new)
		*first_new = -1;
	/* cheap reject: most streamed events carry no call */
	if (!memmem(doc, len, "\"name\"", 6))
		return 0;
	memset(&sc, 0, sizeof(sc));
	if (json_scan(doc, len, on_str, &sc) != 0) {
		json_text_free(&sc.tmp);
		return 0;
	}
	for (unsigned i = 0; i < sc.nn; i++) {
		bool call = sc.sure[i];
		for (unsigned k = 0; !call && k < sc.nt; k++)
			call = sc.typed_obj[k] == sc.name_obj[i];
		if (!call)
			continue;
		int at = add(set, sc.name[i]);
		if (first_new && *first_new < 0)
			*first_new = at;
		found++;
	}
	json_text_free(&sc.tmp);
	return found;
}

const char *toolcall_summary(struct toolcall_set *set)
{
	size_t n = 0, cap = sizeof(set->summary);
	set->summary[0] = 0;
	for (unsigned i = 0; i < set->n && n < cap; i++) {
		int w = snprintf(set->summary + n, cap - n, "%s%s:%u", i ? "," : "", set->names[i], set->counts[i]);
		if (w < 0)
			break;
		n += (size_t)w;
	}
	return set->summary;
}
