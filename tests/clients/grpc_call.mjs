// gRPC client for Vigil's e2e tests: @grpc/grpc-js against the fake Gemini
// gRPC service (tests/fakes/fake_grpc.mjs), through the agent.
//
//   --mode generate|stream|notes   GenerateContent, StreamGenerateContent, vigil.test.Notes/Save
//   --mode vertex|vertex-stream    the same on Vertex AI's PredictionService (its own field numbers)
//   --mode bench --n N [--pause-ms P]  N unary GenerateContent calls in sequence on one channel:
//                                  {calls, per_sec, p50_ms, p99_ms}
//   --mode collect|chat            vigil.test.Notes/Collect (client-streaming) and Chat (bidi):
//                                  the notes of --text split at "|", --pause-ms apart (chat: each
//                                  after the echo of the one before); {ok, texts, sent_at: [ms]}
//   --mode hostile                 node:http2 by hand on one connection: a GenerateContent stream
//                                  whose length prefix announces --prefix bytes, then a well-formed
//                                  call; reports what each stream got
//   --host H --ca FILE --text T [--system S] [--compress gzip|deflate] [--meta "name: value"]
//   [--blob-b64 B64]               (generate) a second part: inline_data of these bytes (audio/pcm)
// Prints one JSON line: {ok, code, details, texts: [...], messages, usage} (or, hostile,
// {bad: {...}, good: {...}}).
import fs from "node:fs";
import http2 from "node:http2";
import path from "node:path";
import { fileURLToPath } from "node:url";
import grpc from "@grpc/grpc-js";
import loader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const fakes = path.join(here, "..", "fakes");
const args = { mode: "generate", system: "", compress: "" };
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];

const opts = { keepCase: true, longs: String, defaults: true };
const gen = grpc.loadPackageDefinition(loader.loadSync(path.join(fakes, "grpc_test.proto"), opts));
const notes = grpc.loadPackageDefinition(loader.loadSync(path.join(fakes, "grpc_notes.proto"), opts));
const vertex = grpc.loadPackageDefinition(loader.loadSync(path.join(fakes, "grpc_vertex.proto"), opts));
const isVertex = args.mode.startsWith("vertex");
const target = args.host + ":443";
const creds = grpc.credentials.createSsl(fs.readFileSync(args.ca));
const chanOpts = args.compress ? { "grpc.default_compression_algorithm": args.compress === "gzip" ? 2 : 1 } : {};

const meta = new grpc.Metadata();
if (args.meta) meta.add(args.meta.split(": ")[0], args.meta.split(": ").slice(1).join(": "));
const out = (o) => { console.log(JSON.stringify(o)); process.exit(0); };
const fail = (e) => out({ ok: false, code: e.code, details: e.details || String(e) });

function request() {
  const model = isVertex ? "projects/p1/locations/us-central1/publishers/google/models/gemini-2.0-flash"
                         : "models/gemini-2.0-flash";
  const r = { model, contents: [{ role: "user", parts: [{ text: args.text }] }] };
  if (args.system) r.system_instruction = { parts: [{ text: args.system }] };
  if (args["blob-b64"])
    r.contents[0].parts.push({ inline_data: { mime_type: "audio/pcm", data: Buffer.from(args["blob-b64"], "base64") } });
  return r;
}
const textsOf = (m) => m.candidates.flatMap((c) => (c.content ? c.content.parts.map((p) => p.text) : []));

const service = () => isVertex ? new vertex.google.cloud.aiplatform.v1.PredictionService(target, creds, chanOpts)
                               : new gen.google.ai.generativelanguage.v1beta.GenerativeService(target, creds, chanOpts);

function generate() {
  const c = service();
  c.GenerateContent(request(), meta, (err, res) => {
    if (err) return fail(err);
    out({ ok: true, texts: textsOf(res), messages: 1, usage: res.usage_metadata });
  });
}

function stream() {
  const c = service();
  const texts = [], times = [];
  let usage = null;
  const t0 = Date.now();
  const call = c.StreamGenerateContent(request());
  call.on("data", (m) => { texts.push(...textsOf(m)); times.push(Date.now() - t0); if (m.usage_metadata) usage = m.usage_metadata; });
  call.on("error", fail);
  call.on("end", () => out({ ok: true, texts, messages: times.length, times, usage }));
}

function streamNotes() {
  const c = new notes.vigil.test.Notes(target, creds, chanOpts);
  const titles = args.text.split("|"), pause = Number(args["pause-ms"] || 0), sentAt = [], texts = [];
  const wait = (ms) => new Promise((r) => setTimeout(r, ms));
  if (args.mode === "collect") {
    const call = c.Collect(meta, (err, res) => (err ? fail(err) : out({ ok: true, texts: [res.title], sent_at: sentAt })));
    (async () => {
      for (const [i, t] of titles.entries()) {
        if (i) await wait(pause);
        sentAt.push(Date.now());
        call.write({ title: t });
      }
      call.end();
    })();
    return;
  }
  const call = c.Chat(meta);
  let next = null;
  call.on("data", (m) => { texts.push(m.title); if (next) next(); });
  call.on("error", (e) => out({ ok: false, code: e.code, details: e.details || String(e), texts, sent_at: sentAt }));
  call.on("end", () => out({ ok: true, texts, sent_at: sentAt }));
  (async () => {
    for (const [i, t] of titles.entries()) {
      if (i) await wait(pause);
      const echoed = new Promise((r) => { next = r; });
      sentAt.push(Date.now());
      call.write({ title: t });
      await Promise.race([echoed, wait(5000)]);
    }
    call.end();
  })();
}

function saveNote() {
  const c = new notes.vigil.test.Notes(target, creds, chanOpts);
  const note = { title: args.text, id: "42", tags: ["t1", args.system || "t2"],
                 attachment: { title: "att " + args.text, blob: Buffer.from([0, 1, 2, 255, 254]) } };
  c.Save(note, (err, res) => {
    if (err) return fail(err);
    out({ ok: true, texts: [res.title, res.attachment.title, ...res.tags], messages: 1 });
  });
}

async function bench() {
  const c = service();
  const n = Number(args.n || 200), lat = [];
  const one = () => new Promise((res, rej) => {
    const t = process.hrtime.bigint();
    c.GenerateContent(request(), meta, (err) => (err ? rej(err) : res(Number(process.hrtime.bigint() - t) / 1e6)));
  });
  await one();   // connection set-up is not what is measured
  const t0 = Date.now();
  const pause = Number(args["pause-ms"] || 0);
  for (let i = 0; i < n; i++) {
    if (pause) await new Promise((r) => setTimeout(r, pause));
    lat.push(await one().catch(fail));
  }
  const secs = Math.max(Date.now() - t0, 1) / 1000;
  lat.sort((a, b) => a - b);
  out({ calls: n, per_sec: Math.round(n / secs), p50_ms: lat[n >> 1].toFixed(2), p99_ms: lat[Math.floor(n * 0.99)].toFixed(2) });
}

// ---- by hand: protobuf and gRPC framing for the hostile case ----
const varint = (n) => { const b = []; do { b.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0)); n >>>= 7; } while (n); return Buffer.from(b); };
const field = (num, payload) => Buffer.concat([varint((num << 3) | 2), varint(payload.length), payload]);
const frame = (msg) => { const p = Buffer.alloc(5); p.writeUInt32BE(msg.length, 1); return Buffer.concat([p, msg]); };

function rawCall(session, body) {
  return new Promise((resolve) => {
    const r = { headers: null, trailers: null, data: 0, rst: null };
    const s = session.request({ ":method": "POST", ":path": "/google.ai.generativelanguage.v1beta.GenerativeService/GenerateContent",
                                "content-type": "application/grpc", te: "trailers" });
    s.on("response", (h) => { r.headers = { status: h[":status"], "grpc-status": h["grpc-status"], "grpc-message": h["grpc-message"] }; });
    s.on("trailers", (t) => { r.trailers = { "grpc-status": t["grpc-status"], "grpc-message": t["grpc-message"] }; });
    s.on("data", (d) => { r.data += d.length; });
    s.on("close", () => { r.rst = s.rstCode; resolve(r); });
    s.on("error", () => {});
    s.end(body);
  });
}

async function hostile() {
  const session = http2.connect("https://" + target, { ca: fs.readFileSync(args.ca), servername: args.host });
  session.on("error", () => {});
  const bad = Buffer.alloc(5 + 16);
  bad.writeUInt32BE(Number(args.prefix), 1);
  const b = await rawCall(session, bad);
  const good = await rawCall(session, frame(Buffer.concat([field(1, Buffer.from("models/gemini-2.0-flash")),
    field(2, field(1, field(2, Buffer.from(args.text))))])));
  // protobuf nested past the walker's depth limit: refused, never read as text
  let deep = field(2, Buffer.from(args.text));
  for (let i = 0; i < 40; i++) deep = field(1, deep);
  const d = await rawCall(session, frame(deep));
  session.close();
  out({ bad: b, good, deep: d });
}

({ generate, stream, notes: saveNote, hostile, bench, vertex: generate, "vertex-stream": stream,
   collect: streamNotes, chat: streamNotes })[args.mode]();
