/* libFuzzer target: a command line as /proc/<pid>/cmdline holds it (NUL
 * separated, untrusted: any user's program chooses its argv): no crash,
 * and what comes back is a name in package characters, bounded, that is
 * one of the arguments (or a part of one) or the kernel's comm (argv[0]
 * renamed, exec -a), never a piece of two. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "content/mcplaunch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const cmds[] = { "corp-tools-server" };
	const char *argv[MCPLAUNCH_MAX_ARGS];
	char buf[4096 + 1], comm[VIGIL_COMM_LEN];
	struct mcplaunch l;
	size_t argc = 0, n;

	if (size < 1)
		return 0;
	/* first byte: which comm the kernel would report */
	static const char *const comms[] = { "npx", "uvx", "pipx", "docker", "podman", "bunx", "mcp-server-fuzz",
					     "corp-tools-serv", "sh" };
	snprintf(comm, sizeof(comm), "%s", comms[data[0] % (sizeof(comms) / sizeof(comms[0]))]);
	n = size - 1 < sizeof(buf) - 1 ? size - 1 : sizeof(buf) - 1;
	memcpy(buf, data + 1, n);
	buf[n] = 0;
	for (size_t i = 0; i < n && argc < MCPLAUNCH_MAX_ARGS; i += strlen(buf + i) + 1)
		argv[argc++] = buf + i;
	if (!mcplaunch_classify(comm, argv, argc, cmds, 1, &l))
		return 0;
	size_t pl = strnlen(l.package, sizeof(l.package));
	if (!pl || pl >= sizeof(l.package) || strnlen(l.program, sizeof(l.program)) >= sizeof(l.program))
		abort();
	for (size_t i = 0; i < pl; i++)
		if (!isalnum((unsigned char)l.package[i]) && !strchr("@/._+-", l.package[i]))
			abort();
	bool inside = !strcmp(l.package, comm);
	for (size_t i = 0; i < argc && !inside; i++)
		inside = strstr(argv[i], l.package) != NULL;
	if (!inside)
		abort();
	return 0;
}
