/* libFuzzer target: a command line as /proc/<pid>/cmdline holds it (NUL
 * separated, untrusted: any user's program chooses its argv): no crash,
 * and what comes back is a name in package characters, bounded, that is
 * one of the arguments (or a part of one) or the kernel's comm (argv[0]
 * renamed, exec -a), never a piece of two. And the audited command line
 * (mcplaunch_command) of the same argv, with a GitHub token and an
 * --api-key value planted among the arguments: bounded, NUL-terminated,
 * no control characters, and neither planted value shown, whatever the
 * arguments around them. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "content/inspect.h"
#include "content/mcplaunch.h"

#define PLANT_TOKEN "ghp_R8x2Kd9QwLm4Tz7Vb1Nc5Hy3Pj6Fg0Ua2Se8"
#define PLANT_KEY "zqPlantedKeyValue"

static void check_command(const char *const *argv, size_t argc, bool cut, const uint8_t *data, size_t size)
{
	static struct inspect_scratch *s;
	static struct inspect_result r;
	static char out[MCPLAUNCH_COMMAND_MAX];
	const char *args[MCPLAUNCH_MAX_ARGS + 4];
	size_t n = 0, k = argc / 2;

	if (!s) {
		struct inspector *ins = inspector_new(NULL, 0, NULL, 0);
		if (!ins || !(s = inspect_scratch_new(ins)))
			abort();
		inspector_unref(ins);
		inspect_result_init(&r);
	}
	for (size_t i = 0; i < argc && n < MCPLAUNCH_MAX_ARGS - 4; i++) {
		if (i == k) {
			args[n++] = PLANT_TOKEN;
			args[n++] = "--api-key";
			args[n++] = PLANT_KEY;
		}
		args[n++] = argv[i];
	}
	if (n < 3) {
		args[n++] = PLANT_TOKEN;
		args[n++] = "--api-key";
		args[n++] = PLANT_KEY;
	}
	args[n++] = "end";   /* a cut drops the last argument, never a planted one */
	if (mcplaunch_command(s, args, n, cut, out, sizeof(out), &r))
		abort();
	size_t ol = strnlen(out, sizeof(out));
	if (ol >= sizeof(out))
		abort();
	for (size_t i = 0; i < ol; i++)
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
			abort();
	/* planted values never shown, unless the input itself holds them */
	if (strstr(out, "R8x2Kd9QwLm4Tz7V") && !memmem(data, size, "R8x2Kd9QwLm4Tz7V", 16))
		abort();
	if (strstr(out, PLANT_KEY) && !memmem(data, size, PLANT_KEY, strlen(PLANT_KEY)))
		abort();
}

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
	check_command(argv, argc, data[0] & 0x80, data + 1, n);
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
