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
 * mcplaunch_command renders the command line for the audit with every
 * value the detectors find, and every value of an argument named like a
 * credential, replaced.
 *
 * Must never: return anything of the arguments but the package name (in
 * the characters of package names: no URL, no path) and the command line
 * as mcplaunch_command redacts it; never log either.
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
/* The audited command line: at most this many bytes with its NUL (a
 * longer one is cut, ending in "\u2026"). */
#define MCPLAUNCH_COMMAND_MAX 2048

struct config;
struct inspect_scratch;
struct inspect_result;

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

/* The command line argv[0..argc) for the audit, into out[outlen] (NUL
 * terminated, at most outlen - 1 bytes, valid UTF-8 if argv is): the
 * arguments joined by spaces and scanned with s (inspect_text); each span
 * a detector finds becomes "[TYPE]" (r gets the findings: counts for the
 * event), and the value of an argument named like a credential ("--token
 * X", "--api-key=X", "-e NAME=X" or "NAME: X" where NAME holds KEY, TOKEN,
 * SECRET, PASSWORD, CREDENTIAL, AUTH...) becomes "[REDACTED]" even when no
 * detector matches. Control characters become '?'. cut: argv was cut short
 * (the last argument may be a part of one, whose remainder a detector
 * would not recognise: it is left out). A cut command ends in an ellipsis.
 * Returns 0, or inspect_text's error (-ENOMEM, -EIO) with out empty.
 * argv, s borrowed; no copy of the raw command line survives the call. */
int mcplaunch_command(struct inspect_scratch *s, const char *const *argv, size_t argc, bool cut, char *out,
		      size_t outlen, struct inspect_result *r);

#endif
