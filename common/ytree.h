/* ytree: a YAML document loaded (with libyaml) into a small tree whose every
 * node remembers its line, so that config and policy loaders can report
 * "file:line: reason" for any mistake. Anchors, aliases, tags and multiple
 * documents are refused: config files should be plain. */
#ifndef VIGIL_YTREE_H
#define VIGIL_YTREE_H

#include <stdbool.h>
#include <stddef.h>

enum ynode_kind { YNODE_SCALAR, YNODE_SEQ, YNODE_MAP };

struct ynode {
	enum ynode_kind kind;
	int line;                 /* 1-based */
	char *str;                /* YNODE_SCALAR: the value (NUL-terminated) */
	bool quoted;              /* scalar was quoted ("..." or '...') */
	struct ynode **kids;      /* SEQ: items; MAP: key, value, key, value, ... */
	size_t nkids;
};

/* Loads FILE. Returns the root (a MAP for non-empty files, NULL root with 0 for
 * an empty file) or -errno with "file:line: reason" in err. */
int ytree_load(const char *path, struct ynode **root, char *err, size_t errlen);
/* Same for a buffer; name is used in messages. */
int ytree_parse(const char *name, const char *buf, size_t len, struct ynode **root, char *err,
		size_t errlen);
void ytree_free(struct ynode *n);

/* Map access: number of pairs, key/value of pair i. */
static inline size_t ytree_map_len(const struct ynode *m) { return m->nkids / 2; }
static inline const struct ynode *ytree_map_key(const struct ynode *m, size_t i) { return m->kids[2 * i]; }
static inline const struct ynode *ytree_map_val(const struct ynode *m, size_t i) { return m->kids[2 * i + 1]; }
/* The value for key in map m, or NULL. */
const struct ynode *ytree_get(const struct ynode *m, const char *key);

/* Scalar conversions; return 0 or -EINVAL and write "file:line: reason" to err. */
int ytree_bool(const char *file, const struct ynode *n, bool *out, char *err, size_t errlen);
int ytree_u64(const char *file, const struct ynode *n, unsigned long long min,
	      unsigned long long max, unsigned long long *out, char *err, size_t errlen);
/* A duration such as 500ms, 30s, 5m, 2h, 7d (bare number = seconds), in ms. */
int ytree_duration_ms(const char *file, const struct ynode *n, unsigned long long *out, char *err,
		      size_t errlen);
/* A size such as 1048576, 512k, 10M, 1G (powers of 1024), in bytes. */
int ytree_size(const char *file, const struct ynode *n, unsigned long long *out, char *err,
	       size_t errlen);
/* A scalar or a sequence of scalars as a NULL-terminated, newly allocated
 * array of borrowed strings (pointers into the tree). */
int ytree_strlist(const char *file, const struct ynode *n, const char ***out, size_t *count,
		  char *err, size_t errlen);

#endif
