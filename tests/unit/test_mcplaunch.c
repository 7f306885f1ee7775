/* Unit tests for agent/content/mcplaunch.c: which command lines launch a stdio MCP
 * server, the package named, and what is never taken from the arguments. */
#include "check.h"
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
