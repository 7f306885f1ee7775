/* console: the table of embedded files (see console.h). */
#include <string.h>
#include "console.h"

const struct console_file *console_lookup(const char *path)
{
	if (!strcmp(path, "/"))
		path = "/index.html";
	for (const struct console_file *f = console_files; f->name; f++)
		if (!strcmp(f->name, path))
			return f;
	return NULL;
}

const char *console_ctype(const struct console_file *f)
{
	const char *dot = strrchr(f->name, '.');
	if (dot && !strcmp(dot, ".html"))
		return "text/html; charset=utf-8";
	if (dot && !strcmp(dot, ".js"))
		return "text/javascript; charset=utf-8";
	if (dot && !strcmp(dot, ".css"))
		return "text/css; charset=utf-8";
	return "application/octet-stream";
}
