#!/usr/bin/env node
// A real OpenAI SDK client for Vigil's end-to-end tests.
//
// Owns: one call (or --count calls on ONE client, to exercise keep-alive)
// through the official `openai` npm package with its default base URL
// (https://api.openai.com/v1, overridable by --base-url only; the env
// OPENAI_BASE_URL is ignored so a developer's shell cannot redirect a test).
// Trust comes from NODE_EXTRA_CA_CERTS; the host is made local with the
// hosts trick (tests/fakes/nsrun.py). Must never retry unless asked
// (--max-retries, default 0: the SDK's own default of 2 would hide errors and
// multiply requests in the fake's record).
//
// Usage: node openai_chat.mjs --message TEXT [--stream] [--model M]
//          [--count N [--gap-ms MS]] [--header "K: V" ...] [--api chat|responses] [--max-retries N]
//          [--timeout-ms N] [--base-url URL] [--api-key K] [--proxy-from-env]
// --proxy-from-env: go through the explicit proxy in HTTPS_PROXY (CONNECT
// tunnels, tests/clients/proxy_fetch.mjs); without it HTTPS_PROXY is ignored.
// Prints ONE JSON line on stdout:
//   {"content", "usage", "model", "calls", "contents"?, "chunks"?, "first_ms"?, "last_ms"?}
// On failure: {"error": {"status", "type", "code", "message", "body"}} on stdout,
// a readable line on stderr, exit 1 (2 for bad usage).
import OpenAI from 'openai';
import { proxyFetch } from './proxy_fetch.mjs';

function parseArgs(argv) {
  const o = { message: null, stream: false, model: 'gpt-4o-mini', count: 1, gapMs: 20, headers: {}, api: 'chat',
    maxRetries: 0, timeoutMs: 30000, baseURL: 'https://api.openai.com/v1', apiKey: 'sk-test', proxyFromEnv: false };
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
    else if (a === '--api') o.api = val();
    else if (a === '--max-retries') o.maxRetries = parseInt(val(), 10);
    else if (a === '--timeout-ms') o.timeoutMs = parseInt(val(), 10);
    else if (a === '--base-url') o.baseURL = val();
    else if (a === '--api-key') o.apiKey = val();
    else if (a === '--proxy-from-env') o.proxyFromEnv = true;
    else usage(`unknown argument ${a}`);
  }
  if (o.message === null) usage('--message is required');
  if (o.proxyFromEnv && !(process.env.HTTPS_PROXY || process.env.https_proxy)) usage('--proxy-from-env without HTTPS_PROXY');
  if (!(o.count >= 1)) usage('--count must be >= 1');
  if (o.api !== 'chat' && o.api !== 'responses') usage('--api is chat or responses');
  return o;
}

function usage(why) {
  process.stderr.write(`openai_chat: ${why}\nusage: node openai_chat.mjs --message TEXT ` +
    '[--stream] [--model M] [--count N [--gap-ms MS]] [--header "K: V" ...] [--api chat|responses] [--max-retries N] ' +
    '[--timeout-ms N] [--base-url URL]\n');
  process.exit(2);
}

// The first error code found along the cause chain (CERT_HAS_EXPIRED,
// ECONNREFUSED, ERR_TLS_CERT_ALTNAME_INVALID, ...).
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

async function chatOnce(client, o) {
  const messages = [{ role: 'user', content: o.message }];
  if (!o.stream) {
    const r = await client.chat.completions.create({ model: o.model, messages });
    return { content: r.choices[0]?.message?.content ?? null, usage: r.usage ?? null,
      model: r.model };
  }
  const t0 = performance.now();
  const stream = await client.chat.completions.create({ model: o.model, messages,
    stream: true, stream_options: { include_usage: true } });
  let content = '', usage = null, model = null, chunks = 0, first = null, last = null;
  for await (const chunk of stream) {
    chunks++;
    model = chunk.model ?? model;
    for (const c of chunk.choices ?? []) {
      if (c.delta?.content) {
        content += c.delta.content;
        const t = performance.now() - t0;
        if (first === null) first = t;
        last = t;
      }
    }
    if (chunk.usage) usage = chunk.usage;
  }
  return { content, usage, model, chunks, first_ms: Math.round(first ?? -1),
    last_ms: Math.round(last ?? -1) };
}

async function responsesOnce(client, o) {
  if (!o.stream) {
    const r = await client.responses.create({ model: o.model, input: o.message });
    return { content: r.output_text, usage: r.usage ?? null, model: r.model };
  }
  const t0 = performance.now();
  const stream = await client.responses.create({ model: o.model, input: o.message,
    stream: true });
  let content = '', usage = null, model = null, chunks = 0, first = null, last = null;
  for await (const ev of stream) {
    chunks++;
    if (ev.type === 'response.output_text.delta') {
      content += ev.delta;
      const t = performance.now() - t0;
      if (first === null) first = t;
      last = t;
    } else if (ev.type === 'response.completed') {
      usage = ev.response.usage;
      model = ev.response.model;
    }
  }
  return { content, usage, model, chunks, first_ms: Math.round(first ?? -1),
    last_ms: Math.round(last ?? -1) };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const client = new OpenAI({ apiKey: o.apiKey, baseURL: o.baseURL, organization: null,
    project: null, maxRetries: o.maxRetries, timeout: o.timeoutMs, defaultHeaders: o.headers,
    ...(o.proxyFromEnv ? { fetch: proxyFetch(process.env.HTTPS_PROXY || process.env.https_proxy) } : {}) });
  const once = o.api === 'chat' ? chatOnce : responsesOnce;
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
      type: e?.error?.type ?? e?.type ?? null,
      code: e?.code ?? causeCode(e),
      message: causeMessage(e),
      body: e?.error ?? null,
      calls_ok: results.length,
    };
    process.stdout.write(JSON.stringify({ error: err }) + '\n');
    process.stderr.write(`openai_chat: error: ${err.status ?? ''} ${err.code ?? ''} ` +
      `${err.message}\n`);
    process.exit(1);
  }
  const out = { ...results[results.length - 1], calls: results.length };
  if (results.length > 1) out.contents = results.map((r) => r.content);
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write(`openai_chat: unexpected: ${e?.stack ?? e}\n`);
  process.exit(1);
});
