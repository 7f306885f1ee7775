#!/usr/bin/env python3
"""Realtime API client (WebSocket over TLS, stdlib only) for Vigil's e2e tests.

Owns: a WebSocket session the way the Realtime SDKs open it (GET with
Upgrade, Sec-WebSocket-Key, Authorization, OpenAI-Beta), then a script of
steps; also the attacker's moves a normal client never makes (unmasked
frames, oversized frames, hand-made fragments, payloads in control frames).
Must never: verify less than the system does (the --cafile is the only
trust anchor), or hide what came back.

Usage: ws_realtime.py --host H --path P --cafile F [--deflate] --steps JSON
Steps (a JSON list), each one of:
  {"event": {...}}                 one masked text frame with the event
  {"fragments": ["a", "b", ...]}   one text message in these fragments,
                                   {"ping": "x"} items between them allowed
  {"binary_b64": "..."}            one masked binary frame
  {"ping": "payload"}              a masked ping
  {"raw_b64": "..."}               these bytes as they are (bad frames)
  {"big": N}                       one masked text frame of N bytes
  {"rtt": N, "text": "..."}        N timed round trips (user item -> created),
                                   in "rtt_us"
  {"wait": "type"}                 read until an event of that type
  {"wait_binary": 1}               read until a binary message
  {"wait_pong": 1}                 read until a pong (or timeout)
  {"sleep": S}                     S seconds of silence both ways
  {"close": 1000}                  a close frame, then read until closed
Prints ONE JSON line: {"status", "headers", "events", "binary_b64",
"pongs", "close_code", "closed", "error"}.
"""
import argparse
import base64
import json
import os
import socket
import ssl
import struct
import sys
import time


class Client:
    def __init__(self, sock):
        self.s = sock
        self.buf = b""
        self.out = {"events": [], "binary_b64": [], "pongs": [], "close_code": None, "closed": False}
        self.frag_op = None
        self.frag = b""

    def recv(self, n):
        while len(self.buf) < n:
            d = self.s.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self, op, data, fin=True, masked=True):
        n = len(data)
        head = bytes([(0x80 if fin else 0) | op])
        m = 0x80 if masked else 0
        if n < 126:
            head += bytes([m | n])
        elif n < 65536:
            head += bytes([m | 126]) + struct.pack("!H", n)
        else:
            head += bytes([m | 127]) + struct.pack("!Q", n)
        if masked:
            key = os.urandom(4)
            data = bytes(c ^ key[i % 4] for i, c in enumerate(data))
            head += key
        return head + data

    def send(self, op, data, fin=True, masked=True):
        self.s.sendall(self.frame(op, data, fin, masked))

    def read_one(self):
        """One message; returns its kind."""
        b0, b1 = self.recv(2)
        op, ln = b0 & 0x0F, b1 & 0x7F
        if b1 & 0x80:
            raise ValueError("the server side masked a frame")
        if ln == 126:
            ln = struct.unpack("!H", self.recv(2))[0]
        elif ln == 127:
            ln = struct.unpack("!Q", self.recv(8))[0]
        data = self.recv(ln)
        if op == 8:
            self.out["close_code"] = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
            self.out["closed"] = True
            raise EOFError
        if op == 10:
            self.out["pongs"].append(data.decode("latin-1"))
            return "pong"
        if op == 9:
            self.send(10, data)
            return "ping"
        if op:
            self.frag_op = op
            self.frag = b""
        self.frag += data
        if not b0 & 0x80:
            return "fragment"
        if self.frag_op == 1:
            self.out["events"].append(json.loads(self.frag))
            return "text:" + self.out["events"][-1].get("type", "")
        self.out["binary_b64"].append(base64.b64encode(self.frag).decode())
        return "binary"

    def wait_for(self, want):
        while True:
            if self.read_one() == want:
                return


def handshake(s, host, path, deflate):
    key = base64.b64encode(os.urandom(16)).decode()
    req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer sk-test\r\n"
           "OpenAI-Beta: realtime=v1\r\n" % (path, host, key))
    if deflate:
        req += "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    s.sendall((req + "\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise EOFError("closed during the handshake")
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, rest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--deflate", action="store_true")
    ap.add_argument("--steps", required=True)
    ap.add_argument("--timeout", type=float, default=10)
    a = ap.parse_args()
    ctx = ssl.create_default_context(cafile=a.cafile)
    raw = socket.create_connection((a.host, 443), timeout=a.timeout)
    s = ctx.wrap_socket(raw, server_hostname=a.host)
    status, headers, rest = handshake(s, a.host, a.path, a.deflate)
    c = Client(s)
    c.buf = rest
    c.out.update(status=status, headers=headers)
    if status != 101:
        body = rest
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                body += d
        except (OSError, socket.timeout):
            pass
        c.out["body"] = body.decode("utf-8", "replace")
        print(json.dumps(c.out))
        return 0
    try:
        for st in json.loads(a.steps):
            if "event" in st:
                c.send(1, json.dumps(st["event"]).encode())
            elif "fragments" in st:
                parts = st["fragments"]
                texts = [p for p in parts if isinstance(p, str)]
                k = 0
                for p in parts:
                    if isinstance(p, dict):
                        c.send(9, p["ping"].encode())
                        continue
                    k += 1
                    c.send(1 if k == 1 else 0, p.encode(), fin=k == len(texts))
            elif "binary_b64" in st:
                c.send(2, base64.b64decode(st["binary_b64"]))
            elif "ping" in st:
                c.send(9, st["ping"].encode())
            elif "raw_b64" in st:
                s.sendall(base64.b64decode(st["raw_b64"]))
            elif "big" in st:
                c.send(1, b"x" * st["big"])
            elif "rtt" in st:
                # round trips of one user item each, timed (benchmarks)
                ev = {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": st.get("text", "hello")}]}}
                body = json.dumps(ev).encode()
                rtt = c.out.setdefault("rtt_us", [])
                for _ in range(st["rtt"]):
                    t0 = time.perf_counter()
                    c.send(1, body)
                    c.wait_for("text:conversation.item.created")
                    rtt.append(int((time.perf_counter() - t0) * 1e6))
                c.out["events"] = []
            elif "wait" in st:
                c.wait_for("text:" + st["wait"])
            elif "wait_binary" in st:
                c.wait_for("binary")
            elif "wait_pong" in st:
                try:
                    c.wait_for("pong")
                except socket.timeout:
                    c.out["pong_timeout"] = True
            elif "sleep" in st:
                time.sleep(st["sleep"])
            elif "close" in st:
                c.send(8, struct.pack("!H", st["close"]))
                while True:
                    c.read_one()
    except EOFError:
        pass
    except (OSError, socket.timeout, ValueError) as e:
        c.out["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(c.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
