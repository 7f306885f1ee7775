/* Unit tests for agent/content/mcplaunch.c: which command lines launch a stdio MCP
 * server, the package named, what is never taken from the arguments, and
 * the command line as audited (secrets replaced, bounded). */
#include "check.h"
#include "content/inspect.h"
#include "content/mcplaunch.h"

#define ARGV(...) (const char *const[]){ __VA_ARGS__ }, sizeof((const char *const[]){ __VA_ARGS__ }) / sizeof(char *)

static const char *const cmds[] = { "corp-tools-server" };

/* package, or NULL when not a launch */
static const char *pkg(const char *comm, const char *const *argv, size_t argc)
{
	static struct mcplaunch l;
	return mcplaunch_classify(comm, argv, argc, cmds, 1, &l) ? l.package : NULL;
}

#define IS(want, comm, ...) do { \
		const char *got_ = pkg(comm, ARGV(__VA_ARGS__)); \
		CHECK(got_ && !strcmp(got_, want), "%s: got %s, want %s", #__VA_ARGS__, got_ ? got_ : "(none)", want); \
	} while (0)
#define NOT(comm, ...) do { \
		const char *got_ = pkg(comm, ARGV(__VA_ARGS__)); \
		CHECK(!got_, "%s: classified as %s", #__VA_ARGS__, got_); \
	} while (0)

TEST(npm_launchers)
{
	IS("@modelcontextprotocol/server-filesystem", "npx", "npx", "-y", "@modelcontextprotocol/server-filesystem",
	   "/home/alice");
	IS("@modelcontextprotocol/server-github", "npx", "npx", "--yes", "@modelcontextprotocol/server-github@2025.1.0");
	/* a node script: argv starts with its interpreter */
	IS("@upstash/context7-mcp", "npx", "/usr/bin/env", "node", "/usr/local/bin/npx", "-y", "@upstash/context7-mcp@latest");
	IS("mcp-remote", "npx", "/bin/sh", "/tmp/bin/npx", "mcp-remote", "https://mcp.example.com/sse");
	IS("firecrawl-mcp", "bunx", "bunx", "-p", "firecrawl-mcp", "firecrawl");
	IS("@scope/x-mcp", "npx", "npx", "--package=@scope/x-mcp@1", "run-it");
	NOT("npx", "npx", "cowsay", "moo");
	NOT("npx", "npx", "-y", "create-react-app", "mcp-demo");   /* "mcp" in an argument, not the package */
	NOT("npx", "npx");
}

TEST(python_launchers)
{
	IS("mcp-server-git", "uvx", "uvx", "mcp-server-git", "--repository", "/src/x");
	IS("mcp-server-fetch", "uvx", "uvx", "--python", "3.12", "mcp-server-fetch==0.6.2");
	IS("mcp-server-time", "uvx", "uvx", "--from", "mcp-server-time>=0.6", "mcp-server-time");
	IS("mcp-server-sqlite", "pipx", "pipx", "run", "mcp-server-sqlite", "--db-path", "x.db");
	NOT("pipx", "pipx", "install", "mcp-server-sqlite");
	NOT("uvx", "uvx", "ruff", "check");
}

TEST(container_launchers)
{
	IS("mcp/github", "docker", "docker", "run", "-i", "--rm", "-e", "GITHUB_PERSONAL_ACCESS_TOKEN", "mcp/github");
	IS("mcp/fetch", "docker", "docker", "run", "-i", "--rm", "-v", "/home/a:/data", "--name", "f",
	   "docker.io/mcp/fetch:latest");
	IS("ghcr.io/github/github-mcp-server", "podman", "podman", "run", "-i", "--rm", "-e", "TOKEN=x",
	   "ghcr.io/github/github-mcp-server@sha256:abc");
	NOT("docker", "docker", "run", "--rm", "nginx:latest");
	NOT("docker", "docker", "ps");
	NOT("docker", "docker", "exec", "mcp-box", "sh");
}

TEST(named_servers_and_configured_commands)
{
	IS("mcp-server-filesystem", "mcp-server-file", "/home/a/.local/bin/mcp-server-filesystem", "/data");
	IS("mcp-server-fake", "mcp-server-fake", "/bin/sh", "/tmp/t/mcp-server-fake", "--token", "s3cret");
	IS("corp-tools-server", "corp-tools-serv", "/opt/corp/bin/corp-tools-server");
	NOT("python3", "python3", "-m", "mcp_server_git");
	NOT("corp-tools", "corp-tools");
}

TEST(arguments_never_leak)
{
	struct mcplaunch l;
	/* a package spec that is a URL with credentials is not a name */
	CHECK(!mcplaunch_classify("npx", ARGV("npx", "https://tok:SECRET@git.example/mcp.tgz"), cmds, 1, &l),
	      "a URL was taken as the package: %s", l.package);
	CHECK(!mcplaunch_classify("docker", ARGV("docker", "run", "-e", "API_KEY=SECRET", "--", "mcp/x y"), cmds, 1, &l),
	      "a name with a space was taken: %s", l.package);
	CHECK(mcplaunch_classify("npx", ARGV("npx", "-y", "@modelcontextprotocol/server-slack", "--token=SECRET"), cmds, 1,
				 &l) && !strstr(l.package, "SECRET") && !strcmp(l.program, "npx"),
	      "package %s program %s", l.package, l.program);
	char big[400];
	memset(big, 'm', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	CHECK(!mcplaunch_classify("uvx", ARGV("uvx", big), cmds, 1, &l), "an over-long package was taken");
}

TEST(watch_names)
{
	const char *names[8];
	size_t n = mcplaunch_watch_names(NULL, names, 8);
	bool npx = false, uvx = false, docker = false;
	for (size_t i = 0; i < n; i++) {
		npx |= !strcmp(names[i], "npx");
		uvx |= !strcmp(names[i], "uvx");
		docker |= !strcmp(names[i], "docker");
	}
	CHECK(npx && uvx && docker && n <= 8, "built-in launchers: %zu", n);
	CHECK(mcplaunch_watch_names(NULL, names, 2) == 2, "max not honoured");
}

/* ------------------------------------------------- the audited command */

#define GH "ghp_R8x2Kd9QwLm4Tz7Vb1Nc5Hy3Pj6Fg0Ua2Se8"
#define OAI "sk-proj-qa25MV9c7Qu0EjDIEWdcT3BlbkFJ83uCF0K4yw7RzpY39bio"

static struct inspect_scratch *scratch;
static struct inspect_result res;
static char command[MCPLAUNCH_COMMAND_MAX];

/* argv as audited (NULL on error); res holds the findings */
static const char *cmd(bool cut, const char *const *argv, size_t argc)
{
	if (!scratch) {
		char err[256] = "";
		struct inspector *ins = inspector_new(NULL, 0, err, sizeof(err));
		if (!ins || !(scratch = inspect_scratch_new(ins))) {
			printf("FAIL setup: inspector_new: %s\n", err);
			exit(1);
		}
		inspector_unref(ins);
		inspect_result_init(&res);
	}
	return mcplaunch_command(scratch, argv, argc, cut, command, sizeof(command), &res) ? NULL : command;
}

#define CMD_IS(want, ...) do { \
		const char *got_ = cmd(false, ARGV(__VA_ARGS__)); \
		CHECK(got_ && !strcmp(got_, want), "got \"%s\", want \"%s\"", got_ ? got_ : "(error)", want); \
	} while (0)

TEST(command_detected_token_replaced_by_type)
{
	CMD_IS("npx -y @modelcontextprotocol/server-github [GITHUB_TOKEN]", "npx", "-y",
	       "@modelcontextprotocol/server-github", GH);
	CHECK(res.counts[FINDING_GITHUB_TOKEN] == 1, "GITHUB_TOKEN counted %u", res.counts[FINDING_GITHUB_TOKEN]);
	/* named and detected: the detector's type wins */
	CMD_IS("npx @modelcontextprotocol/server-github --token [GITHUB_TOKEN]", "npx",
	       "@modelcontextprotocol/server-github", "--token", GH);
	CMD_IS("docker run -i --rm -e OPENAI_API_KEY=[OPENAI_API_KEY] mcp/x", "docker", "run", "-i", "--rm", "-e",
	       "OPENAI_API_KEY=" OAI, "mcp/x");
	CHECK(res.counts[FINDING_OPENAI_API_KEY] == 1, "OPENAI_API_KEY counted %u", res.counts[FINDING_OPENAI_API_KEY]);
	CMD_IS("uvx mcp-server-mail --from [EMAIL]", "uvx", "mcp-server-mail", "--from", "alice.smith@corp.example");
	CHECK(res.counts[FINDING_EMAIL] == 1, "EMAIL counted %u", res.counts[FINDING_EMAIL]);
}

TEST(command_named_credentials_replaced)
{
	/* values no detector knows */
	CMD_IS("npx x-mcp --api-key=[REDACTED] --token [REDACTED] -p 3", "npx", "x-mcp", "--api-key=hunter2",
	       "--token", "opensesame", "-p", "3");
	CMD_IS("docker run -e MY_SERVICE_TOKEN=[REDACTED] -e DB_PASSWORD=[REDACTED] -e LOG_LEVEL=debug mcp/x",
	       "docker", "run", "-e", "MY_SERVICE_TOKEN=abc", "-e", "DB_PASSWORD=pw", "-e", "LOG_LEVEL=debug",
	       "mcp/x");
	CMD_IS("mcp-server-x --header Authorization: [REDACTED] --client-secret [REDACTED]", "mcp-server-x",
	       "--header", "Authorization: Bearer abc.def", "--client-secret", "zz");
	/* a flag after a credential option is not its value */
	CMD_IS("mcp-server-x --no-auth --verbose", "mcp-server-x", "--no-auth", "--verbose");
	CHECK(inspect_result_total(&res) == 0, "findings in a harmless command");
}

TEST(command_harmless_left_intact)
{
	CMD_IS("npx -y @modelcontextprotocol/server-filesystem /home/alice/projects --read-only", "npx", "-y",
	       "@modelcontextprotocol/server-filesystem", "/home/alice/projects", "--read-only");
	CHECK(inspect_result_total(&res) == 0, "findings in a harmless command: %u", inspect_result_total(&res));
	CMD_IS("docker run -i --rm -e GITHUB_PERSONAL_ACCESS_TOKEN mcp/github", "docker", "run", "-i", "--rm", "-e",
	       "GITHUB_PERSONAL_ACCESS_TOKEN", "mcp/github");
	CMD_IS("x", "x");   /* the program alone */
	CMD_IS("mcp-server-x --token-file /run/secrets/t --key-path k.pem", "mcp-server-x", "--token-file",
	       "/run/secrets/t", "--key-path", "k.pem");   /* where a secret is, not the secret */
}

TEST(command_long_cut_with_ellipsis)
{
	static char big[6000];
	memset(big, 'a', sizeof(big) - 1);
	/* a multi-byte character across the cut: never half of one */
	for (size_t i = 2000; i < 2100; i += 2)
		memcpy(big + i, "\xc3\xa9", 2);
	const char *got = cmd(false, ARGV("mcp-server-x", "--dir", big));
	size_t n = got ? strlen(got) : 0;
	CHECK(got && n < MCPLAUNCH_COMMAND_MAX && n > MCPLAUNCH_COMMAND_MAX - 8, "length %zu", n);
	CHECK(!strcmp(got + n - 3, "\xe2\x80\xa6"), "no ellipsis at the cut");
	CHECK(!strncmp(got, "mcp-server-x --dir aaa", 22), "start lost: %.30s", got);
	for (size_t i = 0; i < n - 3; i++)
		if ((unsigned char)got[i] == 0xc3)
			CHECK(i + 1 < n - 3 && (unsigned char)got[i + 1] == 0xa9, "half a character at %zu", i);
	/* a token past the cut is still counted, and never shown */
	got = cmd(false, ARGV("mcp-server-x", big, GH));
	CHECK(got && !strstr(got, "ghp_") && res.counts[FINDING_GITHUB_TOKEN] == 1, "token past the cut");
	/* argv cut by the reader: the partial last argument is left out */
	got = cmd(true, ARGV("mcp-server-x", "--key-file", "/k", "ghp_R8x2Kd9QwLm4Tz7V"));
	CHECK(got && !strcmp(got, "mcp-server-x --key-file /k\xe2\x80\xa6"), "cut argv: \"%s\"", got ? got : "");
}

TEST(command_control_characters_and_empty_arguments)
{
	/* /proc cmdline is NUL separated: empty arguments, newlines and
	 * escapes inside one are the program's to choose */
	CMD_IS("mcp-server-x  a?b ?[31m --token [REDACTED]", "mcp-server-x", "", "a\nb", "\x1b[31m", "--token",
	       "s3cret\r");
	CMD_IS("mcp-server-x x [GITHUB_TOKEN]?API_KEY=[REDACTED]", "mcp-server-x", "x", GH "\nAPI_KEY=zz");
	char small[8];
	CHECK(mcplaunch_command(scratch, ARGV("a", "b"), false, small, 4, &res) == -EINVAL, "tiny buffer taken");
}
