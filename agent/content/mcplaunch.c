/* mcplaunch: stdio MCP server launches (see mcplaunch.h). */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "content/mcplaunch.h"
#include "config.h"

/* How each launcher names what it runs. */
enum launcher { L_NONE, L_NPX, L_UVX, L_PIPX, L_DOCKER, L_SELF };

static const struct {
	const char *name;
	enum launcher kind;
} launchers[] = {
	{ "npx", L_NPX }, { "bunx", L_NPX }, { "pnpx", L_NPX }, { "uvx", L_UVX }, { "pipx", L_PIPX },
	{ "docker", L_DOCKER }, { "podman", L_DOCKER },
};
#define N_LAUNCHERS (sizeof(launchers) / sizeof(launchers[0]))

size_t mcplaunch_watch_names(const struct config *cfg, const char **out, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < N_LAUNCHERS && n < max; i++)
		out[n++] = launchers[i].name;
	for (size_t i = 0; cfg && i < cfg->n_mcp_commands && n < max; i++)
		out[n++] = cfg->mcp_commands[i];
	return n;
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

/* comm is the file name cut to VIGIL_COMM_LEN - 1 bytes. */
static bool is_comm_of(const char *comm, const char *name)
{
	return !strncmp(comm, name, VIGIL_COMM_LEN - 1) && (strlen(name) >= VIGIL_COMM_LEN - 1 || !comm[strlen(name)]);
}

/* The characters of npm, PyPI and image names: anything else (a URL with
 * credentials, a path, a shell word) is not recorded. */
static bool clean_name(const char *s)
{
	size_t n = strlen(s);
	if (!n || n >= MCPLAUNCH_PACKAGE_MAX)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("@/._+-", *s))
			return false;
	return true;
}

static bool names_mcp(const char *pkg)
{
	return !strncmp(pkg, "@modelcontextprotocol/", 22) || strcasestr(pkg, "mcp") != NULL;
}

/* The first positional argument after argv[i0], skipping options; those
 * in with_value take the next argument too (unless given as --opt=v).
 * If one of the value options in pkg_opts is seen, its value wins. */
static const char *positional(const char *const *argv, size_t argc, size_t i0, const char *const *with_value,
			      const char *const *pkg_opts)
{
	const char *first = NULL;
	for (size_t i = i0; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-') {
			if (!first)
				first = a;
			continue;
		}
		if (!strcmp(a, "--"))
			return first ? first : i + 1 < argc ? argv[i + 1] : NULL;
		for (size_t k = 0; pkg_opts && pkg_opts[k]; k++) {
			size_t l = strlen(pkg_opts[k]);
			if (!strcmp(a, pkg_opts[k]) && i + 1 < argc)
				return argv[i + 1];
			if (!strncmp(a, pkg_opts[k], l) && a[l] == '=')
				return a + l + 1;
		}
		for (size_t k = 0; with_value && with_value[k]; k++)
			if (!strcmp(a, with_value[k])) {
				i++;
				break;
			}
		if (first)
			break;   /* options after the package are the server's own */
	}
	return first;
}

/* "@scope/name@1.2" -> "@scope/name"; "name@latest" -> "name". */
static void strip_npm_version(char *s)
{
	char *at = strchr(s + 1, '@');
	if (at)
		*at = 0;
}

/* "mcp-server-git==1.0", "x[extra]>=2" -> the name. */
static void strip_py_version(char *s)
{
	s[strcspn(s, "=<>~![; ")] = 0;
}

/* "docker.io/mcp/github:latest@sha256:..." -> "mcp/github". */
static void strip_image_ref(char *s)
{
	char *at = strchr(s, '@');
	if (at)
		*at = 0;
	char *slash = strrchr(s, '/'), *colon = strrchr(s, ':');
	if (colon && (!slash || colon > slash))
		*colon = 0;
	if (!strncmp(s, "docker.io/", 10))
		memmove(s, s + 10, strlen(s + 10) + 1);
	if (!strncmp(s, "library/", 8))
		memmove(s, s + 8, strlen(s + 8) + 1);
}

static const char *npx_package(const char *const *argv, size_t argc, size_t i0)
{
	static const char *const val[] = { "-c", "--call", "--cache", "--registry", "--userconfig", NULL };
	static const char *const pkg[] = { "-p", "--package", NULL };
	return positional(argv, argc, i0, val, pkg);
}

static const char *uvx_package(const char *const *argv, size_t argc, size_t i0)
{
	static const char *const val[] = { "--with", "--python", "-p", "--index", "--index-url", "--extra-index-url",
					   "--directory", "--with-requirements", NULL };
	static const char *const pkg[] = { "--from", NULL };
	return positional(argv, argc, i0, val, pkg);
}

static const char *pipx_package(const char *const *argv, size_t argc, size_t i0)
{
	static const char *const val[] = { "--python", "--index-url", "--pip-args", NULL };
	static const char *const pkg[] = { "--spec", NULL };
	/* pipx run [options] PACKAGE: only "run" launches */
	for (size_t i = i0; i < argc; i++)
		if (argv[i][0] != '-')
			return strcmp(argv[i], "run") ? NULL : positional(argv, argc, i + 1, val, pkg);
	return NULL;
}

static const char *docker_image(const char *const *argv, size_t argc, size_t i0)
{
	static const char *const val[] = {
		"-e", "--env", "-v", "--volume", "-p", "--publish", "-w", "--workdir", "-u", "--user", "-l", "--label",
		"-h", "--hostname", "--name", "--network", "--net", "--mount", "--entrypoint", "--env-file",
		"--platform", "--pull", "-m", "--memory", "--cpus", "--add-host", "--cap-add", "--cap-drop",
		"--security-opt", "--tmpfs", "--device", "--restart", "--log-driver", "--log-opt", "--runtime",
		"--gpus", "--ipc", "--pid", "--shm-size", "--ulimit", "--dns", "--label-file", "--cidfile", NULL,
	};
	size_t i = i0;
	while (i < argc && argv[i][0] == '-')
		i++;   /* global options without values (--debug) */
	if (i >= argc || (strcmp(argv[i], "run") && strcmp(argv[i], "create")))
		return NULL;
	return positional(argv, argc, i + 1, val, NULL);
}

bool mcplaunch_classify(const char *comm, const char *const *argv, size_t argc, const char *const *commands,
			size_t ncommands, struct mcplaunch *out)
{
	size_t i0 = 0;
	const char *prog = comm, *pkg = NULL;
	enum launcher kind = L_NONE;

	memset(out, 0, sizeof(*out));
	/* A script's argv starts with its interpreter ("/usr/bin/env node
	 * /usr/bin/npx ..."): the command begins at the script. */
	for (size_t i = 0; i < argc && i < 4; i++)
		if (is_comm_of(comm, base_name(argv[i]))) {
			i0 = i;
			prog = base_name(argv[i]);
			break;
		}
	for (size_t i = 0; i < N_LAUNCHERS; i++)
		if (!strcmp(prog, launchers[i].name))
			kind = launchers[i].kind;
	if (kind == L_NONE && !strncmp(prog, VIGIL_EXEC_PREFIX, VIGIL_EXEC_PREFIX_LEN))
		kind = L_SELF;
	for (size_t i = 0; kind == L_NONE && i < ncommands; i++)
		if (!strcmp(prog, commands[i]))
			kind = L_SELF;
	switch (kind) {
	case L_NONE: return false;
	case L_NPX: pkg = npx_package(argv, argc, i0 + 1); break;
	case L_UVX: pkg = uvx_package(argv, argc, i0 + 1); break;
	case L_PIPX: pkg = pipx_package(argv, argc, i0 + 1); break;
	case L_DOCKER: pkg = docker_image(argv, argc, i0 + 1); break;
	case L_SELF: pkg = prog; break;
	}
	if (!pkg || snprintf(out->package, sizeof(out->package), "%s", pkg) >= (int)sizeof(out->package))
		return false;
	if (kind == L_NPX)
		strip_npm_version(out->package);
	else if (kind == L_UVX || kind == L_PIPX)
		strip_py_version(out->package);
	else if (kind == L_DOCKER)
		strip_image_ref(out->package);
	if (!clean_name(out->package) || (kind != L_SELF && !names_mcp(out->package)))
		return false;
	snprintf(out->program, sizeof(out->program), "%s", prog);
	return true;
}
