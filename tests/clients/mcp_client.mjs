#!/usr/bin/env node
// A real MCP client for Vigil's end-to-end tests.
//
// Owns: one session with a remote MCP server through the official
// `@modelcontextprotocol/sdk` npm package (Client + StreamableHTTPClientTransport):
// initialize, tools/list, then each --call in order. A call that the server
// (or Vigil) answers with a JSON-RPC error is recorded, not thrown, so one run
// shows every outcome. Trust: NODE_EXTRA_CA_CERTS; host: the hosts trick
// (tests/fakes/nsrun.py).
//
// Usage: node mcp_client.mjs --url URL [--sse] [--call NAME JSON_ARGS ...]
// (--sse: the older HTTP+SSE transport, SSEClientTransport)
// Prints ONE JSON line on stdout:
//   {"session", "tools": [names], "calls": [{"name", "result"} | {"name", "error": {"code", "message"}}]}
// On failure to connect: {"error": {"message"}} on stdout, exit 1.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';

function parseArgs(argv) {
  const o = { url: null, calls: [], sse: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--url' && i + 1 < argv.length) o.url = argv[++i];
    else if (argv[i] === '--sse') o.sse = true;
    else if (argv[i] === '--call' && i + 2 < argv.length) {
      o.calls.push({ name: argv[i + 1], args: JSON.parse(argv[i + 2]) });
      i += 2;
    } else {
      console.error(`mcp_client: bad argument ${argv[i]}`);
      process.exit(2);
    }
  }
  if (!o.url) {
    console.error('mcp_client: --url is required');
    process.exit(2);
  }
  return o;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const client = new Client({ name: 'vigil-e2e', version: '1.0.0' });
  const transport = o.sse ? new SSEClientTransport(new URL(o.url))
    : new StreamableHTTPClientTransport(new URL(o.url));
  const out = { tools: [], calls: [] };
  try {
    await client.connect(transport);
    out.session = transport.sessionId || null;
    const listed = await client.listTools();
    out.tools = listed.tools.map((t) => t.name);
    for (const c of o.calls) {
      try {
        const result = await client.callTool({ name: c.name, arguments: c.args });
        out.calls.push({ name: c.name, result });
      } catch (e) {
        out.calls.push({ name: c.name, error: { code: e.code ?? null, message: String(e.message || e) } });
      }
    }
    await client.close();
  } catch (e) {
    console.log(JSON.stringify({ error: { message: String(e.message || e) }, ...out }));
    process.exit(1);
  }
  console.log(JSON.stringify(out));
}

main();
