#!/usr/bin/env python3
"""Self-test of the end-to-end fixtures, with no agent in the path.

Owns: proving that the fake provider, the test PKI, the hosts trick and the
real clients (curl, tests/clients/py_client.py, the official OpenAI and
Anthropic Node SDKs) work together directly, so an end-to-end failure later
points at the agent, not at a fixture. Prints `PASS name` / `FAIL name: why`
per check and exits non-zero on any failure.
Must never: leave a process running (every child is stopped by its pid, also
on failure), send traffic anywhere but loopback, or change the machine's
/etc/hosts (the SDK runs see a private one through tests/fakes/nsrun.py).

Needs: root (unshare -m, port 443 on a private 127.x address), openssl, curl,
node + npm (tests/clients/install.sh installs the pinned SDKs if needed).
"""
import http.client
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLIENTS = os.path.join(ROOT, "tests", "clients")
sys.path.insert(0, HERE)
import nsrun  # noqa: E402
import testpki  # noqa: E402

FAKE = os.path.join(HERE, "fake_provider.py")
PY_CLIENT = os.path.join(CLIENTS, "py_client.py")
OPENAI_JS = os.path.join(CLIENTS, "openai_chat.mjs")
ANTHROPIC_JS = os.path.join(CLIENTS, "anthropic_msg.mjs")

passed = failed = 0


def check(name, ok, why=""):
    global passed, failed
    if ok:
        passed += 1
        print("PASS %s" % name, flush=True)
    else:
        failed += 1
        print("FAIL %s: %s" % (name, why), flush=True)
    return ok


class Fake:
    """One fake_provider process; stopped by pid in stop()."""

    def __init__(self, tmp, name, listens, cert=None, key=None, plain=False, extra=()):
        self.record = os.path.join(tmp, name + ".rec.jsonl")
        self.sni_log = os.path.join(tmp, name + ".sni.jsonl")
        argv = [sys.executable, FAKE, "--record", self.record,
                "--passthrough-sni-log", self.sni_log]
        for listen in listens:
            argv += ["--listen", listen]
        argv += ["--plain"] if plain else ["--cert", cert, "--key", key]
        argv += list(extra)
        self.err = open(os.path.join(tmp, name + ".stderr"), "w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.urls = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            line = line.strip()
            if line.startswith("fake-provider listening "):
                self.urls.append(line.split()[-1])
            if line == "fake-provider ready":
                return
        self.stop()
        raise RuntimeError("fake provider %s did not become ready (see %s)" %
                           (name, self.err.name))

    def port(self, i=0):
        return int(self.urls[i].rsplit(":", 1)[1])

    def records(self):
        try:
            with open(self.record) as f:
                return [json.loads(x) for x in f if x.strip()]
        except FileNotFoundError:
            return []

    def find(self, marker):
        return [r for r in self.records() if marker in r["body"]]

    def snis(self):
        try:
            with open(self.sni_log) as f:
                return [json.loads(x) for x in f if x.strip()]
        except FileNotFoundError:
            return []

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.err.close()


def free_loopback_ip():
    """A random 127.x.y.z where port 443 is free (other tests may hold 127.0.0.1:443)."""
    for _ in range(50):
        ip = "127.%d.%d.%d" % (random.randint(100, 250), random.randint(0, 255),
                               random.randint(2, 250))
        s = socket.socket()
        try:
            s.bind((ip, 443))
            return ip
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free loopback address for port 443")


def run(argv, env=None, timeout=60, input_=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, env=e, timeout=timeout,
                          input=input_)


def jline(r):
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


class Ctx:
    pass


def curl(c, url, *args, resolve_ip=None, timeout=30):
    """curl against the fake; returns (status, headers text, body text, exit code)."""
    tmp = c.tmp
    hfile, bfile = os.path.join(tmp, "curl.h"), os.path.join(tmp, "curl.b")
    for f in (hfile, bfile):
        if os.path.exists(f):
            os.unlink(f)
    argv = ["curl", "-sS", "--http1.1", "--cacert", c.pki["ca_cert"], "-D", hfile,
            "-o", bfile, "-w", "%{http_code}", "--max-time", str(timeout)]
    if resolve_ip:
        host = url.split("//", 1)[1].split("/", 1)[0]
        argv += ["--resolve", "%s:%s" % (host if ":" in host else host + ":443",
                                         resolve_ip)]
    r = run(argv + list(args) + [url], timeout=timeout + 10)
    h = open(hfile).read() if os.path.exists(hfile) else ""
    b = open(bfile, encoding="utf-8", errors="replace", newline="").read() \
        if os.path.exists(bfile) else ""
    try:
        status = int(r.stdout.strip() or 0)
    except ValueError:
        status = 0
    return status, h, b, r.returncode


def sse_data(body, sep="\n\n"):
    out = []
    for block in body.split(sep):
        lines = [x for x in block.splitlines() if x.startswith("data: ")]
        if lines:
            d = "\n".join(x[6:] for x in lines)
            try:
                out.append(json.loads(d))
            except ValueError:
                out.append(d)
    return out


def py(c, url, body, *extra, stream=False, ns_ip=None, env=None):
    argv = [sys.executable, PY_CLIENT, "--url", url]
    if body is not None:
        argv += ["--json", body]
    argv += list(extra) + (["--stream"] if stream else [])
    e = {"SSL_CERT_FILE": c.pki["ca_cert"]}
    e.update(env or {})
    if ns_ip:
        argv, path = nsrun.hosts_cmd(argv, ip=ns_ip)
        try:
            r = run(argv, env=e)
        finally:
            os.unlink(path)
    else:
        r = run(argv, env=e)
    return r, jline(r)


def node(c, script, args, ip, env=None):
    e = {"NODE_EXTRA_CA_CERTS": c.pki["ca_cert"]}
    e.update(env or {})
    r = nsrun.run_with_hosts(["node", script] + list(args), ip=ip, capture_output=True,
                             text=True, env=dict(os.environ, **e), timeout=90)
    return r, jline(r)


# ---------------------------------------------------------------------------
def t_pki(c):
    p = c.pki
    check("pki_files_exist", all(os.path.isfile(p[k]) for k in p if k != "dir"),
          "missing files in %s" % p["dir"])
    m = os.stat(p["good_cert"]).st_mtime_ns
    testpki.make_pki(p["dir"])
    check("pki_idempotent", os.stat(p["good_cert"]).st_mtime_ns == m,
          "second make_pki rebuilt good.crt")
    for name, want in (("good", 0), ("wronghost", 0), ("expired", 2), ("selfsigned", 2)):
        r = run(["openssl", "verify", "-CAfile", p["ca_cert"], p[name + "_cert"]])
        got = 0 if r.returncode == 0 else 2
        check("pki_verify_%s" % name, got == want,
              "openssl verify rc=%d: %s" % (r.returncode, (r.stdout + r.stderr).strip()))
    r = run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", p["good_cert"]])
    check("pki_good_sans", all(n in r.stdout for n in testpki.PROVIDER_DNS) and
          "127.0.0.1" in r.stdout, r.stdout.strip())


def t_openai_curl(c):
    ip, f = c.ip, c.main
    url = "https://api.openai.com/v1/chat/completions"
    body = json.dumps({"model": "gpt-4o", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "curl json "},
                                     {"type": "text", "text": "marker-c1 here"}]}]})
    st, h, b, rc = curl(c, url, "-H", "Authorization: Bearer sk-test", "-H",
                        "Content-Type: application/json", "--data-binary", body,
                        resolve_ip=ip)
    j = json.loads(b) if st == 200 else {}
    content = (j.get("choices") or [{}])[0].get("message", {}).get("content")
    check("openai_json_echo", content == "echo: curl json marker-c1 here",
          "status %d rc %d content %r" % (st, rc, content))
    u = j.get("usage", {})
    check("openai_json_usage", u.get("prompt_tokens") == len(body) // 4 and
          u.get("completion_tokens") == 5 and u.get("total_tokens") ==
          len(body) // 4 + 5, "usage %r for body of %d bytes" % (u, len(body)))
    check("openai_json_content_length", "content-length: %d" % len(b.encode()) in h.lower()
          and "transfer-encoding" not in h.lower(), h)
    recs = f.find("marker-c1")
    ok = len(recs) == 1 and recs[0]["sni"] == "api.openai.com" and \
        recs[0]["headers"].get("authorization") == "Bearer sk-test" and \
        recs[0]["body_len"] == len(body) and recs[0]["tls_version"] in ("TLSv1.3", "TLSv1.2")
    check("record_request", ok, "records %r" % recs)

    # SSE.
    body = json.dumps({"model": "gpt-4o", "stream": True,
                       "stream_options": {"include_usage": True},
                       "messages": [{"role": "user", "content": "stream marker-c2 now"}]})
    st, h, b, rc = curl(c, url, "-N", "-H", "Authorization: Bearer sk-test",
                        "--data-binary", body, resolve_ip=ip)
    ev = sse_data(b)
    check("openai_sse_headers", st == 200 and "transfer-encoding: chunked" in h.lower() and
          "text/event-stream" in h.lower(), "status %d headers %r" % (st, h))
    ok = len(ev) >= 4 and ev[-1] == "[DONE]" and \
        ev[0]["choices"][0]["delta"].get("role") == "assistant"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in ev[:-1]
                   if isinstance(e, dict) and e.get("choices"))
    words = [e["choices"][0]["delta"]["content"] for e in ev[1:-1]
             if isinstance(e, dict) and e.get("choices") and
             e["choices"][0]["delta"].get("content")]
    check("openai_sse_sequence", ok and text == "echo: stream marker-c2 now" and
          words == ["echo:", " stream", " marker-c2", " now"], "events %r" % ev)
    usage = [e for e in ev if isinstance(e, dict) and e.get("usage")]
    check("openai_sse_usage", len(usage) == 1 and usage[0]["choices"] == [] and
          usage[0]["usage"]["completion_tokens"] == 4 and
          usage[0]["usage"]["prompt_tokens"] == len(body) // 4, "usage chunks %r" % usage)

    # Auth, errors, controls.
    st, h, b, rc = curl(c, url, "--data-binary", body, resolve_ip=ip)
    check("openai_401_without_key", st == 401 and
          json.loads(b)["error"]["type"] == "invalid_request_error", "%d %s" % (st, b))
    st, h, b, rc = curl(c, "https://api.openai.com/v1/nope", "-H",
                        "Authorization: Bearer k", "--data-binary", "{}", resolve_ip=ip)
    check("openai_404_shape", st == 404 and "Invalid URL" in json.loads(b)["error"]["message"],
          "%d %s" % (st, b))
    st, h, b, rc = curl(c, url, "-H", "Authorization: Bearer k", "--data-binary", "{bad",
                        resolve_ip=ip)
    check("openai_400_bad_json", st == 400 and
          json.loads(b)["error"]["type"] == "invalid_request_error", "%d %s" % (st, b))
    st, h, b, rc = curl(c, url, "-H", "Authorization: Bearer k", "-H", "x-fake-status: 500",
                        "--data-binary", body, resolve_ip=ip)
    check("x_fake_status_500", st == 500 and
          json.loads(b)["error"]["type"] == "server_error", "%d %s" % (st, b))
    st, h, b, rc = curl(c, "https://api.openai.com/v1/models", "-I", resolve_ip=ip)
    check("head_models", st == 401 or st == 200, "HEAD status %d" % st)
    # HEAD then GET on one connection: the GET parses only if HEAD sent no body.
    raw = socket.create_connection((ip, 443), timeout=10)
    ctx = ssl.create_default_context(cafile=c.pki["ca_cert"])
    conn = http.client.HTTPSConnection("api.openai.com", context=ctx, timeout=10)
    conn.sock = ctx.wrap_socket(raw, server_hostname="api.openai.com")
    try:
        conn.request("HEAD", "/v1/models", headers={"Authorization": "Bearer k"})
        r1 = conn.getresponse()
        hb, hlen = r1.read(), r1.getheader("Content-Length")
        conn.request("GET", "/v1/models", headers={"Authorization": "Bearer k"})
        r2 = conn.getresponse()
        gb = json.loads(r2.read())
    finally:
        conn.close()
    check("head_models_no_body", r1.status == 200 and hb == b"" and hlen and int(hlen) > 0
          and r2.status == 200 and gb["object"] == "list",
          "HEAD %d len %r body %r; GET %d" % (r1.status, hlen, hb, r2.status))
    st, h, b, rc = curl(c, "https://api.openai.com/v1/models", "-H",
                        "Authorization: Bearer k", resolve_ip=ip)
    check("get_models", st == 200 and json.loads(b)["object"] == "list", "%d %s" % (st, b))

    # 204 then a normal request on the same connection (keep-alive survives).
    before = {r["seq"] for r in f.records()}
    hfile = os.path.join(c.tmp, "two.h")
    r = run(["curl", "-sS", "--http1.1", "--cacert", c.pki["ca_cert"], "--resolve",
             "api.openai.com:443:%s" % ip, "-H", "Authorization: Bearer k",
             "-H", "x-fake-status: 204", "-D", hfile, "-o", "/dev/null",
             "https://api.openai.com/v1/models", "--next", "--cacert", c.pki["ca_cert"],
             "--resolve", "api.openai.com:443:%s" % ip, "-H", "Authorization: Bearer k",
             "-o", "/dev/null", "-w", "%{http_code}", "https://api.openai.com/v1/models"])
    new = [x for x in f.records() if x["seq"] not in before]
    check("status_204_then_keepalive", r.returncode == 0 and r.stdout.strip() == "200" and
          len(new) == 2 and new[0]["conn_id"] == new[1]["conn_id"] and
          open(hfile).read().startswith("HTTP/1.1 204"),
          "rc %d out %r records %r" % (r.returncode, r.stdout, new))

    # Request with a chunked body (what a proxy may forward).
    st, h, b, rc = curl(c, url, "-H", "Authorization: Bearer k", "-H",
                        "Transfer-Encoding: chunked", "--data-binary",
                        json.dumps({"model": "m", "messages": [
                            {"role": "user", "content": "chunked marker-c3"}]}),
                        resolve_ip=ip)
    recs = f.find("marker-c3")
    check("chunked_request_body", st == 200 and "echo: chunked marker-c3" in b and
          len(recs) == 1 and recs[0]["headers"].get("transfer-encoding") == "chunked",
          "%d %s %r" % (st, b, recs))

    # Slow headers: the request is recorded, no answer ever comes.
    t0 = time.monotonic()
    st, h, b, rc = curl(c, "https://api.openai.com/slow-headers", "--data-binary",
                        "marker-c4", resolve_ip=ip, timeout=1)
    check("slow_headers_times_out", rc == 28 and st == 0 and time.monotonic() - t0 < 8 and
          len(f.find("marker-c4")) == 1, "curl rc %d status %d" % (rc, st))

    # Other OpenAI-style endpoints.
    st, h, b, rc = curl(c, "https://api.openai.com/v1/completions", "-H",
                        "Authorization: Bearer k", "--data-binary",
                        '{"model":"x","prompt":"legacy words"}', resolve_ip=ip)
    check("openai_legacy_completions", st == 200 and
          json.loads(b)["choices"][0]["text"] == "echo: legacy words", "%d %s" % (st, b))
    st, h, b, rc = curl(c, "https://myres.openai.azure.com/openai/deployments/dep1/chat/"
                        "completions?api-version=2024-10-21", "-H", "api-key: k",
                        "--data-binary", '{"messages":[{"role":"user","content":"az"}]}',
                        resolve_ip=ip)
    j = json.loads(b) if st == 200 else {}
    check("azure_chat", st == 200 and j.get("model") == "dep1" and
          j["choices"][0]["message"]["content"] == "echo: az", "%d %s" % (st, b))
    st, h, b, rc = curl(c, "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
                        "anthropic.claude-3-haiku/invoke", "-H", "Authorization: AWS4 x",
                        "--data-binary", '{"anthropic_version":"bedrock-2023-05-31",'
                        '"max_tokens":5,"messages":[{"role":"user","content":"br"}]}',
                        resolve_ip=ip)
    check("bedrock_invoke", st == 200 and json.loads(b)["content"][0]["text"] == "echo: br",
          "%d %s" % (st, b))


def t_anthropic_curl(c):
    ip = c.ip
    url = "https://api.anthropic.com/v1/messages"
    msg = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [
        {"role": "user", "content": "anthropic marker-a1"}]})
    st, h, b, rc = curl(c, url, "-H", "anthropic-version: 2023-06-01", "--data-binary", msg,
                        resolve_ip=ip)
    j = json.loads(b) if b.startswith("{") else {}
    check("anthropic_401_without_key", st == 401 and j.get("type") == "error" and
          j["error"]["type"] == "authentication_error", "%d %s" % (st, b))
    st, h, b, rc = curl(c, url, "-H", "x-api-key: k", "--data-binary", msg, resolve_ip=ip)
    j = json.loads(b) if b.startswith("{") else {}
    check("anthropic_400_without_version", st == 400 and j.get("type") == "error" and
          "anthropic-version" in j["error"]["message"], "%d %s" % (st, b))
    hd = ["-H", "x-api-key: k", "-H", "anthropic-version: 2023-06-01"]
    st, h, b, rc = curl(c, url, *hd, "--data-binary", msg, resolve_ip=ip)
    j = json.loads(b) if st == 200 else {}
    check("anthropic_json", j.get("type") == "message" and
          j["content"] == [{"type": "text", "text": "echo: anthropic marker-a1"}] and
          j["usage"]["input_tokens"] == len(msg) // 4 and j["usage"]["output_tokens"] == 3,
          "%d %s" % (st, b))
    st, h, b, rc = curl(c, "https://api.anthropic.com/v1/nope", *hd, "--data-binary", "{}",
                        resolve_ip=ip)
    check("anthropic_404_shape", st == 404 and
          json.loads(b)["error"]["type"] == "not_found_error", "%d %s" % (st, b))
    st, h, b, rc = curl(c, url, *hd, "--data-binary", "{bad", resolve_ip=ip)
    check("anthropic_400_bad_json", st == 400 and
          json.loads(b)["error"]["type"] == "invalid_request_error", "%d %s" % (st, b))
    smsg = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 64, "stream": True,
                       "messages": [{"role": "user", "content": "streamed marker-a2"}]})
    r, j = py(c, url, smsg, "--header", "x-api-key: k", "--header",
              "anthropic-version: 2023-06-01", stream=True, ns_ip=ip)
    names = [e["event"] for e in (j or {}).get("events", [])]
    want = ["message_start", "content_block_start", "ping", "content_block_delta",
            "content_block_delta", "content_block_delta", "content_block_stop",
            "message_delta", "message_stop"]
    check("anthropic_sse_sequence", names == want and j.get("complete") is True,
          "events %r stderr %s" % (names, r.stderr.strip()))
    if names == want:
        ev = j["events"]
        text = "".join(e["data"]["delta"]["text"] for e in ev
                       if e["event"] == "content_block_delta")
        check("anthropic_sse_usage", text == "echo: streamed marker-a2" and
              ev[0]["data"]["message"]["usage"]["input_tokens"] == len(smsg) // 4 and
              ev[7]["data"]["usage"]["output_tokens"] == 3, "events %r" % ev)


def t_gemini(c):
    ip = c.ip
    base = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:"
    body = json.dumps({"contents": [{"role": "user", "parts": [{"text": "gem marker-g1"}]}]})
    r, j = py(c, base + "generateContent", body, "--header", "x-goog-api-key: k", ns_ip=ip)
    ok = j and j.get("status") == 200 and \
        j["body"]["candidates"][0]["content"]["parts"][0]["text"] == "echo: gem marker-g1" \
        and j["body"]["usageMetadata"]["candidatesTokenCount"] == 3
    check("gemini_json", ok, "%r %s" % (j, r.stderr))
    r, j = py(c, base + "streamGenerateContent?alt=sse", body, "--header",
              "x-goog-api-key: k", stream=True, ns_ip=ip)
    ev = (j or {}).get("events", [])
    text = "".join(e["data"]["candidates"][0]["content"]["parts"][0]["text"] for e in ev)
    check("gemini_sse", len(ev) == 3 and text == "echo: gem marker-g1" and
          ev[-1]["data"]["candidates"][0].get("finishReason") == "STOP" and
          ev[-1]["data"]["usageMetadata"]["candidatesTokenCount"] == 3,
          "events %r" % ev)
    st, h, b, rc = curl(c, base + "streamGenerateContent?alt=sse", "-N", "-H",
                        "x-goog-api-key: k", "--data-binary", body, resolve_ip=ip)
    check("gemini_sse_crlf", st == 200 and b.count("\r\n\r\n") == 3, repr(b[:200]))
    r, j = py(c, base + "streamGenerateContent", body, "--header", "x-goog-api-key: k",
              ns_ip=ip)
    check("gemini_json_array_stream", j and isinstance(j.get("body"), list) and
          len(j["body"]) == 3, "%r" % j)
    r, j = py(c, base + "generateContent", body, ns_ip=ip)
    check("gemini_403_without_key", j and j["status"] == 403 and
          j["body"]["error"]["status"] == "PERMISSION_DENIED", "%r" % j)
    r, j = py(c, base + "generateContent", "{bad", "--header", "x-goog-api-key: k", ns_ip=ip)
    check("gemini_400_bad_json", j and j["status"] == 400 and
          j["body"]["error"]["status"] == "INVALID_ARGUMENT", "%r" % j)
    r, j = py(c, "https://generativelanguage.googleapis.com/v1beta/nope", body, "--header",
              "x-goog-api-key: k", ns_ip=ip)
    check("gemini_404_shape", j and j["status"] == 404 and
          j["body"]["error"]["status"] == "NOT_FOUND", "%r" % j)


def t_py_client(c):
    ip, f = c.ip, c.main
    url = "https://api.openai.com/v1/chat/completions"
    hdr = ["--header", "Authorization: Bearer sk-py"]
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "py marker-p1"}]})
    r, j = py(c, url, body, *hdr, ns_ip=ip)
    check("py_json", j and j["status"] == 200 and
          j["body"]["choices"][0]["message"]["content"] == "echo: py marker-p1",
          "%r %s" % (j, r.stderr))
    r, j = py(c, url, body, *hdr, ns_ip=ip, env={"SSL_CERT_FILE": c.pki["good_cert"]})
    check("py_untrusted_fails", r.returncode == 1 and j and j.get("reason") == "tls-verify",
          "rc %d %r" % (r.returncode, j))
    # 5 MB body: accepted, echo truncated to 200 chars, recorded whole.
    big = "marker-p2 " + ("x" * 99 + " ") * 52000
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": big}]})
    bf = os.path.join(c.tmp, "big.json")
    with open(bf, "w") as fh:
        fh.write(body)
    argv, path = nsrun.hosts_cmd([sys.executable, PY_CLIENT, "--url", url, "--data-file", bf]
                                 + hdr, ip=ip)
    try:
        r = run(argv, env={"SSL_CERT_FILE": c.pki["ca_cert"]})
    finally:
        os.unlink(path)
    j = jline(r)
    recs = f.find("marker-p2")
    check("big_body_5mb", j and j["status"] == 200 and
          j["body"]["choices"][0]["message"]["content"] == "echo: " + big[:200] and
          len(recs) == 1 and recs[0]["body_len"] == len(body) and len(body) > 5000000,
          "status %r, %d records, stderr %s" % (j and j.get("status"), len(recs), r.stderr))
    # Abort mid-stream and N-char split.
    sb = json.dumps({"model": "m", "stream": True,
                     "messages": [{"role": "user", "content": "a b c d e"}]})
    r, j = py(c, url, sb, *hdr, "--header", "x-fake-abort-after: 3", stream=True, ns_ip=ip)
    check("abort_after_cuts_stream", j and len(j["events"]) == 3 and j["complete"] is False,
          "%r" % j)
    r, j = py(c, url, sb, *hdr, "--header", "x-fake-split: 3", stream=True, ns_ip=ip)
    pieces = [e["data"]["choices"][0]["delta"].get("content") for e in (j or {}).get(
        "events", [])[1:-2] if isinstance(e["data"], dict)]
    check("split_pieces", j and pieces == ["ech", "o: ", "a b", " c ", "d e"] and
          j["complete"] is True, "%r" % pieces)


def t_plain_and_delay(c):
    f = c.plain
    url = "http://127.0.0.1:%d/v1/chat/completions" % f.port()
    sb = json.dumps({"model": "m", "stream": True, "stream_options": {"include_usage": True},
                     "messages": [{"role": "user", "content": "one two three four"}]})
    r, j = py(c, url, sb, "--header", "Authorization: Bearer k", stream=True)
    ev = (j or {}).get("events", [])
    check("plain_http", j and j["status"] == 200 and f.records() and
          f.records()[-1]["tls_version"] is None and f.records()[-1]["sni"] is None,
          "%r" % j)
    # 9 events with 150 ms between them: a buffered stream would arrive at once.
    spread = ev[-1]["t_ms"] - ev[0]["t_ms"] if len(ev) >= 2 else 0
    check("event_delay_streams", len(ev) == 9 and spread >= 0.6 * 8 * 150,
          "%d events over %.0f ms" % (len(ev), spread))
    r, j = py(c, url, sb, "--header", "Authorization: Bearer k", "--header",
              "x-fake-delay-ms: 0", stream=True)
    ev = (j or {}).get("events", [])
    spread = ev[-1]["t_ms"] - ev[0]["t_ms"] if len(ev) >= 2 else 1e9
    check("per_request_delay_override", len(ev) == 9 and spread < 8 * 150,
          "%d events over %.0f ms" % (len(ev), spread))


def t_ipv6_and_sni(c):
    f = c.main
    p6 = f.port(1)
    st, h, b, rc = curl(c, "https://api.openai.com:%d/v1/models" % p6, "-H",
                        "Authorization: Bearer k", resolve_ip="[::1]")
    recs = f.records()
    check("ipv6_listener", st == 200 and recs and recs[-1]["listen"] == "[::1]:%d" % p6,
          "status %d rc %d last record %r" % (st, rc, recs[-1:] if recs else None))
    # The SNI log holds the client's own ClientHello: its random matches the
    # one curl writes to its key log.
    keylog = os.path.join(c.tmp, "keylog.txt")
    r = run(["curl", "-sS", "--http1.1", "--cacert", c.pki["ca_cert"], "--resolve",
             "api.mistral.ai:443:%s" % c.ip, "-o", "/dev/null", "-H",
             "Authorization: Bearer k", "https://api.mistral.ai/v1/models"],
            env={"SSLKEYLOGFILE": keylog})
    randoms = set()
    if os.path.exists(keylog):
        for line in open(keylog):
            parts = line.split()
            if len(parts) == 3:
                randoms.add(parts[1].lower())
    logged = [s for s in f.snis() if s["sni"] == "api.mistral.ai"]
    check("sni_log_client_random", r.returncode == 0 and len(logged) == 1 and
          logged[0]["client_random"] in randoms,
          "rc %d logged %r keylog randoms %r" % (r.returncode, logged, randoms))
    r = run(["curl", "-sS", "-k", "--http1.1", "-o", "/dev/null",
             "https://%s/v1/models" % c.ip])
    check("sni_log_no_sni", any(s["sni"] is None for s in f.snis()),
          "no null-SNI entry in %r" % f.snis()[-3:])


def t_bad_certs(c):
    cases = (("expired", c.ip_expired, "CERT_HAS_EXPIRED", "certificate has expired"),
             ("wronghost", c.ip_wrong, "ERR_TLS_CERT_ALTNAME_INVALID", "Hostname mismatch"),
             ("selfsigned", c.ip_self, "DEPTH_ZERO_SELF_SIGNED_CERT", "self-signed"))
    for name, ip, node_code, py_msg in cases:
        st, h, b, rc = curl(c, "https://api.openai.com/v1/models", resolve_ip=ip)
        check("curl_rejects_%s" % name, rc == 60, "curl rc %d status %d" % (rc, st))
        r, j = py(c, "https://api.openai.com/v1/models", None, ns_ip=ip)
        check("py_rejects_%s" % name, r.returncode == 1 and j and
              j.get("reason") == "tls-verify" and py_msg in j.get("error", ""),
              "rc %d %r" % (r.returncode, j))
        r, j = node(c, OPENAI_JS, ["--message", "x"], ip)
        check("node_rejects_%s" % name, r.returncode == 1 and j and
              j["error"]["code"] == node_code, "rc %d %r %s" % (r.returncode, j,
                                                               r.stderr.strip()[-300:]))


def t_node(c):
    ip, f = c.ip, c.main
    r, j = node(c, OPENAI_JS, ["--message", "node marker-n1 says hi"], ip)
    check("node_openai_json", r.returncode == 0 and j and
          j["content"] == "echo: node marker-n1 says hi" and
          j["usage"]["completion_tokens"] == 5 and
          j["usage"]["prompt_tokens"] == f.find("marker-n1")[0]["body_len"] // 4,
          "rc %d %r %s" % (r.returncode, j, r.stderr.strip()[-300:]))
    recs = f.find("marker-n1")
    check("node_openai_default_host", recs and recs[0]["sni"] == "api.openai.com" and
          recs[0]["headers"]["host"] == "api.openai.com" and
          recs[0]["headers"]["authorization"] == "Bearer sk-test", "%r" % recs)
    r, j = node(c, OPENAI_JS, ["--message", "node marker-n2 streams", "--stream"], ip)
    check("node_openai_stream", r.returncode == 0 and j and
          j["content"] == "echo: node marker-n2 streams" and j["usage"] and
          j["usage"]["completion_tokens"] == 4 and j["chunks"] == 7,
          "rc %d %r %s" % (r.returncode, j, r.stderr.strip()[-300:]))
    recs = f.find("marker-n2")
    check("node_openai_stream_request", recs and json.loads(recs[0]["body"]).get(
        "stream_options") == {"include_usage": True}, "%r" % recs)
    r, j = node(c, OPENAI_JS, ["--message", "node marker-n3", "--count", "3"], ip)
    conns = {x["conn_id"] for x in f.find("marker-n3")}
    check("node_openai_keepalive", r.returncode == 0 and j and j["calls"] == 3 and
          len(f.find("marker-n3")) == 3 and len(conns) == 1,
          "rc %d, %d requests on connections %r" % (r.returncode,
                                                    len(f.find("marker-n3")), conns))
    r, j = node(c, OPENAI_JS, ["--message", "node marker-n4", "--api", "responses",
                               "--stream"], ip)
    check("node_openai_responses_stream", r.returncode == 0 and j and
          j["content"] == "echo: node marker-n4" and j["usage"]["output_tokens"] == 3,
          "rc %d %r %s" % (r.returncode, j, r.stderr.strip()[-300:]))
    r, j = node(c, OPENAI_JS, ["--message", "node marker-n5", "--api", "responses"], ip)
    check("node_openai_responses_json", r.returncode == 0 and j and
          j["content"] == "echo: node marker-n5", "rc %d %r" % (r.returncode, j))
    r, j = node(c, OPENAI_JS, ["--message", "node marker-n6", "--header",
                               "x-fake-status: 500"], ip)
    check("node_openai_500_no_retry", r.returncode == 1 and j and
          j["error"]["status"] == 500 and len(f.find("marker-n6")) == 1,
          "rc %d %r, %d requests" % (r.returncode, j, len(f.find("marker-n6"))))
    r, j = node(c, OPENAI_JS, ["--message", "x"], ip, env={"NODE_EXTRA_CA_CERTS": ""})
    check("node_needs_extra_ca", r.returncode == 1 and j and
          j["error"]["code"] == "UNABLE_TO_VERIFY_LEAF_SIGNATURE", "%r" % j)

    r, j = node(c, ANTHROPIC_JS, ["--message", "claude marker-n7 json"], ip)
    recs = f.find("marker-n7")
    check("node_anthropic_json", r.returncode == 0 and j and
          j["content"] == "echo: claude marker-n7 json" and
          j["usage"]["output_tokens"] == 4 and
          j["usage"]["input_tokens"] == recs[0]["body_len"] // 4,
          "rc %d %r %s" % (r.returncode, j, r.stderr.strip()[-300:]))
    check("node_anthropic_headers", recs and recs[0]["sni"] == "api.anthropic.com" and
          recs[0]["headers"].get("anthropic-version") and
          (recs[0]["headers"].get("x-api-key") == "sk-ant-test" or
           recs[0]["headers"].get("authorization") == "Bearer sk-ant-test"),
          "%r" % (recs[0]["headers"] if recs else None))
    r, j = node(c, ANTHROPIC_JS, ["--message", "claude marker-n8 streams", "--stream",
                                  "--count", "2"], ip)
    conns = {x["conn_id"] for x in f.find("marker-n8")}
    check("node_anthropic_stream", r.returncode == 0 and j and
          j["content"] == "echo: claude marker-n8 streams" and
          j["usage"]["output_tokens"] == 4 and j["usage"]["input_tokens"] > 0 and
          j["calls"] == 2 and len(conns) == 1,
          "rc %d %r conns %r %s" % (r.returncode, j, conns, r.stderr.strip()[-300:]))
    r, j = node(c, ANTHROPIC_JS, ["--message", "claude marker-n9", "--header",
                                  "x-fake-status: 529"], ip)
    check("node_anthropic_529", r.returncode == 1 and j and j["error"]["status"] == 529 and
          j["error"]["type"] == "overloaded_error", "rc %d %r" % (r.returncode, j))


def t_hosts_untouched(c):
    with open("/etc/hosts") as fh:
        now = fh.read()
    check("etc_hosts_untouched", now == c.hosts_before, "the machine's /etc/hosts changed")
    r = nsrun.run_with_hosts(["getent", "hosts", "api.openai.com"], ip=c.ip,
                             capture_output=True, text=True)
    check("nsrun_resolves", r.stdout.split()[:1] == [c.ip], repr(r.stdout))


def main():
    for tool in ("openssl", "curl", "node", "npm", "unshare"):
        if not shutil.which(tool):
            check("prerequisite_%s" % tool, False, "%s not on PATH" % tool)
            return 1
    r = run(["bash", os.path.join(CLIENTS, "install.sh")], timeout=600)
    if not check("clients_installed", r.returncode == 0, r.stderr.strip()[-500:]):
        return 1
    c = Ctx()
    c.tmp = tempfile.mkdtemp(prefix="vigil-fakes-")
    with open("/etc/hosts") as fh:
        c.hosts_before = fh.read()
    fakes = []
    try:
        c.pki = p = testpki.make_pki(os.path.join(c.tmp, "pki"))
        c.ip = free_loopback_ip()
        c.main = Fake(c.tmp, "main", ["%s:443" % c.ip, "[::1]:0"], p["good_cert"],
                      p["good_key"])
        fakes.append(c.main)
        c.plain = Fake(c.tmp, "plain", ["127.0.0.1:0"], plain=True,
                       extra=["--event-delay-ms", "150"])
        fakes.append(c.plain)
        for name in ("expired", "wronghost", "selfsigned"):
            ip = free_loopback_ip()
            fakes.append(Fake(c.tmp, name, ["%s:443" % ip], p[name + "_cert"],
                              p[name + "_key"]))
            setattr(c, {"expired": "ip_expired", "wronghost": "ip_wrong",
                        "selfsigned": "ip_self"}[name], ip)
        for t in (t_pki, t_openai_curl, t_anthropic_curl, t_gemini, t_py_client,
                  t_plain_and_delay, t_ipv6_and_sni, t_bad_certs, t_node, t_hosts_untouched):
            try:
                t(c)
            except Exception as e:  # a broken check is a failure, never a crash
                check(t.__name__, False, "%s: %s" % (type(e).__name__, e))
        for fk in fakes:
            check("fake_alive_%s" % os.path.basename(fk.record).split(".")[0],
                  fk.proc.poll() is None, "exited with %r" % fk.proc.returncode)
    finally:
        for fk in fakes:
            fk.stop()
        if failed == 0:
            shutil.rmtree(c.tmp, ignore_errors=True)
        else:
            print("   (fixture logs kept in %s)" % c.tmp)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
