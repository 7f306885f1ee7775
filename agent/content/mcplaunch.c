/* mcplaunch: stdio MCP server launches (see mcplaunch.h). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "content/mcplaunch.h"
#include "content/inspect.h"
#include "buf.h"
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

/* ------------------------------------------------- the audited command */

/* Does an argument or variable name say its value is a credential? The
 * name is cut into words (at anything not a letter or digit: API_KEY,
 * api-key, x.auth.token); one word naming a secret is enough. Over-eager
 * on purpose (--auth-type's value goes too): a lost harmless word costs
 * less than a token in the audit trail. But a word saying the value is
 * where a secret is kept (--token-file, --key-path) makes it no secret. */
static bool secret_name(const char *s, size_t n)
{
	static const char *const where[] = { "file", "path", "dir" };
	bool secret = false;
	static const char *const words[] = { "key", "apikey", "token", "secret", "password", "passwd", "pwd",
					      "pass", "passphrase", "credential", "credentials", "creds", "auth",
					      "authorization", "bearer", "cookie", "pat", "sig", "signature" };
	static const char *const parts[] = { "token", "secret", "passw", "credential", "apikey" };
	for (size_t i = 0; i < n;) {
		size_t e = i;
		while (e < n && isalnum((unsigned char)s[e]))
			e++;
		char w[64];   /* a longer word is judged on its start */
		size_t wl = e - i < sizeof(w) - 1 ? e - i : sizeof(w) - 1;
		if (wl) {
			memcpy(w, s + i, wl);
			w[wl] = 0;
			for (size_t k = 0; k < sizeof(where) / sizeof(where[0]); k++)
				if (!strcasecmp(w, where[k]))
					return false;
			for (size_t k = 0; k < sizeof(words) / sizeof(words[0]); k++)
				secret |= !strcasecmp(w, words[k]);
			for (size_t k = 0; k < sizeof(parts) / sizeof(parts[0]); k++)
				secret |= strcasestr(w, parts[k]) != NULL;
		}
		i = e + 1;
	}
	return secret;
}

struct cmd_span {
	size_t start, end;
};

/* Where an argument's value is a credential by its name: "NAME=VALUE",
 * "--name=VALUE", "Name: VALUE" (a header) give the value's span in the
 * joined text (the argument starts at off); an option "--name" alone
 * returns true in *next (its value is the next argument). */
static bool named_secret(const char *a, size_t off, struct cmd_span *sp, bool *next)
{
	size_t d = strspn(a, "-"), len = strlen(a), sep = d + strcspn(a + d, "=:");
	*next = false;
	if (sep < len && sep > d && secret_name(a + d, sep - d)) {
		size_t v = sep + 1;
		while (a[sep] == ':' && a[v] == ' ')
			v++;
		if (v >= len)
			return false;
		*sp = (struct cmd_span){ off + v, off + len };
		return true;
	}
	*next = d && sep == len && secret_name(a + d, len - d);
	return false;
}

/* Output of at most cap bytes; past that, cut. */
struct cmd_out {
	char *p;
	size_t len, cap;
	bool cut;
};

static void out_put(struct cmd_out *o, const char *s, size_t n, bool raw)
{
	if (o->len + n > o->cap) {
		n = o->cap - o->len;
		o->cut = true;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		o->p[o->len++] = raw && (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
}

/* End a cut output on a whole UTF-8 character, then the ellipsis. */
static void out_finish(struct cmd_out *o, size_t outlen)
{
	static const char ell[] = "\xe2\x80\xa6";
	if (o->cut) {
		size_t n = o->len < outlen - sizeof(ell) ? o->len : outlen - sizeof(ell), i = n;
		while (i > 0 && ((unsigned char)o->p[i - 1] & 0xc0) == 0x80)
			i--;
		if (i > 0 && (unsigned char)o->p[i - 1] >= 0xc0) {
			unsigned char lead = (unsigned char)o->p[i - 1];
			size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
			if (n - (i - 1) < need)
				n = i - 1;
		}
		memcpy(o->p + n, ell, sizeof(ell) - 1);
		o->len = n + sizeof(ell) - 1;
	}
	o->p[o->len] = 0;
}

/* Write text[0..len) with the detector spans (sorted by start) and the
 * name spans (sorted) replaced; overlapping spans of either kind merge
 * into one replacement, labelled by the first detector in it. */
static void render(struct cmd_out *o, const char *text, size_t len, const struct inspect_result *r,
		   const struct cmd_span *ns, size_t nn)
{
	size_t di = 0, ni = 0, p = 0;
	while (p < len && !o->cut) {
		while (di < r->nspans && r->spans[di].end <= p)
			di++;
		while (ni < nn && ns[ni].end <= p)
			ni++;
		size_t ds = di < r->nspans ? r->spans[di].start : len, nxt = ni < nn ? ns[ni].start : len;
		size_t s = ds < nxt ? ds : nxt;
		if (s < p)
			s = p;
		out_put(o, text + p, s - p, true);
		if (s >= len)
			break;
		size_t e = s;
		const char *label = NULL;
		for (bool more = true; more;) {
			more = false;
			for (; di < r->nspans && r->spans[di].start <= e; di++, more = true) {
				e = r->spans[di].end > e ? r->spans[di].end : e;
				if (!label)
					label = finding_name(r->spans[di].type);
			}
			for (; ni < nn && ns[ni].start <= e; ni++, more = true)
				e = ns[ni].end > e ? ns[ni].end : e;
		}
		char tag[48];
		int tl = snprintf(tag, sizeof(tag), "[%s]", label ? label : "REDACTED");
		out_put(o, tag, (size_t)tl, false);
		p = e;
	}
}

int mcplaunch_command(struct inspect_scratch *s, const char *const *argv, size_t argc, bool cut, char *out,
		      size_t outlen, struct inspect_result *r)
{
	struct cmd_span ns[MCPLAUNCH_MAX_ARGS];
	struct cmd_out o = { out, 0, outlen - 1, false };
	struct buf text = { .secret = true };
	size_t nn = 0;
	bool next = false;
	int ret = 0;

	if (outlen < 8)
		return -EINVAL;
	out[0] = 0;
	if (cut && argc)
		argc--;   /* a part of an argument: its secret may no longer be recognised */
	if (argc > MCPLAUNCH_MAX_ARGS) {
		argc = MCPLAUNCH_MAX_ARGS;
		cut = true;
	}
	/* one allocation: a growing buffer would leave copies of the command
	 * line in freed memory */
	size_t total = 0;
	for (size_t i = 0; i < argc; i++)
		total += strlen(argv[i]) + 1;
	if ((ret = buf_reserve(&text, total)))
		goto out;
	for (size_t i = 0; i < argc; i++) {
		size_t off = text.len, al = strlen(argv[i]);
		if ((i && (ret = buf_append(&text, " ", 1))) || (ret = buf_append(&text, argv[i], al)))
			goto out;
		off += i ? 1 : 0;
		if (next) {   /* the value of "--token" before it */
			next = false;
			if (argv[i][0] != '-' && al) {
				ns[nn++] = (struct cmd_span){ off, off + al };
				continue;
			}
		}
		if (named_secret(argv[i], off, &ns[nn], &next))
			nn++;
	}
	if ((ret = inspect_text(s, text.data ? text.data : "", text.len, r)))
		goto out;
	/* with spans_truncated, values past the kept spans would go out
	 * unreplaced: nothing but the cut mark */
	if (!r->spans_truncated)
		render(&o, text.data ? text.data : "", text.len, r, ns, nn);
	o.cut |= cut || r->spans_truncated;
	out_finish(&o, outlen);
out:
	buf_free(&text);
	return ret;
}
