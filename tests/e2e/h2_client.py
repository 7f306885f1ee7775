#!/usr/bin/python3
"""A raw HTTP/2 client that plays the attacker (and the well-behaved
client) against the agent: frames are written by hand so that floods and
malformed sequences can be sent that no library would send. HPACK comes
from python3-hpack. Prints one JSON line with what the server answered.

Usage: h2_client.py --ca FILE --host H MODE [ARG]
  reset N        N streams opened and cancelled at once (rapid reset)
  continuation N one header block in HEADERS + N CONTINUATION frames
  bigheader N    stream 1 with a header list of N bytes, then a normal stream 3
  many N         N GET /v1/models streams at once
  split BODY_B64 CUT  a POST whose body is cut into two DATA frames at CUT
  mux SPEC_JSON  the streams of SPEC (a list of {"path", "body", "headers":
                 [[k, v], ...], "rst_on_data": bool, "rst_after": SECS,
                 "after": SID}) on one connection, all sent at once (a
                 stream with "after" once stream SID has ended or been
                 reset; one with "rst_after" is reset SECS after it was
                 sent unless it ended first); reports the order in which
                 the streams ended (and when, in seconds)
  connect BODY_B64  stream 1: a CONNECT tunnel to the provider (RFC 9113 8.5),
                 stream 3: an extended CONNECT for a WebSocket (RFC 8441),
                 each followed by DATA carrying BODY; then a normal stream 5
  stall N SECS BODY [HDR: V ...]  a client that never opens its window (SETTINGS
                 INITIAL_WINDOW_SIZE 0): N POSTs of BODY, then SECS of
                 reading without a WINDOW_UPDATE; reports what came
"""
import argparse
import base64
import json
import socket
import ssl
import struct
import sys
import time

import hpack

DATA, HEADERS, RST, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS, ACK = 1, 4, 1


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


class Conn:
    def __init__(self, host, ca, window=None):
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection((host, 443), timeout=15)
        self.s = ctx.wrap_socket(raw, server_hostname=host)
        self.alpn = self.s.selected_alpn_protocol()
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_allowed_table_size = 65536
        self.host = host
        self.buf = b""
        self.streams = {}
        self.goaway = None
        self.closed = False
        self.t0 = time.time()
        self.order = []           # [sid, seconds] as streams end or are reset
        self.rst_on_data = set()  # streams the client cancels at their first DATA
        settings = b"" if window is None else struct.pack(">HI", 4, window)   # INITIAL_WINDOW_SIZE
        self.no_window_updates = window == 0
        self.s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0, settings) +
                       (b"" if window == 0 else frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 24))))

    def head(self, method, path, extra=()):
        return self.enc.encode([(":method", method), (":scheme", "https"), (":path", path),
                                (":authority", self.host)] + list(extra))

    def send(self, data):
        try:
            self.s.sendall(data)
        except OSError:
            self.closed = True

    def st(self, sid):
        return self.streams.setdefault(sid, {"status": None, "body": b"", "end": False, "rst": None})

    def pump(self, until, timeout=15):
        """Reads frames until until() is true, the peer closes, or timeout."""
        self.s.settimeout(timeout)
        while not until() and not self.closed:
            try:
                d = self.s.recv(65536)
            except (socket.timeout, OSError):
                break
            if not d:
                self.closed = True
                break
            self.buf += d
            while len(self.buf) >= 9:
                n = struct.unpack(">I", b"\0" + self.buf[:3])[0]
                if len(self.buf) < 9 + n:
                    break
                t, fl, sid = self.buf[3], self.buf[4], struct.unpack(">I", self.buf[5:9])[0] & 0x7fffffff
                p, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
                self.on_frame(t, fl, sid, p)

    def on_frame(self, t, fl, sid, p):
        if t == SETTINGS and not fl & ACK:
            self.send(frame(SETTINGS, ACK, 0))
        elif t == PING and not fl & ACK:
            self.send(frame(PING, ACK, 0, p))
        elif t == GOAWAY:
            self.goaway = struct.unpack(">I", p[4:8])[0]
        elif t == HEADERS:
            hdrs = dict(self.dec.decode(p))
            s = self.st(sid)
            if ":status" in hdrs and int(hdrs[":status"]) >= 200:
                s["status"] = int(hdrs[":status"])
            s["end"] |= bool(fl & END_STREAM)
            if fl & END_STREAM:
                self.order.append([sid, round(time.time() - self.t0, 3)])
        elif t == DATA:
            s = self.st(sid)
            s["body"] += p
            s["end"] |= bool(fl & END_STREAM)
            if fl & END_STREAM:
                self.order.append([sid, round(time.time() - self.t0, 3)])
            if p and not self.no_window_updates:
                self.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(p))))
                if sid in self.rst_on_data:
                    self.rst_on_data.discard(sid)
                    s["rst"] = "client"
                    self.order.append([sid, round(time.time() - self.t0, 3)])
                    self.send(frame(RST, 0, sid, struct.pack(">I", 8)))
                elif not self.no_window_updates:
                    self.send(frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", len(p))))
        elif t == RST:
            self.st(sid)["rst"] = struct.unpack(">I", p)[0]
            self.order.append([sid, round(time.time() - self.t0, 3)])

    def done(self, sids):
        return lambda: all(self.st(s)["end"] or self.st(s)["rst"] is not None for s in sids)

    def report(self, **kw):
        out = {"alpn": self.alpn, "goaway": self.goaway, "closed": self.closed,
               "streams": {str(k): {"status": v["status"], "body": v["body"].decode("utf-8", "replace")[:400],
                                    "end": v["end"], "rst": v["rst"]} for k, v in self.streams.items()}}
        out.update(kw)
        print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ca", required=True)
    ap.add_argument("--host", default="api.openai.com")
    ap.add_argument("mode")
    ap.add_argument("args", nargs="*")
    a = ap.parse_args()
    c = Conn(a.host, a.ca, window=0 if a.mode == "stall" else None)
    if a.mode == "reset":
        n = int(a.args[0])
        out = b""
        for i in range(n):
            sid = 1 + 2 * i
            out += frame(HEADERS, END_HEADERS, sid, c.head("POST", "/v1/chat/completions"))
            out += frame(RST, 0, sid, struct.pack(">I", 8))
        c.send(out)
        c.pump(lambda: c.goaway is not None and c.closed, timeout=10)
        c.report()
    elif a.mode == "continuation":
        n = int(a.args[0])
        out = frame(HEADERS, 0, 1, c.head("GET", "/v1/models"))
        for i in range(n):
            out += frame(CONTINUATION, 0, 1, c.enc.encode([("x-pad-%d" % i, "v" * 20)]))
        c.send(out)
        c.pump(lambda: c.goaway is not None and c.closed, timeout=10)
        c.report()
    elif a.mode == "bigheader":
        n = int(a.args[0])
        block = c.head("GET", "/v1/models", [("x-big", "a" * n)])
        pieces = [block[i:i + 16000] for i in range(0, len(block), 16000)]
        out = b""
        for i, piece in enumerate(pieces):
            last = END_HEADERS if i == len(pieces) - 1 else 0
            out += frame(HEADERS if i == 0 else CONTINUATION, last | (END_STREAM if i == 0 else 0), 1, piece)
        c.send(out)
        c.pump(c.done([1]))
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, c.head("GET", "/v1/models", [("authorization", "Bearer sk-x")])))
        c.pump(c.done([3]))
        c.report()
    elif a.mode == "many":
        n = int(a.args[0])
        sids = [1 + 2 * i for i in range(n)]
        c.send(b"".join(frame(HEADERS, END_HEADERS | END_STREAM, s,
                              c.head("GET", "/v1/models", [("authorization", "Bearer sk-x")])) for s in sids))
        c.pump(c.done(sids), timeout=30)
        c.report()
    elif a.mode == "connect":
        body = base64.b64decode(a.args[0])
        tunnel = c.enc.encode([(":method", "CONNECT"), (":authority", a.host + ":443")])
        ws = c.enc.encode([(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
                           (":path", "/v1/realtime"), (":authority", a.host), ("sec-websocket-version", "13"),
                           ("authorization", "Bearer sk-x")])
        c.send(frame(HEADERS, END_HEADERS, 1, tunnel) + frame(DATA, 0, 1, body) +
               frame(HEADERS, END_HEADERS, 3, ws) + frame(DATA, 0, 3, body))
        c.pump(c.done([1, 3]), timeout=10)
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 5, c.head("GET", "/v1/models", [("authorization", "Bearer sk-x")])))
        c.pump(c.done([5]))
        c.report()
    elif a.mode == "split":
        body = base64.b64decode(a.args[0])
        cut = int(a.args[1])
        c.send(frame(HEADERS, END_HEADERS, 1, c.head("POST", "/v1/chat/completions",
                                                     [("content-type", "application/json"),
                                                      ("authorization", "Bearer sk-x")])) +
               frame(DATA, 0, 1, body[:cut]))
        c.send(frame(DATA, END_STREAM, 1, body[cut:]))
        c.pump(c.done([1]))
        c.report()
    elif a.mode == "mux":
        spec = json.loads(a.args[0])
        def send_stream(sid, sp):
            hdrs = [tuple(h) for h in sp.get("headers", [])]
            body = sp.get("body", "").encode()
            method = "POST" if body else "GET"
            if sp.get("rst_on_data"):
                c.rst_on_data.add(sid)
            c.send(frame(HEADERS, END_HEADERS | (0 if body else END_STREAM), sid, c.head(method, sp["path"], hdrs)) +
                   (frame(DATA, END_STREAM, sid, body) if body else b""))
        sids = [1 + 2 * i for i in range(len(spec))]
        waiting = []
        for sid, sp in zip(sids, spec):
            if "after" in sp:
                waiting.append((sid, sp))
            else:
                send_stream(sid, sp)
        for sid, sp in zip(sids, spec):
            if "rst_after" in sp:
                dl = c.t0 + float(sp["rst_after"])
                c.pump(lambda: time.time() >= dl or c.done([sid])(), timeout=max(0.01, dl - time.time()))
                if not c.done([sid])():
                    c.st(sid)["rst"] = "client"
                    c.order.append([sid, round(time.time() - c.t0, 3)])
                    c.send(frame(RST, 0, sid, struct.pack(">I", 8)))
        for sid, sp in waiting:
            c.pump(c.done([sp["after"]]), timeout=30)
            send_stream(sid, sp)
        c.pump(c.done(sids), timeout=30)
        c.report(order=c.order)
    elif a.mode == "stall":
        n, secs, body = int(a.args[0]), float(a.args[1]), a.args[2].encode()
        extra = [tuple(h.split(": ", 1)) for h in a.args[3:]]
        sids = [1 + 2 * i for i in range(n)]
        c.send(b"".join(frame(HEADERS, END_HEADERS, sid, c.head("POST", "/v1/chat/completions", [
            ("content-type", "application/json"), ("authorization", "Bearer sk-x")] + extra)) +
            frame(DATA, END_STREAM, sid, body) for sid in sids))
        c.pump(lambda: False, timeout=secs)
        c.report()
    else:
        sys.exit("unknown mode " + a.mode)


if __name__ == "__main__":
    main()
