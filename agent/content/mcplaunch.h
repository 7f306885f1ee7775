/* mcplaunch: local (stdio) MCP servers, seen when they are launched.
 *
 * An MCP client (Claude Code, Cursor, an agent script) starts each local
 * server as a child process and speaks JSON-RPC to it over stdin/stdout:
 * no socket, so nothing the network hooks see. What the agent can see is
 * the launch: the kernel stops a watched exec in the cgroup (bpf/vigil.h,
 * "stdio MCP server launches"), mcpexec.c decides and audits it, and this
 * file (pure, no I/O) tells from the command line whether it starts an MCP
 * server and which: npx/bunx/pnpx and uvx/pipx packages, docker/podman
 * images, programs named mcp-server-*, and the configured mcp_commands.
 * An npm, PyPI or image name counts when it is under @modelcontextprotocol/
 * or contains "mcp".
 *
 * Must never: return anything of the arguments but the package name, and
 * that only in the characters of package names (no URL, no path).
 * What the agent cannot do: read the JSON-RPC on a stdio server's
 * stdin/stdout (a pipe between two processes; its tool calls are not seen).
 * Layer: content (a parser of untrusted command lines). */
#ifndef VIGIL_MCPLAUNCH_H
#define VIGIL_MCPLAUNCH_H

#include <stdbool.h>
#include <stddef.h>
#include "vigil.h"

#define MCPLAUNCH_PROGRAM_MAX 64
#define MCPLAUNCH_PACKAGE_MAX 128
#define MCPLAUNCH_MAX_ARGS 128

struct config;

struct mcplaunch {
	char program[MCPLAUNCH_PROGRAM_MAX];   /* file name run: npx, uvx, docker, mcp-server-git */
	char package[MCPLAUNCH_PACKAGE_MAX];   /* @modelcontextprotocol/server-filesystem, mcp/github, ... */
};

/* The program names the kernel watches (exec_names): the built-in
 * launchers, then the configured mcp_commands. Pointers borrowed from cfg
 * and static storage; returns how many (at most max). */
size_t mcplaunch_watch_names(const struct config *cfg, const char **out, size_t max);

/* An exec's argv: does it launch an MCP server, and which? comm is the
 * kernel's name of the program (the file executed, 15 bytes; for a script
 * argv starts with its interpreter). commands: the configured
 * mcp_commands. Pure (unit tested). */
bool mcplaunch_classify(const char *comm, const char *const *argv, size_t argc, const char *const *commands,
			size_t ncommands, struct mcplaunch *out);

#endif
