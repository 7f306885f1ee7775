#!/usr/bin/env node
// A real OpenAI Realtime client for Vigil's end-to-end tests: the official
// `openai` package's OpenAIRealtimeWS (over the pinned `ws` package), as an
// application opens a text session with it.
//
// Owns: one session to wss://api.openai.com/v1/realtime?model=M: one user
// message (conversation.item.create), one response.create, then it reads
// until response.done (or an error event) and closes. Trust comes from
// NODE_EXTRA_CA_CERTS; the host is made local with the hosts trick. With
// --deflate the socket offers permessage-deflate (the SDK's default is not
// to). Must never retry or reconnect.
//
// Usage: node openai_realtime.mjs --message TEXT [--model M] [--deflate]
// Prints ONE JSON line: {"text": concatenated text deltas, "types": [event
// types in order], "errors": [error events], "usage"} or {"error": message}.
import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const message = opt('--message', 'hello');
const model = opt('--model', 'gpt-realtime');
const deflate = args.includes('--deflate');

const out = { text: '', types: [], errors: [], usage: null };
const client = new OpenAI({ apiKey: 'sk-test', maxRetries: 0 });
const rt = new OpenAIRealtimeWS({ model, options: deflate ? { perMessageDeflate: true } : {} }, client);
const timer = setTimeout(() => finish('timeout'), 20000);

function finish(err) {
  clearTimeout(timer);
  if (err) out.error = String(err);
  try { rt.close(); } catch { /* already closed */ }
  console.log(JSON.stringify(out));
  setTimeout(() => process.exit(0), 50);
}

rt.on('error', (e) => {
  out.errors.push(e.error ?? { message: e.message });
  if (!e.error) finish(e.message);
  else finish();
});
rt.on('event', (ev) => {
  out.types.push(ev.type);
  if (ev.type === 'response.text.delta' || ev.type === 'response.output_text.delta') out.text += ev.delta;
  if (ev.type === 'response.done') {
    out.usage = ev.response?.usage ?? null;
    finish();
  }
});
rt.socket.on('open', () => {
  rt.send({ type: 'conversation.item.create',
    item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: message }] } });
  rt.send({ type: 'response.create' });
});
rt.socket.on('close', (code) => { if (!out.usage && !out.errors.length) finish(`closed ${code}`); });
