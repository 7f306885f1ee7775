// Fake Gemini gRPC service (google.ai.generativelanguage.v1beta
// GenerativeService) for Vigil's e2e tests, over TLS with the test PKI, with
// @grpc/grpc-js from tests/clients.
//
// GenerateContent answers one candidate "echo: <every prompt text joined by
// a space>" and usage 11/7/18; StreamGenerateContent answers the same text
// in three messages (usage in the last); vigil.test.Notes/Save echoes the
// note (Collect joins a client-streamed call's titles, Chat echoes each
// note as it arrives, both recording each message with its arrival time);
// google.cloud.aiplatform.v1.PredictionService answers the same in
// Vertex's shapes (recorded as "Vertex/..."). Every request, as the server decoded it, is recorded as one JSON line
// in --record: {"method", "request", "metadata", "peer" (the caller's address:port)}.
//
// Usage: node fake_grpc.mjs --listen ADDR:PORT --cert F --key F --record F [--idle-ms N]
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "clients", "package.json"));
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];

const opts = { keepCase: true, longs: String, defaults: true };
const gen = grpc.loadPackageDefinition(loader.loadSync(path.join(here, "grpc_test.proto"), opts));
const notes = grpc.loadPackageDefinition(loader.loadSync(path.join(here, "grpc_notes.proto"), opts));
const vertex = grpc.loadPackageDefinition(loader.loadSync(path.join(here, "grpc_vertex.proto"), opts));

function record(method, call) {
  const req = JSON.parse(JSON.stringify(call.request, (k, v) =>
    v && v.type === "Buffer" ? Buffer.from(v.data).toString("base64") : v));
  fs.appendFileSync(args.record, JSON.stringify({ method, request: req, metadata: call.metadata.getMap(),
                                                  peer: call.getPeer() }) + "\n");
}

function promptText(req) {
  return req.contents.flatMap((c) => c.parts.map((p) => p.text)).join(" ");
}

const usage = { prompt_token_count: 11, candidates_token_count: 7, total_token_count: 18 };
const answer = (text, u) => ({ candidates: [{ content: { role: "model", parts: [{ text }] } }], usage_metadata: u });

const vertexAnswer = (text, u) => ({ candidates: [{ index: 0, content: { role: "model", parts: [{ text }] } }],
                                    usage_metadata: u });

// the same two methods for both APIs, each in its own message shapes
const generative = (tag, shape) => ({
  GenerateContent(call, cb) {
    record(tag + "GenerateContent", call);
    cb(null, shape("echo: " + promptText(call.request), usage));
  },
  StreamGenerateContent(call) {
    record(tag + "StreamGenerateContent", call);
    const text = "echo: " + promptText(call.request);
    const third = Math.ceil(text.length / 3);
    const pieces = [text.slice(0, third), text.slice(third, 2 * third), text.slice(2 * third)];
    let i = 0;
    const next = () => {
      if (i === pieces.length) return call.end();
      call.write(shape(pieces[i], i === pieces.length - 1 ? usage : null));
      i++;
      setTimeout(next, 150);
    };
    next();
  },
});

// an idle connection gets GOAWAY after --idle-ms, as real front ends do
const server = new grpc.Server(args["idle-ms"] ? { "grpc.max_connection_idle_ms": Number(args["idle-ms"]) } : {});
server.addService(gen.google.ai.generativelanguage.v1beta.GenerativeService.service, generative("", answer));
server.addService(vertex.google.cloud.aiplatform.v1.PredictionService.service, generative("Vertex/", vertexAnswer));
// a streamed call's messages, one line each as it arrives ("at": ms clock)
function recordMsg(method, note, call) {
  fs.appendFileSync(args.record, JSON.stringify({ method, request: { title: note.title }, at: Date.now(),
                                                  metadata: call.metadata.getMap() }) + "\n");
}

server.addService(notes.vigil.test.Notes.service, {
  Save(call, cb) {
    record("Notes/Save", call);
    cb(null, call.request);
  },
  Collect(call, cb) {
    const titles = [];
    call.on("data", (n) => { recordMsg("Notes/Collect", n, call); titles.push(n.title); });
    call.on("end", () => cb(null, { title: titles.join(" | ") }));
    call.on("error", () => {});
  },
  Chat(call) {
    call.on("data", (n) => { recordMsg("Notes/Chat", n, call); call.write({ title: "echo: " + n.title }); });
    call.on("end", () => call.end());
    call.on("error", () => {});
  },
});

const creds = grpc.ServerCredentials.createSsl(null,
  [{ cert_chain: fs.readFileSync(args.cert), private_key: fs.readFileSync(args.key) }], false);
server.bindAsync(args.listen, creds, (err) => {
  if (err) {
    console.error("fake-grpc: " + err.message);
    process.exit(1);
  }
  console.log("fake-grpc ready");
});
