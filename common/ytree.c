/* ytree: builds the tree from libyaml's event stream. Depth and size are
 * bounded so that a hostile policy or config file cannot exhaust memory or
 * the stack. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>
#include "ytree.h"

#define YTREE_MAX_DEPTH 32
#define YTREE_MAX_FILE  (16u << 20)

static struct ynode *node_new(enum ynode_kind kind, int line)
{
	struct ynode *n = calloc(1, sizeof(*n));
	if (n) {
		n->kind = kind;
		n->line = line;
	}
	return n;
}

void ytree_free(struct ynode *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->nkids; i++)
		ytree_free(n->kids[i]);
	free(n->kids);
	free(n->str);
	free(n);
}

static int node_add(struct ynode *parent, struct ynode *kid)
{
	struct ynode **k = realloc(parent->kids, (parent->nkids + 1) * sizeof(*k));
	if (!k)
		return -ENOMEM;
	parent->kids = k;
	parent->kids[parent->nkids++] = kid;
	return 0;
}

int ytree_parse(const char *name, const char *buf, size_t len, struct ynode **root, char *err,
		size_t errlen)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	struct ynode *stack[YTREE_MAX_DEPTH + 1];
	int depth = 0, ret = 0, docs = 0;
	bool done = false;
	struct ynode *top = NULL;

	*root = NULL;
	if (!yaml_parser_initialize(&parser)) {
		snprintf(err, errlen, "%s: cannot initialize YAML parser", name);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);

	while (!done) {
		if (!yaml_parser_parse(&parser, &ev)) {
			snprintf(err, errlen, "%s:%zu: %s%s%s", name, parser.problem_mark.line + 1,
				 parser.problem ? parser.problem : "YAML syntax error",
				 parser.context ? " " : "", parser.context ? parser.context : "");
			ret = -EINVAL;
			goto out;
		}
		int line = (int)ev.start_mark.line + 1;
		struct ynode *n = NULL;

		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (++docs > 1) {
				snprintf(err, errlen, "%s:%d: only one YAML document is allowed", name, line);
				ret = -EINVAL;
			}
			break;
		case YAML_ALIAS_EVENT:
			snprintf(err, errlen, "%s:%d: YAML aliases are not supported", name, line);
			ret = -EINVAL;
			break;
		case YAML_SCALAR_EVENT:
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if ((ev.type == YAML_SCALAR_EVENT && ev.data.scalar.anchor) ||
			    (ev.type == YAML_SEQUENCE_START_EVENT && ev.data.sequence_start.anchor) ||
			    (ev.type == YAML_MAPPING_START_EVENT && ev.data.mapping_start.anchor)) {
				snprintf(err, errlen, "%s:%d: YAML anchors are not supported", name, line);
				ret = -EINVAL;
				break;
			}
			n = node_new(ev.type == YAML_SCALAR_EVENT ? YNODE_SCALAR :
				     ev.type == YAML_SEQUENCE_START_EVENT ? YNODE_SEQ : YNODE_MAP, line);
			if (!n) {
				ret = -ENOMEM;
				break;
			}
			if (ev.type == YAML_SCALAR_EVENT) {
				n->str = strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
				n->quoted = ev.data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
					    ev.data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
				if (!n->str || strlen(n->str) != ev.data.scalar.length) {
					snprintf(err, errlen, "%s:%d: NUL byte in value", name, line);
					ret = n->str ? -EINVAL : -ENOMEM;
					ytree_free(n);
					break;
				}
			}
			if (depth == 0) {
				if (top) {
					ytree_free(n);
					snprintf(err, errlen, "%s:%d: unexpected second root", name, line);
					ret = -EINVAL;
					break;
				}
				top = n;
			} else if ((ret = node_add(stack[depth - 1], n)) < 0) {
				ytree_free(n);
				break;
			}
			if (ev.type != YAML_SCALAR_EVENT) {
				if (depth >= YTREE_MAX_DEPTH) {
					snprintf(err, errlen, "%s:%d: nesting deeper than %d", name, line,
						 YTREE_MAX_DEPTH);
					ret = -EINVAL;
					break;
				}
				stack[depth++] = n;
			}
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			depth--;
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
		if (ret)
			goto out;
	}
	if (top && top->kind != YNODE_MAP) {
		snprintf(err, errlen, "%s:%d: expected a mapping of keys at the top level", name, top->line);
		ret = -EINVAL;
		goto out;
	}
	/* Duplicate keys are almost always a mistake in a security policy. */
	if (top) {
		struct ynode *todo[256];
		size_t nt = 0;
		todo[nt++] = top;
		while (nt) {
			struct ynode *m = todo[--nt];
			for (size_t i = 0; i < m->nkids; i++)
				if (m->kids[i]->kind != YNODE_SCALAR && nt < 256)
					todo[nt++] = m->kids[i];
			if (m->kind != YNODE_MAP)
				continue;
			for (size_t i = 0; i < ytree_map_len(m); i++) {
				const struct ynode *k = ytree_map_key(m, i);
				if (k->kind != YNODE_SCALAR) {
					snprintf(err, errlen, "%s:%d: keys must be plain strings", name, k->line);
					ret = -EINVAL;
					goto out;
				}
				for (size_t j = 0; j < i; j++)
					if (!strcmp(ytree_map_key(m, j)->str, k->str)) {
						snprintf(err, errlen, "%s:%d: duplicate key '%s' (first at line %d)",
							 name, k->line, k->str, ytree_map_key(m, j)->line);
						ret = -EINVAL;
						goto out;
					}
			}
		}
	}
	*root = top;
	top = NULL;
out:
	ytree_free(top);
	yaml_parser_delete(&parser);
	return ret;
}

int ytree_load(const char *path, struct ynode **root, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int ret;

	*root = NULL;
	if (!f) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return ret;
	}
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 8192;
			if (cap > YTREE_MAX_FILE) {
				snprintf(err, errlen, "%s: file larger than %u bytes", path, YTREE_MAX_FILE);
				ret = -EFBIG;
				goto out;
			}
			char *nb = realloc(buf, cap);
			if (!nb) {
				ret = -ENOMEM;
				goto out;
			}
			buf = nb;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		if (n == 0)
			break;
		len += n;
	}
	if (ferror(f)) {
		ret = -EIO;
		snprintf(err, errlen, "%s: read error", path);
		goto out;
	}
	ret = ytree_parse(path, buf ? buf : "", len, root, err, errlen);
out:
	free(buf);
	fclose(f);
	return ret;
}

const struct ynode *ytree_get(const struct ynode *m, const char *key)
{
	if (!m || m->kind != YNODE_MAP)
		return NULL;
	for (size_t i = 0; i < ytree_map_len(m); i++)
		if (!strcmp(ytree_map_key(m, i)->str, key))
			return ytree_map_val(m, i);
	return NULL;
}

static int want_scalar(const char *file, const struct ynode *n, const char *what, char *err,
		       size_t errlen)
{
	if (n->kind == YNODE_SCALAR)
		return 0;
	snprintf(err, errlen, "%s:%d: expected %s", file, n->line, what);
	return -EINVAL;
}

int ytree_bool(const char *file, const struct ynode *n, bool *out, char *err, size_t errlen)
{
	if (want_scalar(file, n, "true or false", err, errlen))
		return -EINVAL;
	if (!strcasecmp(n->str, "true") || !strcasecmp(n->str, "yes") || !strcasecmp(n->str, "on"))
		*out = true;
	else if (!strcasecmp(n->str, "false") || !strcasecmp(n->str, "no") || !strcasecmp(n->str, "off"))
		*out = false;
	else {
		snprintf(err, errlen, "%s:%d: expected true or false, got '%s'", file, n->line, n->str);
		return -EINVAL;
	}
	return 0;
}

/* Parses digits followed by an optional unit from units[]; mult[] gives the factor. */
static int parse_scaled(const char *file, const struct ynode *n, const char *what,
			const char *const *units, const unsigned long long *mult, size_t nunits,
			unsigned long long *out, char *err, size_t errlen)
{
	const char *s;
	char *end;
	unsigned long long v;

	if (want_scalar(file, n, what, err, errlen))
		return -EINVAL;
	s = n->str;
	if (*s < '0' || *s > '9')
		goto bad;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		goto bad;
	if (*end) {
		size_t i;
		for (i = 0; i < nunits; i++)
			if (!strcmp(end, units[i]))
				break;
		if (i == nunits)
			goto bad;
		if (v > ~0ULL / mult[i])
			goto bad;
		v *= mult[i];
	} else if (nunits) {
		v *= mult[0];
	}
	*out = v;
	return 0;
bad:
	snprintf(err, errlen, "%s:%d: expected %s, got '%s'", file, n->line, what, n->str);
	return -EINVAL;
}

int ytree_u64(const char *file, const struct ynode *n, unsigned long long min,
	      unsigned long long max, unsigned long long *out, char *err, size_t errlen)
{
	unsigned long long v;
	if (parse_scaled(file, n, "a non-negative integer", NULL, NULL, 0, &v, err, errlen))
		return -EINVAL;
	if (v < min || v > max) {
		snprintf(err, errlen, "%s:%d: %llu is out of range [%llu, %llu]", file, n->line, v, min,
			 max);
		return -ERANGE;
	}
	*out = v;
	return 0;
}

int ytree_duration_ms(const char *file, const struct ynode *n, unsigned long long *out, char *err,
		      size_t errlen)
{
	/* The bare-number unit (first entry) is seconds. */
	static const char *const units[] = { "s", "ms", "m", "h", "d" };
	static const unsigned long long mult[] = { 1000, 1, 60000, 3600000, 86400000 };
	return parse_scaled(file, n, "a duration such as 500ms, 30s, 5m, 2h, 7d", units, mult, 5,
			    out, err, errlen);
}

int ytree_size(const char *file, const struct ynode *n, unsigned long long *out, char *err,
	       size_t errlen)
{
	static const char *const units[] = { "", "k", "K", "M", "G" };
	static const unsigned long long mult[] = { 1, 1ULL << 10, 1ULL << 10, 1ULL << 20, 1ULL << 30 };
	return parse_scaled(file, n, "a size such as 65536, 512k, 10M", units, mult, 5, out, err,
			    errlen);
}

int ytree_strlist(const char *file, const struct ynode *n, const char ***out, size_t *count,
		  char *err, size_t errlen)
{
	size_t cnt = n->kind == YNODE_SCALAR ? 1 : n->nkids;
	const char **v;

	if (n->kind == YNODE_MAP) {
		snprintf(err, errlen, "%s:%d: expected a string or a list of strings", file, n->line);
		return -EINVAL;
	}
	v = calloc(cnt + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	if (n->kind == YNODE_SCALAR) {
		v[0] = n->str;
	} else {
		for (size_t i = 0; i < cnt; i++) {
			if (n->kids[i]->kind != YNODE_SCALAR) {
				snprintf(err, errlen, "%s:%d: expected a string in this list", file,
					 n->kids[i]->line);
				free(v);
				return -EINVAL;
			}
			v[i] = n->kids[i]->str;
		}
	}
	*out = v;
	*count = cnt;
	return 0;
}
