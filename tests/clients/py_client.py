#!/usr/bin/env python3
"""Plain Python client (urllib, stdlib only) for Vigil's end-to-end tests.

Owns: one HTTPS (or HTTP) request the way a typical Python script makes it:
urllib with ssl.create_default_context(), i.e. the system store, or
SSL_CERT_FILE when set (--cafile overrides both). Streaming answers are read
line by line as they arrive and parsed as SSE, each event stamped with its
arrival time, so a test can tell a streamed answer from a buffered one.
Must never: retry, or follow redirects silently (a redirect is reported).

Usage: py_client.py --url URL [--json BODY | --data-file F] [--stream]
         [--header 'Name: value' ...] [--method M] [--cafile F] [--timeout S]
--json BODY is sent as is (Content-Type: application/json); it need not be
valid JSON, so bad-JSON cases can be tested. --data-file sends a file's bytes.
Prints ONE JSON line:
  {"status", "headers", "body"}  body parsed as JSON when it is JSON, else text
  {"status", "headers", "events": [{"event","data","t_ms"}], "raw_len", "complete"}
  with --stream ("complete": false when a chunked stream ended without its
  last chunk)
  (data parsed as JSON when possible, e.g. "[DONE]" stays a string)
Exit 0 whenever an HTTP answer arrived (any status); 1 with {"error", "reason"}
on stdout and a line on stderr when none did (TLS verification, refused,
timeout); 2 for bad usage.
"""
import argparse
import http.client
import json
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def parse_sse(resp, t0):
    """Yield events from a file-like response, as they arrive."""
    event, data, raw_len = None, [], 0
    events = []
    while True:
        line = resp.readline()
        if not line:
            break
        raw_len += len(line)
        line = line.decode("utf-8", "replace").rstrip("\r\n")
        if line == "":
            if data or event:
                text = "\n".join(data)
                try:
                    val = json.loads(text)
                except ValueError:
                    val = text
                events.append({"event": event, "data": val,
                               "t_ms": round((time.monotonic() - t0) * 1000, 1)})
            event, data = None, []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            v = line[5:]
            data.append(v[1:] if v.startswith(" ") else v)
    if data:  # a last event without its blank line (stream cut short)
        events.append({"event": event, "data": "\n".join(data), "t_ms":
                       round((time.monotonic() - t0) * 1000, 1), "unterminated": True})
    return events, raw_len


def fail(reason, msg):
    print(json.dumps({"error": msg, "reason": reason}), flush=True)
    sys.stderr.write("py_client: %s: %s\n" % (reason, msg))
    return 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--json", dest="body")
    g.add_argument("--data-file")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--method")
    ap.add_argument("--cafile")
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args(argv)

    data = None
    if a.body is not None:
        data = a.body.encode("utf-8")
    elif a.data_file:
        with open(a.data_file, "rb") as f:
            data = f.read()
    req = urllib.request.Request(a.url, data=data, method=a.method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for h in a.header:
        k, sep, v = h.partition(":")
        if not sep:
            ap.error("--header wants 'Name: value', got %r" % h)
        req.add_header(k.strip(), v.strip())
    ctx = ssl.create_default_context(cafile=a.cafile) if a.cafile else \
        ssl.create_default_context()
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx),
                                         NoRedirect())
    t0 = time.monotonic()
    try:
        resp = opener.open(req, timeout=a.timeout)
    except urllib.error.HTTPError as e:
        resp = e  # an HTTP answer with an error status: still a result
    except urllib.error.URLError as e:
        r = e.reason
        if isinstance(r, ssl.SSLCertVerificationError):
            return fail("tls-verify", "%s (%s)" % (r.verify_message, r.reason))
        if isinstance(r, ssl.SSLError):
            return fail("tls", str(r))
        if isinstance(r, (socket.timeout, TimeoutError)):
            return fail("timeout", str(r))
        if isinstance(r, ConnectionRefusedError):
            return fail("refused", str(r))
        return fail("connect", str(r))
    except (socket.timeout, TimeoutError) as e:
        return fail("timeout", str(e) or "timed out")
    except (ConnectionError, OSError) as e:
        return fail("connect", str(e))
    out = {"status": resp.status if hasattr(resp, "status") else resp.code,
           "headers": {k.lower(): v for k, v in resp.headers.items()}}
    try:
        ctype = resp.headers.get("Content-Type", "")
        if a.stream and "json" not in ctype.split(";")[0]:
            out["events"], out["raw_len"] = parse_sse(resp, t0)
            # http.client leaves chunk_left at None only after the final
            # zero-size chunk: anything else means the stream was cut short.
            out["complete"] = getattr(resp, "chunk_left", None) is None
        else:
            raw = resp.read()
            out["body_len"] = len(raw)
            try:
                out["body"] = json.loads(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                out["body"] = raw.decode("utf-8", "replace")
    except (socket.timeout, TimeoutError):
        return fail("timeout", "timed out reading the answer")
    except (OSError, http.client.HTTPException) as e:  # IncompleteRead, reset
        return fail("read", "%s: %s" % (type(e).__name__, e))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
