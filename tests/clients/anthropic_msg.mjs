#!/usr/bin/env node
// A real Anthropic SDK client for Vigil's end-to-end tests.
//
// Owns: one Messages call (or --count calls on ONE client, for keep-alive)
// through the official `@anthropic-ai/sdk` npm package with its default base
// URL (https://api.anthropic.com; the env ANTHROPIC_BASE_URL is ignored, only
// --base-url overrides). Streaming goes through the SDK's messages.stream()
// helper, which checks the event order and accumulates the final message, so
// a stream the agent mangled fails here. Trust: NODE_EXTRA_CA_CERTS; host:
// the hosts trick (tests/fakes/nsrun.py). Must never retry unless asked
// (--max-retries, default 0).
//
// Usage: node anthropic_msg.mjs --message TEXT [--stream] [--model M]
//          [--count N [--gap-ms MS]] [--header "K: V" ...] [--max-retries N] [--timeout-ms N] [--base-url URL]
// Prints ONE JSON line on stdout:
//   {"content", "usage", "model", "calls", "contents"?, "chunks"?, "first_ms"?, "last_ms"?}
// On failure: {"error": {"status", "type", "code", "message", "body"}} on stdout,
// a readable line on stderr, exit 1 (2 for bad usage).
import Anthropic from '@anthropic-ai/sdk';

function parseArgs(argv) {
  const o = { message: null, stream: false, model: 'claude-haiku-4-5', count: 1, gapMs: 20, headers: {},
    maxRetries: 0, timeoutMs: 30000, baseURL: 'https://api.anthropic.com',
    apiKey: 'sk-ant-test', maxTokens: 1024 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--message') o.message = val();
    else if (a === '--stream') o.stream = true;
    else if (a === '--model') o.model = val();
    else if (a === '--count') o.count = parseInt(val(), 10);
    else if (a === '--header') {
      const h = val(), i2 = h.indexOf(':');
      if (i2 < 1) usage(`--header wants 'Name: value', got ${h}`);
      o.headers[h.slice(0, i2).trim()] = h.slice(i2 + 1).trim();
    } else if (a === '--gap-ms') o.gapMs = parseInt(val(), 10);
    else if (a === '--max-retries') o.maxRetries = parseInt(val(), 10);
    else if (a === '--timeout-ms') o.timeoutMs = parseInt(val(), 10);
    else if (a === '--base-url') o.baseURL = val();
    else if (a === '--api-key') o.apiKey = val();
    else usage(`unknown argument ${a}`);
  }
  if (o.message === null) usage('--message is required');
  if (!(o.count >= 1)) usage('--count must be >= 1');
  return o;
}

function usage(why) {
  process.stderr.write(`anthropic_msg: ${why}\nusage: node anthropic_msg.mjs --message TEXT ` +
    '[--stream] [--model M] [--count N [--gap-ms MS]] [--header "K: V" ...] [--max-retries N] [--timeout-ms N] [--base-url URL]\n');
  process.exit(2);
}

function causeCode(e) {
  for (let c = e, n = 0; c && n < 8; c = c.cause, n++) {
    if (c.code && typeof c.code === 'string') return c.code;
  }
  return null;
}

function causeMessage(e) {
  const parts = [];
  for (let c = e, n = 0; c && n < 8; c = c.cause, n++) if (c.message) parts.push(c.message);
  return parts.join(': ');
}

function textOf(msg) {
  return (msg.content ?? []).filter((b) => b.type === 'text').map((b) => b.text).join('');
}

async function once(client, o) {
  const params = { model: o.model, max_tokens: o.maxTokens,
    messages: [{ role: 'user', content: o.message }] };
  if (!o.stream) {
    const m = await client.messages.create(params);
    return { content: textOf(m), usage: m.usage ?? null, model: m.model };
  }
  const t0 = performance.now();
  let chunks = 0, first = null, last = null, streamed = '';
  const stream = client.messages.stream(params);
  stream.on('streamEvent', () => { chunks++; });
  stream.on('text', (delta) => {
    streamed += delta;
    const t = performance.now() - t0;
    if (first === null) first = t;
    last = t;
  });
  const m = await stream.finalMessage();
  const content = textOf(m);
  if (content !== streamed) {
    throw new Error(`final message text ${JSON.stringify(content)} differs from the ` +
      `concatenated deltas ${JSON.stringify(streamed)}`);
  }
  return { content, usage: m.usage ?? null, model: m.model, chunks,
    first_ms: Math.round(first ?? -1), last_ms: Math.round(last ?? -1) };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const client = new Anthropic({ apiKey: o.apiKey, authToken: null, baseURL: o.baseURL,
    maxRetries: o.maxRetries, timeout: o.timeoutMs, defaultHeaders: o.headers });
  const results = [];
  try {
    for (let i = 0; i < o.count; i++) {
      // undici hands a request issued in the same tick as the previous
      // response's end to a second connection; a short gap keeps one.
      if (i && o.gapMs > 0) await new Promise((r) => setTimeout(r, o.gapMs));
      results.push(await once(client, o));
    }
  } catch (e) {
    const err = {
      status: e?.status ?? null,
      type: e?.error?.error?.type ?? e?.type ?? null,
      code: causeCode(e),
      message: causeMessage(e),
      body: e?.error ?? null,
      calls_ok: results.length,
    };
    process.stdout.write(JSON.stringify({ error: err }) + '\n');
    process.stderr.write(`anthropic_msg: error: ${err.status ?? ''} ${err.code ?? ''} ` +
      `${err.message}\n`);
    process.exit(1);
  }
  const out = { ...results[results.length - 1], calls: results.length };
  if (results.length > 1) out.contents = results.map((r) => r.content);
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write(`anthropic_msg: unexpected: ${e?.stack ?? e}\n`);
  process.exit(1);
});
