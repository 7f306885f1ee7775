/* mcpexec: what the agent does with a watched exec (bpf/vigil.h, stdio
 * MCP server launches): reads the command line (/proc), asks mcplaunch
 * whether it starts an MCP server, decides it with the policy (condition
 * mcp_server on the package, mcp_method stdio_launch; only rules naming
 * mcp_server or mcp_method apply, none matching = allowed), kills a
 * refused launch (SIGKILL: it never runs a line) or continues it
 * (SIGCONT), and audits it (kind mcp) with its command line as
 * mcplaunch_command redacts it (the agent's current detectors, findings in
 * the event). An exec that is not an MCP server is continued at once and
 * not audited.
 * Must never: leave a stopped process stopped, or record or log the raw
 * arguments.
 * Layer: kernel (with capture.c). */
#ifndef VIGIL_MCPEXEC_H
#define VIGIL_MCPEXEC_H

#include "vigil.h"

/* capture_exec_fn; arg is the struct agent. Runs on the loop thread. */
void mcpexec_event(void *arg, const struct vigil_exec_event *ev);

#endif
