/* console: the SOC's web console. One page (collector/console/index.html:
 * the login form and the empty frames of the views) plus its script and
 * style sheet, embedded in vigil-collector at build time by scripts/embed.sh
 * (nothing to install, no CDN, works offline). The files hold no data:
 * every view is drawn by console.js from the JSON API, which the bearer
 * token guards as for the CLI, so these files are all that is served
 * without a token.
 *
 * Must never: embed data or a token in a served file, or map a path onto the
 * file system (a lookup in a fixed table, nothing else). */
#ifndef VIGIL_CONSOLE_H
#define VIGIL_CONSOLE_H

#include <stddef.h>

struct console_file {
	const char *name;                /* "/index.html" */
	const unsigned char *data;
	size_t len;
};

/* Generated (build/gen/console_assets.c); a NULL name ends it. */
extern const struct console_file console_files[];

/* The file served at path ("/" is the page), or NULL. */
const struct console_file *console_lookup(const char *path);
/* Its Content-Type, from the name's extension. */
const char *console_ctype(const struct console_file *f);

#endif
