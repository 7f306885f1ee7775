#!/usr/bin/env python3
"""Fake LLM provider for Vigil's end-to-end tests (Python 3 stdlib only).

Owns: a loopback HTTP/1.1 server that speaks the wire formats of the real
providers (OpenAI, Azure OpenAI, Anthropic, Gemini, a little Bedrock), JSON
and SSE, with deterministic answers, and records every request it receives
so a test can assert what really reached "the provider" through the agent.
Must never: listen on anything but loopback (or a veth address a test made
itself, tests/e2e/test_netns.py) in tests, call out anywhere, or
buffer an SSE answer (each event is its own chunk, flushed at once, so a test
can prove the agent streams).

Usage:
  fake_provider.py --listen HOST:PORT [--listen [::1]:PORT ...]
                   --cert C --key K [--plain] --record FILE
                   [--passthrough-sni-log FILE] [--event-delay-ms N]
PORT may be 0; every listener is announced as `fake-provider listening
https://HOST:PORT` (http:// with --plain), then `fake-provider ready` (stdout,
flushed). SIGTERM/SIGINT stop it (exit 0).

Answers: the assistant text is "echo: " + the first 200 characters of the last
user message (string content, or its text parts concatenated). Usage:
prompt tokens = request body bytes // 4, completion tokens = words in the
answer; `x-fake-cached: N` says N of the prompt tokens came from the prompt
cache, reported in each provider's own field (OpenAI
prompt_tokens_details/input_tokens_details.cached_tokens, Anthropic
cache_read_input_tokens beside a smaller input_tokens, Gemini
cachedContentTokenCount). Streams send one event per word (leading space on every word but the
first), so the deltas concatenate to exactly the non-streamed text.

Endpoints:
  OpenAI   POST /v1/chat/completions (stream, stream_options.include_usage),
           POST /v1/responses, POST /v1/completions, GET|HEAD /v1/models[/ID];
           Azure: POST /openai/deployments/D/chat/completions, /openai/v1/...
           Requires `Authorization: Bearer ...` (Azure: or `api-key`).
  Anthropic POST /v1/messages (stream), POST /v1/messages/count_tokens,
           GET /v1/models with anthropic-version. Requires `x-api-key` (401
           authentication_error) and `anthropic-version` (400, as the real API).
  Gemini   POST /v1beta/models/M:generateContent, :streamGenerateContent
           (?alt=sse: SSE with CRLF line ends like Google's; without: a
           streamed JSON array). Requires x-goog-api-key, ?key= or Bearer (403).
  Bedrock  POST /model/ID/invoke (Anthropic body), /model/ID/converse.
  Unknown paths: 404, bad JSON: 400, each in the provider's own error shape
  (provider picked by path, then Host, then anthropic-version header).

Test controls (request headers; the real APIs ignore them):
  x-fake-status: N          answer N (error body in the provider's shape;
                            204/304 without body)
  x-fake-delay-ms: N        delay between SSE events (overrides --event-delay-ms)
  x-fake-split: N           stream N-character pieces instead of words
  x-fake-split-at: K[,K...] stream pieces cut at these character offsets
  x-fake-tool-call: NAME    OpenAI chat / Anthropic: answer with a call of tool
                            NAME whose arguments are {"text": <answer>}, the
                            arguments JSON streamed in the same pieces
  x-fake-abort-after: N     close the connection after N SSE events
  x-fake-answer: TEXT       answer TEXT instead of the echo (output inspection)
  x-fake-answer-z: B64      the same, base64 of zlib-compressed text: the agent
                            reads header values (base64 of text too), so an
                            answer holding a finding is sent this way
  x-fake-header-delay-ms: N wait before sending the response headers
  path /slow-headers        reads the request, records it, never answers

Record (--record): one JSON line per request, written before the answer:
  {"seq","method","path","headers"(lower-cased; repeats joined by ", "),
   "body","body_len","sni","conn_id","tls_version","alpn","client_random",
   "listen","peer","time"}; with a Content-Encoding also "body_decoded"
  (the body with its coding undone) or "decode_error"
conn_id counts TCP connections (same id = keep-alive reuse).
SNI log (--passthrough-sni-log): one JSON line per ClientHello:
  {"conn_id","sni","client_random"(hex, as in SSLKEYLOGFILE),"alpn_offered",
   "listen","peer","time"}; the client random lets a test prove the client's
  own ClientHello reached this server (compare with the client's key log).
"""
import argparse
import base64
import zlib
import http.server
import itertools
import json
import os
import re
import select
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import content_codings  # noqa: E402

CREATED = 1700000000  # fixed "created" stamp: answers are deterministic
ECHO_LIMIT = 200
MAX_BODY = 256 << 20

OPENAI_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means"
    " you aren't using your HTTP library correctly. The OpenAI API expects a"
    " JSON payload, but what was sent was not valid JSON.)")

STATUS_TEXT = {
    400: ("invalid_request_error", "INVALID_ARGUMENT", "Bad request"),
    401: ("authentication_error", "UNAUTHENTICATED", "Unauthorized"),
    403: ("permission_error", "PERMISSION_DENIED", "Forbidden"),
    404: ("not_found_error", "NOT_FOUND", "Not found"),
    408: ("timeout_error", "DEADLINE_EXCEEDED", "Request timeout"),
    413: ("request_too_large", "INVALID_ARGUMENT", "Request too large"),
    429: ("rate_limit_error", "RESOURCE_EXHAUSTED", "Rate limit exceeded"),
    500: ("api_error", "INTERNAL", "Internal server error"),
    502: ("api_error", "UNAVAILABLE", "Bad gateway"),
    503: ("api_error", "UNAVAILABLE", "Service unavailable"),
    529: ("overloaded_error", "UNAVAILABLE", "Overloaded"),
}


class State:
    """Shared by every listener of one process."""

    def __init__(self, record, sni_log, event_delay_ms):
        self.lock = threading.Lock()
        self.conn_ids = itertools.count(1)
        self.req_ids = itertools.count(1)
        self.record_f = open(record, "a", encoding="utf-8") if record else None
        self.sni_f = open(sni_log, "a", encoding="utf-8") if sni_log else None
        self.event_delay_ms = event_delay_ms
        self.stop = threading.Event()

    def _write(self, f, obj):
        if f is None:
            return
        line = json.dumps(obj, ensure_ascii=False) + "\n"
        with self.lock:
            f.write(line)
            f.flush()

    def record(self, obj):
        self._write(self.record_f, obj)

    def log_sni(self, obj):
        self._write(self.sni_f, obj)


def parse_client_hello(data):
    """SNI, ALPN list and client random from a raw TLS ClientHello record.

    Returns {} when the bytes are not (yet) a complete ClientHello; never
    raises on malformed input (this is a test fixture, but a client under test
    may send anything).
    """
    out = {}
    try:
        if len(data) < 9 or data[0] != 0x16 or data[5] != 0x01:
            return out
        rec_len = int.from_bytes(data[3:5], "big")
        body = data[5:5 + rec_len]
        hs_len = int.from_bytes(body[1:4], "big")
        hello = body[4:4 + hs_len]
        p = 2
        out["client_random"] = hello[p:p + 32].hex()
        p += 32
        p += 1 + hello[p]                                   # session id
        p += 2 + int.from_bytes(hello[p:p + 2], "big")      # cipher suites
        p += 1 + hello[p]                                   # compression
        end = p + 2 + int.from_bytes(hello[p:p + 2], "big")
        p += 2
        while p + 4 <= min(end, len(hello)):
            etype = int.from_bytes(hello[p:p + 2], "big")
            elen = int.from_bytes(hello[p + 2:p + 4], "big")
            ext = hello[p + 4:p + 4 + elen]
            p += 4 + elen
            if etype == 0 and len(ext) >= 5:                # server_name
                nlen = int.from_bytes(ext[3:5], "big")
                out["sni"] = ext[5:5 + nlen].decode("ascii", "replace")
            elif etype == 16 and len(ext) >= 2:             # ALPN
                q, protos = 2, []
                while q < len(ext):
                    plen = ext[q]
                    protos.append(ext[q + 1:q + 1 + plen].decode("ascii", "replace"))
                    q += 1 + plen
                out["alpn_offered"] = protos
    except (IndexError, ValueError):
        pass
    return out


def peek_client_hello(sock, timeout=3.0):
    """Peek (not consume) the first TLS record so OpenSSL still reads it."""
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], 0.05)
        if not r:
            continue
        try:
            data = sock.recv(16389, socket.MSG_PEEK)
        except OSError:
            return data
        if not data:
            return data
        if len(data) >= 5:
            need = 5 + int.from_bytes(data[3:5], "big")
            if len(data) >= need or data[0] != 0x16:
                return data
        time.sleep(0.01)
    return data


class FakeServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, host, port, state, ssl_ctx):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.state = state
        self.ssl_ctx = ssl_ctx
        self.listen_str = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
        super().__init__((host, port), Handler)
        port = self.socket.getsockname()[1]
        self.listen_str = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)

    def server_bind(self):
        # HTTPServer.server_bind would do a reverse DNS lookup (getfqdn): skip.
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name = self.server_address[0]
        self.server_port = self.server_address[1]

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        if isinstance(e, (ssl.SSLError, ConnectionError, TimeoutError, OSError)):
            return  # clients under test drop connections on purpose
        super().handle_error(request, client_address)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-provider"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are dropped after this

    # ---- connection set-up -------------------------------------------------
    def setup(self):
        st = self.server.state
        self.conn_id = next(st.conn_ids)
        self.sni = None
        self.tls_version = None
        self.alpn = None
        self.hello = {}
        self.peer = "%s:%s" % (self.client_address[0], self.client_address[1])
        if self.server.ssl_ctx is not None:
            raw = self.request
            raw.settimeout(10)
            self.hello = parse_client_hello(peek_client_hello(raw))
            tls = self.server.ssl_ctx.wrap_socket(raw, server_side=True,
                                                  do_handshake_on_connect=False)
            tls._fake_conn = self  # read back by the SNI callback
            try:
                tls.do_handshake()
            except (ssl.SSLError, OSError) as e:
                # Expected in certificate tests (the client refuses our
                # certificate); one line so a test log shows why.
                sys.stderr.write("fake-provider: conn %d from %s sni %r: handshake failed:"
                                 " %s\n" % (self.conn_id, self.peer, self.sni, e))
                sys.stderr.flush()
                tls.close()
                raise
            self.request = tls
            self.tls_version = tls.version()
            self.alpn = tls.selected_alpn_protocol()
        super().setup()

    def finish(self):
        # socketserver closes the raw socket it accepted, but wrap_socket
        # detached that one: close the TLS socket ourselves, or the
        # connection lingers (the handler <-> socket reference cycle keeps
        # it alive until the garbage collector runs).
        try:
            super().finish()
        finally:
            if self.server.ssl_ctx is not None and isinstance(self.request, ssl.SSLSocket):
                try:
                    self.request.close()
                except OSError:
                    pass

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):  # quiet: the record file is the log
        pass

    # ---- helpers -----------------------------------------------------------
    def _hdr(self, name, default=None):
        v = self.headers.get(name)
        return default if v is None else v

    def _int_hdr(self, name, default=None):
        v = self.headers.get(name)
        try:
            return int(v) if v is not None else default
        except ValueError:
            return default

    def cached(self, pt):
        """Prompt tokens the client asked to be reported as read from the cache."""
        return min(max(self._int_hdr("x-fake-cached", 0) or 0, 0), pt)

    def read_body(self):
        te = (self._hdr("Transfer-Encoding", "") or "").lower()
        if "chunked" in te:
            parts, total = [], 0
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("eof in chunked body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)
            return b"".join(parts)
        n = self._hdr("Content-Length")
        if n is None:
            return b""
        n = int(n)
        if n < 0 or n > MAX_BODY:
            raise ValueError("bad content-length")
        chunks, left = [], n
        while left > 0:
            c = self.rfile.read(min(left, 1 << 20))
            if not c:
                raise ConnectionError("eof in body")
            chunks.append(c)
            left -= len(c)
        return b"".join(chunks)

    def send_bytes(self, status, body, ctype="application/json", extra=None):
        delay = self._int_hdr("x-fake-header-delay-ms", 0)
        if delay:
            time.sleep(delay / 1000.0)
        self.send_response(status)
        if status not in (204, 304):
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        if self.command == "HEAD" or status in (204, 304):
            body = b""
        # Head and body in one write, as real front ends do (one TLS record
        # for a small answer).
        self._headers_buffer.append(b"\r\n")
        data = b"".join(self._headers_buffer) + body
        self._headers_buffer = []
        self.wfile.write(data)

    def send_json(self, status, obj, extra=None):
        hdrs = dict(self.provider_headers())
        hdrs.update(extra or {})
        self.send_bytes(status, json.dumps(obj).encode(), extra=hdrs)

    def provider_headers(self):
        rid = "req_fake%06d" % self.req_id
        if self.provider == "anthropic":
            return {"request-id": rid}
        if self.provider == "openai":
            return {"x-request-id": rid, "openai-processing-ms": "1",
                    "openai-version": "2020-10-01"}
        if self.provider == "bedrock":
            return {"x-amzn-requestid": rid}
        return {}

    def send_error_shape(self, status, message, etype=None, param=None, code=None):
        """An error in this request's provider's own shape."""
        a_type, g_status, _ = STATUS_TEXT.get(status, ("api_error", "UNKNOWN", "Error"))
        if self.provider == "anthropic":
            body = {"type": "error", "error": {"type": etype or a_type, "message": message},
                    "request_id": "req_fake%06d" % self.req_id}
        elif self.provider == "gemini":
            body = {"error": {"code": status, "message": message, "status": etype or g_status}}
        elif self.provider == "bedrock":
            self.send_json(status, {"message": message},
                           extra={"x-amzn-errortype": (etype or "ValidationException")})
            return
        else:
            if etype is None:
                etype = "server_error" if status >= 500 else (
                    "rate_limit_exceeded" if status == 429 else "invalid_request_error")
            body = {"error": {"message": message, "type": etype, "param": param,
                              "code": code}}
        self.send_json(status, body)

    # ---- SSE ---------------------------------------------------------------
    def start_stream(self, ctype="text/event-stream; charset=utf-8"):
        delay = self._int_hdr("x-fake-header-delay-ms", 0)
        if delay:
            time.sleep(delay / 1000.0)
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in self.provider_headers().items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.events_sent = 0
        self.event_delay = self._int_hdr("x-fake-delay-ms",
                                         self.server.state.event_delay_ms) / 1000.0
        self.abort_after = self._int_hdr("x-fake-abort-after")

    def send_chunk(self, data):
        """One HTTP chunk, written (and so flushed) on its own. Returns False
        when the stream must stop (client gone, or abort requested)."""
        if self.abort_after is not None and self.events_sent >= self.abort_after:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return False
        if self.events_sent and self.event_delay > 0:
            time.sleep(self.event_delay)
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        except OSError:
            self.close_connection = True
            return False
        self.events_sent += 1
        return True

    def end_stream(self):
        try:
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True

    def stream_events(self, events, crlf=False):
        """events: iterable of (event_name or None, obj or str)."""
        nl = "\r\n" if crlf else "\n"
        for name, data in events:
            payload = data if isinstance(data, str) else json.dumps(data)
            text = ("event: %s%s" % (name, nl) if name else "") + "data: " + payload + nl + nl
            if not self.send_chunk(text.encode()):
                return
        self.end_stream()

    # ---- dispatch ----------------------------------------------------------
    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

    def dispatch(self):
        st = self.server.state
        self.req_id = next(st.req_ids)
        url = urllib.parse.urlsplit(self.path)
        self.url_path, self.query = url.path, urllib.parse.parse_qs(url.query)
        self.provider = self.classify()
        try:
            body = self.read_body()
        except (ValueError, ConnectionError) as e:
            self.close_connection = True
            if isinstance(e, ValueError):
                self.send_error_shape(413 if "large" in str(e) else 400, "bad request body")
            return
        headers = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = headers[k] + ", " + v if k in headers else v
        rec_extra = {}
        raw_body = body
        if headers.get("content-encoding"):
            # what the provider will read: the body with its coding undone
            try:
                body = content_codings.decompress(headers["content-encoding"], body)
                rec_extra["body_decoded"] = body.decode("utf-8", "replace")
            except Exception as e:  # noqa: BLE001 - any decoder error is the finding
                rec_extra["decode_error"] = str(e)
        st.record(dict(rec_extra, **{
            "seq": self.req_id, "method": self.command, "path": self.path,
            "headers": headers, "body": raw_body.decode("utf-8", "replace"),
            "body_len": len(raw_body), "sni": self.sni, "conn_id": self.conn_id,
            "tls_version": self.tls_version, "alpn": self.alpn,
            "client_random": self.hello.get("client_random"),
            "listen": self.server.listen_str, "peer": self.peer,
            "time": round(time.time(), 3)}))
        self.body = body
        if self.url_path.startswith("/slow-headers"):
            self.hang()
            return
        fake = self._int_hdr("x-fake-status")
        if fake is not None and fake >= 200 and fake != 200:
            if fake in (204, 304) or fake < 400:
                self.send_bytes(fake, b"")
            else:
                self.send_error_shape(fake, STATUS_TEXT.get(fake, ("", "", "Error"))[2] +
                                      " (x-fake-status)")
            return
        self.route()

    def hang(self):
        """Never answer; return once the client goes away or we stop."""
        self.close_connection = True
        self.connection.settimeout(0.5)
        while not self.server.state.stop.is_set():
            try:
                if self.connection.recv(4096) == b"":
                    return
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except OSError:
                return

    def classify(self):
        p = self.url_path
        host = (self._hdr("Host", "") or "").split(":")[0].lower()
        if p.startswith("/v1/messages"):
            return "anthropic"
        if p.startswith("/v1beta/") or ":generateContent" in p or \
                ":streamGenerateContent" in p:
            return "gemini"
        if p.startswith("/model/") or "amazonaws.com" in host:
            return "bedrock"
        if p.startswith("/openai/") or host.endswith(".openai.azure.com"):
            return "azure"
        if p.startswith("/v1/chat/") or p in ("/v1/responses", "/v1/completions"):
            return "openai"
        if host.endswith("anthropic.com") or self._hdr("anthropic-version"):
            return "anthropic"
        if host.endswith("googleapis.com"):
            return "gemini"
        return "openai"

    def route(self):
        p, m = self.url_path, self.command
        prov = self.provider
        if prov == "azure":
            self.provider = "openai"  # Azure OpenAI answers in OpenAI's shapes
        if not self.check_auth(prov):
            return
        if prov in ("openai", "azure"):
            if m == "POST" and (p == "/v1/chat/completions" or p == "/openai/v1/chat/completions"
                                or re.fullmatch(r"/openai/deployments/[^/]+/chat/completions", p)):
                return self.openai_chat()
            if m == "POST" and p in ("/v1/responses", "/openai/v1/responses"):
                return self.openai_responses()
            if m == "POST" and p == "/v1/completions":
                return self.openai_legacy()
            if m == "POST" and p == "/v1/files":
                # uploads (multipart, or any body): accepted as they come
                return self.send_json(200, {"id": "file-fake-%d" % self.req_id, "object": "file",
                                            "bytes": len(self.body), "purpose": "batch"})
            if m in ("GET", "HEAD") and (p == "/v1/models" or p.startswith("/v1/models/")):
                return self.models()
            return self.send_error_shape(404, "Invalid URL (%s %s)" % (m, p))
        if prov == "anthropic":
            if m == "POST" and p == "/v1/messages":
                return self.anthropic_messages()
            if m == "POST" and p == "/v1/messages/count_tokens":
                req = self.parse_json()
                if req is not None:
                    self.send_json(200, {"input_tokens": len(self.body) // 4})
                return
            if m in ("GET", "HEAD") and (p == "/v1/models" or p.startswith("/v1/models/")):
                return self.models()
            return self.send_error_shape(404, "Not found")
        if prov == "gemini":
            g = re.fullmatch(r"/v1(?:beta|alpha)?/models/([^/:]+):(generateContent|"
                             r"streamGenerateContent)", p)
            if m == "POST" and g:
                return self.gemini(g.group(1), g.group(2) == "streamGenerateContent")
            return self.send_error_shape(404, "Requested entity was not found.")
        if prov == "bedrock":
            b = re.fullmatch(r"/model/([^/]+)/(invoke|converse)", p)
            if m == "POST" and b:
                return self.bedrock(urllib.parse.unquote(b.group(1)), b.group(2))
            return self.send_error_shape(404, "Not found", etype="UnknownOperationException")
        return self.send_error_shape(404, "Not found")

    def check_auth(self, prov):
        h = self.headers
        bearer = (h.get("Authorization") or "").startswith("Bearer ") and \
            len(h.get("Authorization")) > 7
        if prov == "openai" and not bearer:
            self.send_error_shape(401, "You didn't provide an API key. You need to provide"
                                  " your API key in an Authorization header using Bearer"
                                  " auth (i.e. Authorization: Bearer YOUR_KEY).")
            return False
        if prov == "azure" and not (bearer or h.get("api-key")):
            self.send_error_shape(401, "Access denied due to missing subscription key.",
                                  code="401")
            return False
        if prov == "anthropic":
            if not h.get("x-api-key") and not bearer:
                self.send_error_shape(401, "x-api-key header is required")
                return False
            if not h.get("anthropic-version"):
                self.send_error_shape(400, "anthropic-version: header is required")
                return False
        if prov == "gemini" and not (h.get("x-goog-api-key") or self.query.get("key")
                                     or bearer):
            self.send_error_shape(403, "Method doesn't allow unregistered callers (callers"
                                  " without established identity). Please use API Key or"
                                  " other form of API consumer identity to call this API.")
            return False
        if prov == "bedrock" and not h.get("Authorization"):
            self.send_error_shape(403, "Missing Authentication Token",
                                  etype="MissingAuthenticationTokenException")
            return False
        return True

    def parse_json(self):
        try:
            req = json.loads(self.body.decode("utf-8"))
            if not isinstance(req, dict):
                raise ValueError("not an object")
            return req
        except (ValueError, UnicodeDecodeError):
            if self.provider == "openai":
                self.send_error_shape(400, OPENAI_BAD_JSON)
            elif self.provider == "gemini":
                self.send_error_shape(400, "Invalid JSON payload received.")
            else:
                self.send_error_shape(400, "There was an error parsing the body of your"
                                      " request: invalid JSON")
            return None

    # ---- answers -----------------------------------------------------------
    @staticmethod
    def text_of(content):
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(p.get("text", "") for p in content
                           if isinstance(p, dict) and isinstance(p.get("text"), str))
        return ""

    @classmethod
    def last_user(cls, messages, role_key="role", content_key="content", user="user"):
        if not isinstance(messages, list):
            return ""
        for msg in reversed(messages):
            if isinstance(msg, dict) and msg.get(role_key, user) == user:
                return cls.text_of(msg.get(content_key))
        return ""

    def answer(self, user_text):
        z = self.headers.get("x-fake-answer-z")
        text = (zlib.decompress(base64.b64decode(z)).decode("utf-8") if z else self.headers.get("x-fake-answer")) or \
            "echo: " + user_text[:ECHO_LIMIT]
        usage = (len(self.body) // 4, len(text.split()))
        split = self._int_hdr("x-fake-split")
        cuts = self.headers.get("x-fake-split-at")
        if cuts:
            at = sorted({min(max(int(k), 0), len(text)) for k in cuts.split(",") if k.strip().isdigit()})
            bounds = [0] + at + [len(text)]
            pieces = [text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
        elif split and split > 0:
            pieces = [text[i:i + split] for i in range(0, len(text), split)]
        else:
            pieces = re.findall(r"\s*\S+", text)
            tail = text[len("".join(pieces)):]  # trailing blanks ride on the last word
            if tail:
                if pieces:
                    pieces[-1] += tail
                else:
                    pieces = [tail]
        return text, pieces, usage

    def tool_arguments(self, text, pieces):
        """The arguments JSON of a fake tool call carrying text, cut like pieces."""
        args = json.dumps({"text": text})
        split = self._int_hdr("x-fake-split")
        if split and split > 0:
            return args, [args[i:i + split] for i in range(0, len(args), split)]
        return args, [args]

    def openai_chat(self):
        req = self.parse_json()
        if req is None:
            return
        if not isinstance(req.get("messages"), list):
            return self.send_error_shape(400, "Missing required parameter: 'messages'.",
                                         param="messages", code="missing_required_parameter")
        model = req.get("model")
        dep = re.fullmatch(r"/openai/deployments/([^/]+)/chat/completions", self.url_path)
        if dep and not model:
            model = dep.group(1)
        if not model:
            return self.send_error_shape(400, "you must provide a model parameter",
                                         param="model")
        text, pieces, (pt, ct) = self.answer(self.last_user(req["messages"]))
        usage = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        if self.headers.get("x-fake-cached"):
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached(pt), "audio_tokens": 0}
        cid = "chatcmpl-fake%06d" % self.req_id
        tool = self.headers.get("x-fake-tool-call")
        if tool:
            text, pieces = self.tool_arguments(text, pieces)
        if not req.get("stream"):
            msg = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
            if tool:
                msg["content"] = None
                msg["tool_calls"] = [{"id": "call_fake1", "type": "function",
                                      "function": {"name": tool, "arguments": text}}]
            return self.send_json(200, {
                "id": cid, "object": "chat.completion", "created": CREATED, "model": model,
                "choices": [{"index": 0, "message": msg,
                             "logprobs": None, "finish_reason": "tool_calls" if tool else "stop"}],
                "usage": usage, "service_tier": "default", "system_fingerprint": "fp_fake"})
        inc = bool((req.get("stream_options") or {}).get("include_usage"))

        def chunk(choices, **kw):
            c = {"id": cid, "object": "chat.completion.chunk", "created": CREATED,
                 "model": model, "service_tier": "default", "system_fingerprint": "fp_fake",
                 "choices": choices}
            if inc:
                c["usage"] = None
            c.update(kw)
            return c

        def choice(delta, finish=None):
            return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

        def events():
            if tool:
                yield None, chunk(choice({"role": "assistant", "content": None, "tool_calls": [
                    {"index": 0, "id": "call_fake1", "type": "function",
                     "function": {"name": tool, "arguments": ""}}]}))
                for p in pieces:
                    yield None, chunk(choice({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}))
                yield None, chunk(choice({}, "tool_calls"))
            else:
                yield None, chunk(choice({"role": "assistant", "content": "", "refusal": None}))
                for p in pieces:
                    yield None, chunk(choice({"content": p}))
                yield None, chunk(choice({}, "stop"))
            if inc:
                yield None, chunk([], usage=usage)
            yield None, "[DONE]"
        self.start_stream()
        self.stream_events(events())

    def openai_responses(self):
        req = self.parse_json()
        if req is None:
            return
        model = req.get("model")
        if not model:
            return self.send_error_shape(400, "Missing required parameter: 'model'.",
                                         param="model")
        inp = req.get("input")
        user = inp if isinstance(inp, str) else self.last_user(inp)
        text, pieces, (pt, ct) = self.answer(user)
        rid, mid = "resp_fake%06d" % self.req_id, "msg_fake%06d" % self.req_id
        usage = {"input_tokens": pt, "input_tokens_details": {"cached_tokens": self.cached(pt)},
                 "output_tokens": ct, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": pt + ct}
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item = {"id": mid, "type": "message", "status": "completed", "role": "assistant",
                "content": [part]}

        def resp(status, output, u):
            return {"id": rid, "object": "response", "created_at": CREATED,
                    "status": status, "error": None, "incomplete_details": None,
                    "model": model, "output": output, "parallel_tool_calls": True,
                    "tool_choice": "auto", "tools": [], "usage": u}
        if not req.get("stream"):
            return self.send_json(200, resp("completed", [item], usage))
        seq = itertools.count(0)

        def ev(name, **kw):
            return name, dict({"type": name, "sequence_number": next(seq)}, **kw)

        def events():
            yield ev("response.created", response=resp("in_progress", [], None))
            yield ev("response.in_progress", response=resp("in_progress", [], None))
            yield ev("response.output_item.added", output_index=0,
                     item=dict(item, status="in_progress", content=[]))
            yield ev("response.content_part.added", item_id=mid, output_index=0,
                     content_index=0, part=dict(part, text=""))
            for p in pieces:
                yield ev("response.output_text.delta", item_id=mid, output_index=0,
                         content_index=0, delta=p, logprobs=[])
            yield ev("response.output_text.done", item_id=mid, output_index=0,
                     content_index=0, text=text, logprobs=[])
            yield ev("response.content_part.done", item_id=mid, output_index=0,
                     content_index=0, part=part)
            yield ev("response.output_item.done", output_index=0, item=item)
            yield ev("response.completed", response=resp("completed", [item], usage))
        self.start_stream()
        self.stream_events(events())

    def openai_legacy(self):
        req = self.parse_json()
        if req is None:
            return
        prompt = req.get("prompt", "")
        if isinstance(prompt, list):
            prompt = next((x for x in reversed(prompt) if isinstance(x, str)), "")
        text, pieces, (pt, ct) = self.answer(prompt if isinstance(prompt, str) else "")
        model = req.get("model") or "gpt-3.5-turbo-instruct"
        cid = "cmpl-fake%06d" % self.req_id
        usage = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}

        def body(t, finish, **kw):
            return dict({"id": cid, "object": "text_completion", "created": CREATED,
                         "model": model, "choices": [{"text": t, "index": 0, "logprobs": None,
                                                      "finish_reason": finish}]}, **kw)
        if not req.get("stream"):
            return self.send_json(200, body(text, "stop", usage=usage))
        inc = bool((req.get("stream_options") or {}).get("include_usage"))

        def events():
            for p in pieces:
                yield None, body(p, None)
            yield None, body("", "stop")
            if inc:
                yield None, dict(body("", None, usage=usage), choices=[])
            yield None, "[DONE]"
        self.start_stream()
        self.stream_events(events())

    def models(self):
        if self.provider == "anthropic":
            ids = ["claude-sonnet-4-5", "claude-haiku-4-5"]
            data = [{"type": "model", "id": i, "display_name": i,
                     "created_at": "2025-01-01T00:00:00Z"} for i in ids]
            one = self.url_path[len("/v1/models/"):] if self.url_path.startswith(
                "/v1/models/") else None
            if one:
                return self.send_json(200, {"type": "model", "id": one, "display_name": one,
                                            "created_at": "2025-01-01T00:00:00Z"})
            return self.send_json(200, {"data": data, "has_more": False,
                                        "first_id": ids[0], "last_id": ids[-1]})
        ids = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini"]
        one = self.url_path[len("/v1/models/"):] if self.url_path.startswith(
            "/v1/models/") else None
        if one:
            return self.send_json(200, {"id": one, "object": "model", "created": CREATED,
                                        "owned_by": "system"})
        return self.send_json(200, {"object": "list", "data": [
            {"id": i, "object": "model", "created": CREATED, "owned_by": "system"}
            for i in ids]})

    def anthropic_messages(self, model=None, bedrock=False):
        req = self.parse_json()
        if req is None:
            return
        for field in ("model", "max_tokens", "messages"):
            if field == "model" and bedrock:
                continue
            if field not in req:
                return self.send_error_shape(400, "%s: Field required" % field)
        model = model or req["model"]
        text, pieces, (pt, ct) = self.answer(self.last_user(req["messages"]))
        mid = "msg_fake%06d" % self.req_id
        msg = {"id": mid, "type": "message", "role": "assistant", "model": model,
               "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
               "stop_sequence": None,
               "usage": {"input_tokens": pt - self.cached(pt), "cache_creation_input_tokens": 0,
                         "cache_read_input_tokens": self.cached(pt), "output_tokens": ct}}
        tool = self.headers.get("x-fake-tool-call")
        if tool:
            msg["content"].append({"type": "tool_use", "id": "toolu_fake1", "name": tool,
                                   "input": {"text": text}})
            msg["stop_reason"] = "tool_use"
        if not req.get("stream") or bedrock:
            return self.send_json(200, msg)

        def events():
            start = dict(msg, content=[], stop_reason=None,
                         usage=dict(msg["usage"], output_tokens=1))
            yield "message_start", {"type": "message_start", "message": start}
            yield "content_block_start", {"type": "content_block_start", "index": 0,
                                          "content_block": {"type": "text", "text": ""}}
            yield "ping", {"type": "ping"}
            for p in pieces:
                yield "content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "text_delta", "text": p}}
            yield "content_block_stop", {"type": "content_block_stop", "index": 0}
            if tool:
                yield "content_block_start", {"type": "content_block_start", "index": 1,
                                              "content_block": {"type": "tool_use", "id": "toolu_fake1",
                                                                "name": tool, "input": {}}}
                yield "content_block_delta", {"type": "content_block_delta", "index": 1,
                                              "delta": {"type": "input_json_delta",
                                                        "partial_json": json.dumps({"text": text})}}
                yield "content_block_stop", {"type": "content_block_stop", "index": 1}
            yield "message_delta", {"type": "message_delta",
                                    "delta": {"stop_reason": msg["stop_reason"],
                                              "stop_sequence": None},
                                    "usage": {"output_tokens": ct}}
            yield "message_stop", {"type": "message_stop"}
        self.start_stream()
        self.stream_events(events())

    def gemini(self, model, stream):
        req = self.parse_json()
        if req is None:
            return
        contents = req.get("contents")
        if not isinstance(contents, list) or not contents:
            return self.send_error_shape(400, "* GenerateContentRequest.contents: contents is"
                                         " not specified")
        user = ""
        for c in reversed(contents):
            if isinstance(c, dict) and c.get("role", "user") == "user":
                user = self.text_of(c.get("parts"))
                break
        text, pieces, (pt, ct) = self.answer(user)
        rid = "fake%06d" % self.req_id

        def resp(t, finish, cand_tokens):
            cand = {"content": {"parts": [{"text": t}], "role": "model"}, "index": 0}
            if finish:
                cand["finishReason"] = finish
            um = {"promptTokenCount": pt, "totalTokenCount": pt + cand_tokens}
            if self.cached(pt):
                um["cachedContentTokenCount"] = self.cached(pt)
            if cand_tokens:
                um["candidatesTokenCount"] = cand_tokens
            return {"candidates": [cand], "usageMetadata": um, "modelVersion": model,
                    "responseId": rid}
        if not stream:
            return self.send_json(200, resp(text, "STOP", ct))
        # usageMetadata is cumulative on every chunk, as Google sends it.
        chunks, done = [], ""
        for i, p in enumerate(pieces):
            done += p
            last = i == len(pieces) - 1
            chunks.append(resp(p, "STOP" if last else None, len(done.split())))
        if self.query.get("alt", [""])[0] == "sse":
            self.start_stream()
            self.stream_events(((None, c) for c in chunks), crlf=True)
            return
        # Without alt=sse Google streams one JSON array, element by element.
        self.start_stream(ctype="application/json; charset=UTF-8")
        for i, c in enumerate(chunks):
            if not self.send_chunk((("[" if i == 0 else "\r\n,") + json.dumps(c)).encode()):
                return
        if self.send_chunk(b"]"):
            self.end_stream()

    def bedrock(self, model, op):
        if op == "invoke":
            return self.anthropic_messages(model=model, bedrock=True)
        req = self.parse_json()
        if req is None:
            return
        text, _, (pt, ct) = self.answer(self.last_user(req.get("messages")))
        self.send_json(200, {"output": {"message": {"role": "assistant",
                                                    "content": [{"text": text}]}},
                             "stopReason": "end_turn",
                             "usage": {"inputTokens": pt, "outputTokens": ct,
                                       "totalTokens": pt + ct},
                             "metrics": {"latencyMs": 1}})


def make_ssl_ctx(cert, key, state):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])

    def on_sni(sslsock, server_name, _ctx):
        h = getattr(sslsock, "_fake_conn", None)
        if h is not None:
            h.sni = server_name
        state.log_sni({
            "conn_id": h.conn_id if h else None, "sni": server_name,
            "client_random": h.hello.get("client_random") if h else None,
            "alpn_offered": h.hello.get("alpn_offered") if h else None,
            "listen": h.server.listen_str if h else None,
            "peer": h.peer if h else None, "time": round(time.time(), 3)})
        return None
    ctx.sni_callback = on_sni
    return ctx


def parse_listen(s):
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT or [V6]:PORT, got %r" % s)
    return host.strip("[]"), int(port)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fake LLM provider for Vigil tests.")
    ap.add_argument("--listen", action="append", type=parse_listen, required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--plain", action="store_true", help="serve plain HTTP, no TLS")
    ap.add_argument("--record", required=True)
    ap.add_argument("--passthrough-sni-log")
    ap.add_argument("--event-delay-ms", type=int, default=0)
    a = ap.parse_args(argv)
    if not a.plain and not (a.cert and a.key):
        ap.error("--cert and --key are required unless --plain")
    state = State(a.record, a.passthrough_sni_log, a.event_delay_ms)
    ctx = None if a.plain else make_ssl_ctx(a.cert, a.key, state)
    servers = []
    try:
        for host, port in a.listen:
            servers.append(FakeServer(host, port, state, ctx))
    except OSError as e:
        sys.stderr.write("fake-provider: cannot listen: %s\n" % e)
        return 1
    for s in servers:
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True).start()
        print("fake-provider listening %s://%s" % ("http" if a.plain else "https",
                                                     s.listen_str))
    print("fake-provider ready", flush=True)

    def stop(_sig, _frm):
        state.stop.set()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not state.stop.wait(0.5):
        pass
    for s in servers:
        s.shutdown()
        s.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
