#!/usr/bin/env python3
"""Fake chat web apps for the browser end-to-end test (tests/e2e/test_webapps.py).

One HTTPS server on one loopback address answers by Host:
  chatgpt.com   a page like ChatGPT's: it posts the typed prompt to
                POST /backend-api/conversation as the real front end does
                (messages[].content.parts[]) and renders the SSE answer in
                either of ChatGPT's encodings (whole message, or the
                delta-encoded "v"/"p"/"o" patches the backend sends here);
                PUT /file-<id> takes an uploaded file like
                files.oaiusercontent.com.
  claude.ai     a page like Claude's: POST .../chat_conversations/<id>/completion
                with prompt and attachments, the answer as the Messages SSE
                shape (content_block_delta); POST /api/<org>/upload takes a
                multipart upload.
  unwatched.example  another site: GET /blob answers fixed bytes.
The backend echoes the prompt in its answer ("You wrote: ...") and records
every request (host, method, path, content type, body as latin-1) as one
JSON line, so the test sees exactly what left the workstation. Pages show a
non-200 answer as the real apps do: "Something went wrong".
"""
import argparse
import hashlib
import json
import os
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NEW_CHAT_ID = "6753f00d-0000-800d-9e0f-00000000beef"   # what the backend names a new chat
BLOB = hashlib.sha256(b"vigil").digest() * 2048          # 64 KiB of fixed bytes
APP_JS = "// the app's bundle\n" + "".join("function f%d(x){return x+%d}\n" % (i, i) for i in range(4000))
APP_CSS = "body{font-family:sans-serif}\n" + "".join(".c%d{margin:%dpx}\n" % (i, i % 9) for i in range(2000))

COMMON_JS = r"""
async function readSSE(r, onData) {
  const reader = r.body.getReader(), dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i); buf = buf.slice(i + 2);
      for (const line of ev.split('\n'))
        if (line.startsWith('data: ') && line !== 'data: [DONE]') {
          try { onData(JSON.parse(line.slice(6))); } catch (e) {}
        }
    }
  }
}
function show(text, status) {
  document.querySelector('#answer').textContent = text;
  document.body.dataset.status = String(status);
  document.body.dataset.state = 'done';
}
async function upload(name, mime, b64) {
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const r = await window.appUpload(name, mime, bytes);
  let t = ''; try { t = await r.text(); } catch (e) {}
  document.body.dataset.upload = String(r.status);
  return { status: r.status, body: t };
}
"""

CHATGPT_JS = r"""
async function send() {
  document.body.dataset.state = 'busy';
  const prompt = document.querySelector('#prompt').value;
  const body = { action: 'next', messages: [{ id: 'u1', author: { role: 'user' },
    content: { content_type: 'text', parts: [prompt] }, metadata: {} }],
    parent_message_id: 'p0', model: 'gpt-4o' };
  // an open chat names its conversation; a new one (?new) learns it from the answer
  if (!location.search.includes('new')) body.conversation_id = '67530e1a-1b2c-800d-9e0f-112233445566';
  let r;
  try {
    r = await fetch('/backend-api/conversation', { method: 'POST', headers: { 'content-type': 'application/json',
      accept: 'text/event-stream' }, body: JSON.stringify(body) });
  } catch (e) { return show('Something went wrong (network)', 0); }
  if (r.status !== 200) return show('Something went wrong (' + r.status + ')', r.status);
  let text = '', lastP = '';
  await readSSE(r, j => {
    if (j.message && j.message.content) { text = j.message.content.parts.join(''); return; }
    if (j.o === 'add' && j.v && j.v.message) { text = j.v.message.content.parts.join(''); lastP = j.p; return; }
    if (j.o === 'patch' && Array.isArray(j.v)) {
      for (const op of j.v) if (op.p === '/message/content/parts/0' && op.o === 'append') text += op.v;
      return;
    }
    if (j.p) lastP = j.p;
    if (typeof j.v === 'string' && lastP === '/message/content/parts/0') text += j.v;
  });
  show(text, r.status);
}
window.appUpload = (name, mime, bytes) =>
  fetch('https://files.oaiusercontent.com/file-' + Date.now() + '?se=2030&sig=x', { method: 'PUT',
    headers: { 'content-type': mime, 'x-ms-blob-type': 'BlockBlob' }, body: bytes });
"""

CLAUDE_JS = r"""
async function send() {
  document.body.dataset.state = 'busy';
  const prompt = document.querySelector('#prompt').value;
  const body = { prompt, parent_message_uuid: '00000000-0000-4000-8000-000000000000', timezone: 'UTC',
    attachments: [], files: [], rendering_mode: 'messages', model: 'claude-sonnet-4-20250514' };
  let r;
  try {
    r = await fetch('/api/organizations/org-1/chat_conversations/9a8b7c6d-1111-2222-3333-445566778899/completion',
      { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify(body) });
  } catch (e) { return show('Something went wrong (network)', 0); }
  if (r.status !== 200) return show('Something went wrong (' + r.status + ')', r.status);
  let text = '';
  await readSSE(r, j => {
    if (j.type === 'content_block_delta' && j.delta && typeof j.delta.text === 'string') text += j.delta.text;
    if (j.type === 'completion' && typeof j.completion === 'string') text += j.completion;
  });
  show(text, r.status);
}
window.appUpload = (name, mime, bytes) => {
  const fd = new FormData();
  fd.append('file', new Blob([bytes], { type: mime }), name);
  fd.append('orgUuid', 'org-1');
  return fetch('/api/org-1/upload', { method: 'POST', body: fd });
};
"""

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>%s</title>
<link rel="stylesheet" href="/app.css"><script src="/app.js"></script>
<script>%s%s</script></head>
<body data-state="idle"><h1>%s</h1><textarea id="prompt"></textarea><button id="send" onclick="send()">Send</button>
<div id="answer"></div></body></html>
"""


def page(title, js):
    return (PAGE % (title, COMMON_JS, js, title)).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def host(self):
        return (self.headers.get("Host") or "").split(":")[0].lower()

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if not size:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(n) if n else b""

    def record(self, body):
        with self.server.lock, open(self.server.record, "a") as f:
            f.write(json.dumps({"host": self.host(), "method": self.command, "path": self.path,
                                "ctype": self.headers.get("Content-Type", ""),
                                "encoding": self.headers.get("Content-Encoding", ""),
                                "body": body.decode("latin-1")}) + "\n")

    def send(self, status, data, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def sse(self, events):
        """events: list of (event name or None, data string); chunked, one write each."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        for name, data in events:
            chunk = (("event: %s\n" % name) if name else "") + "data: " + data + "\n\n"
            b = chunk.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def do_GET(self):
        h = self.host()
        path = self.path.split("?")[0]
        if path == "/app.js":
            return self.send(200, APP_JS.encode(), "application/javascript")
        if path == "/app.css":
            return self.send(200, APP_CSS.encode(), "text/css")
        if h == "unwatched.example" and path == "/blob":
            return self.send(200, BLOB, "application/octet-stream")
        if h == "unwatched.example":
            return self.send(200, page("Unwatched", ""), "text/html; charset=utf-8")
        if h == "chatgpt.com" and path == "/":
            return self.send(200, page("ChatGPT", CHATGPT_JS), "text/html; charset=utf-8")
        if h == "claude.ai" and path == "/":
            return self.send(200, page("Claude", CLAUDE_JS), "text/html; charset=utf-8")
        self.send(404, b'{"detail":"Not Found"}', "application/json")

    @staticmethod
    def pieces(text, n=5):
        return [text[i:i + n] for i in range(0, len(text), n)] or [""]

    def chatgpt_answer(self, req):
        prompt = "".join(p for m in req.get("messages", []) for p in m.get("content", {}).get("parts", [])
                         if isinstance(p, str))
        parts = self.pieces("You wrote: " + prompt)
        ev = [("delta_encoding", '"v1"'),
              ("delta", json.dumps({"p": "", "o": "add", "v": {"message": {
                  "id": "m1", "author": {"role": "assistant"}, "content": {"content_type": "text", "parts": [""]},
                  "status": "in_progress"}, "conversation_id": req.get("conversation_id") or NEW_CHAT_ID}})),
              ("delta", json.dumps({"p": "/message/content/parts/0", "o": "append", "v": parts[0]}))]
        ev += [("delta", json.dumps({"v": p})) for p in parts[1:]]
        ev.append(("delta", json.dumps({"p": "", "o": "patch", "v": [
            {"p": "/message/status", "o": "replace", "v": "finished_successfully"}]})))
        ev.append((None, "[DONE]"))
        self.sse(ev)

    def claude_answer(self, req):
        ev = [("message_start", json.dumps({"type": "message_start", "message": {
                  "id": "msg1", "type": "message", "role": "assistant", "model": req.get("model", ""), "content": []}})),
              ("content_block_start", json.dumps({"type": "content_block_start", "index": 0,
                                                  "content_block": {"type": "text", "text": ""}}))]
        ev += [("content_block_delta", json.dumps({"type": "content_block_delta", "index": 0,
                                                   "delta": {"type": "text_delta", "text": p}}))
               for p in self.pieces("You wrote: " + req.get("prompt", ""))]
        ev += [("content_block_stop", '{"type":"content_block_stop","index":0}'),
               ("message_stop", '{"type":"message_stop"}')]
        self.sse(ev)

    def do_POST(self):
        body = self.body()
        self.record(body)
        h, path = self.host(), self.path.split("?")[0]
        try:
            req = json.loads(body) if body[:1] == b"{" else {}
        except ValueError:
            return self.send(400, b'{"detail":"bad json"}', "application/json")
        if h == "chatgpt.com" and path in ("/backend-api/conversation", "/backend-api/f/conversation"):
            return self.chatgpt_answer(req)
        if h == "claude.ai" and path.endswith("/completion"):
            return self.claude_answer(req)
        if h == "claude.ai" and path.endswith("/upload"):
            return self.send(200, b'{"success":true,"file_uuid":"f-1"}', "application/json")
        self.send(404, b'{"detail":"Not Found"}', "application/json")

    def do_PUT(self):
        body = self.body()
        self.record(body)
        if self.host() == "files.oaiusercontent.com":
            return self.send(201, b"", "text/plain")
        self.send(404, b"", "text/plain")

    def do_OPTIONS(self):
        # the cross-origin PUT from chatgpt.com to the upload host
        self.send_response(200)
        self.send_header("Access-Control-Allow-Methods", "PUT, POST, GET")
        self.send_header("Access-Control-Allow-Headers", "content-type, x-ms-blob-type")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def end_headers(self):
        if self.host() == "files.oaiusercontent.com":
            self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--record", required=True)
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    srv = ThreadingHTTPServer((host, int(port)), Handler)
    srv.daemon_threads = True
    srv.record, srv.lock = a.record, threading.Lock()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    ctx.set_alpn_protocols(["http/1.1"])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("fake-webapp ready", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
