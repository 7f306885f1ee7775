#!/usr/bin/env python3
"""Fake OpenAI Realtime server (WebSocket over TLS) for Vigil's e2e tests.

Owns: the server side of the Realtime event protocol, enough to drive a
text turn: session.update -> session.updated; conversation.item.create ->
conversation.item.created (the last input text is kept); response.create
-> response.created, response.text.delta events (the answer "echo: <last
input text>" in 4-character pieces), response.audio_transcript.delta with
the same text, response.text.done, response.done with usage;
input_audio_buffer.commit ->
conversation.item.input_audio_transcription.completed (transcript = the
last input text). Binary frames are echoed. Pings get pongs, a close gets
a close. It accepts permessage-deflate if offered, as real servers do (it
never compresses: the test fails earlier, at the agent, if the offer got
through).
Records what it received, one JSON line per item in --record:
  {"kind": "handshake", "path", "headers"} and
  {"kind": "text"|"binary"|"ping"|"pong"|"close", "data" | "b64"}.
Must never: mask its own frames or accept an unmasked one (it records
{"kind": "violation"} and closes with 1002).

Usage: fake_realtime.py --listen ADDR:PORT --cert F --key F --record F
"""
import argparse
import base64
import hashlib
import json
import socket
import ssl
import struct
import sys
import threading

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Conn:
    def __init__(self, sock, record, lock):
        self.s = sock
        self.buf = b""
        self.record = record
        self.lock = lock
        self.last_text = ""
        self.n = 0

    def rec(self, obj):
        with self.lock, open(self.record, "a") as f:
            f.write(json.dumps(obj) + "\n")

    def read(self, n):
        while len(self.buf) < n:
            d = self.s.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def handshake(self):
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            headers[k.strip().lower()] = v.strip()
        self.rec({"kind": "handshake", "path": path, "headers": headers})
        if "websocket" not in headers.get("upgrade", "").lower():
            self.s.sendall(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        acc = base64.b64encode(hashlib.sha1((headers.get("sec-websocket-key", "") + GUID).encode()).digest())
        resp = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Accept: %s\r\n" % acc.decode())
        if "permessage-deflate" in headers.get("sec-websocket-extensions", ""):
            resp += "Sec-WebSocket-Extensions: permessage-deflate\r\n"
        self.s.sendall((resp + "\r\n").encode())
        return True

    def frame(self):
        """One whole message: (opcode, payload)."""
        msg, op0 = b"", None
        while True:
            b0, b1 = self.read(2)
            fin, op, masked, ln = b0 & 0x80, b0 & 0x0F, b1 & 0x80, b1 & 0x7F
            if ln == 126:
                ln = struct.unpack("!H", self.read(2))[0]
            elif ln == 127:
                ln = struct.unpack("!Q", self.read(8))[0]
            if not masked:
                self.rec({"kind": "violation", "why": "unmasked"})
                self.send(8, struct.pack("!H", 1002))
                raise EOFError
            mask = self.read(4)
            data = bytes(c ^ mask[i % 4] for i, c in enumerate(self.read(ln)))
            if op >= 8:
                return op, data
            if op:
                op0 = op
            msg += data
            if fin:
                return op0, msg

    def send(self, op, data):
        n = len(data)
        head = bytes([0x80 | op])
        if n < 126:
            head += bytes([n])
        elif n < 65536:
            head += bytes([126]) + struct.pack("!H", n)
        else:
            head += bytes([127]) + struct.pack("!Q", n)
        self.s.sendall(head + data)

    def event(self, obj):
        self.n += 1
        obj.setdefault("event_id", "event_srv_%d" % self.n)
        self.send(1, json.dumps(obj).encode())

    def on_text(self, ev):
        t = ev.get("type")
        if t == "session.update":
            self.event({"type": "session.updated", "session": ev.get("session", {})})
        elif t == "conversation.item.create":
            item = ev.get("item", {})
            for c in item.get("content", []):
                if c.get("text"):
                    self.last_text = c["text"]
            self.event({"type": "conversation.item.created", "item": item})
        elif t == "input_audio_buffer.commit":
            self.event({"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_1",
                        "content_index": 0, "transcript": "transcript: " + self.last_text})
        elif t == "response.create":
            answer = "echo: " + self.last_text
            self.event({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}})
            for i in range(0, len(answer), 4):
                self.event({"type": "response.text.delta", "response_id": "resp_1", "item_id": "item_2",
                            "output_index": 0, "content_index": 0, "delta": answer[i:i + 4]})
            self.event({"type": "response.text.done", "response_id": "resp_1", "text": answer})
            for i in range(0, len(answer), 7):
                self.event({"type": "response.audio_transcript.delta", "response_id": "resp_1",
                            "delta": answer[i:i + 7]})
            self.event({"type": "response.done", "response": {
                "id": "resp_1", "status": "completed",
                "usage": {"total_tokens": 18, "input_tokens": 11, "output_tokens": 7,
                          "input_token_details": {"text_tokens": 11, "audio_tokens": 0}}}})

    def serve(self):
        if not self.handshake():
            return
        while True:
            op, data = self.frame()
            if op == 1:
                self.rec({"kind": "text", "data": data.decode()})
                try:
                    self.on_text(json.loads(data))
                except ValueError:
                    pass
            elif op == 2:
                self.rec({"kind": "binary", "b64": base64.b64encode(data).decode()})
                self.send(2, data)
            elif op == 9:
                self.rec({"kind": "ping", "data": data.decode("latin-1")})
                self.send(10, data)
            elif op == 10:
                self.rec({"kind": "pong", "data": data.decode("latin-1")})
            elif op == 8:
                self.rec({"kind": "close", "b64": base64.b64encode(data).decode()})
                self.send(8, data[:2])
                return


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--record", required=True)
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, int(port)))
    ls.listen(64)
    lock = threading.Lock()
    print("fake-realtime ready", flush=True)

    def handle(c):
        try:
            with ctx.wrap_socket(c, server_side=True) as s:
                Conn(s, a.record, lock).serve()
        except (EOFError, OSError, ssl.SSLError):
            pass

    while True:
        c, _ = ls.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
