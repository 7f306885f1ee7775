"""End-to-end: HTTP/2 clients through the real BPF redirect.

curl --http2 and nghttp (h2 only) negotiate h2 with the agent; every
stream is inspected, redacted, restored and audited like an HTTP/1.1
request; a secret is refused with a 403 in the provider's shape on its
stream; SSE arrives incrementally. Then the attacker: rapid reset,
CONTINUATION flood, an oversized header list, many streams, a secret split
across DATA frames. The agent survives each and other clients keep working.
"""
import base64
import json
import os
import re
import signal
import subprocess
import time

import lib
from lib import check, test
import rig as rigmod

GOOD = "127.83.0.2"
POLICY = """version: 1
default: allow
redaction:
  EMAIL: tokenize
rules:
  - name: no-secrets
    when: { finding: ['@all_secrets'] }
    action: block
  - name: pii
    when: { finding: [EMAIL] }
    action: redact
"""
RIG = rigmod.Rig("http2", {"api.openai.com": GOOD}, {"good": (GOOD, "good", 0)},
                 agent_extra="http2:\n  max_concurrent_streams: 16\n  max_resets_per_second: 50\n"
                             "  max_continuations: 8\n  max_header_list_bytes: 16k\n"
                             "limits:\n  max_buffered_bytes: 1M\n")
with open(os.path.join(RIG.tmp, "policy.yaml"), "w") as f:
    f.write(POLICY)
with open(RIG.agent.config, "a") as f:
    f.write("policy: %s\n" % os.path.join(RIG.tmp, "policy.yaml"))
RIG.agent.start(timeout=120 if lib.SAN else 30)   # a loaded 2-core machine, ASan: slow start
URL = "https://api.openai.com/v1/chat/completions"
AWS_KEY = "AKIA" + "Z7QW3RT5YU2IO4PL"   # split so this file itself is not a credential finding
HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "h2_client.py")


def chat(text, stream=False):
    return json.dumps({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": text}]})


def h2_request(body, extra=()):
    argv = ["curl", "-sS", "--http2", "--max-time", "20", "--cacert", RIG.ca, "-o", "-",
            "-w", "\n%{http_code} %{http_version}", "-H", "Authorization: Bearer sk-test",
            "-H", "Content-Type: application/json", "--data-binary", body] + list(extra) + [URL]
    p = lib.run(argv, cgroup=RIG.cg.path, uid=lib.NOBODY, hosts=RIG.hosts, timeout=40)
    out, _, tail = p.stdout.rpartition("\n")
    code, _, ver = tail.partition(" ")
    return int(code or 0), out, ver, p


def attacker(*args, timeout=60):
    p = lib.run(["/usr/bin/python3", HELPER, "--ca", RIG.ca] + list(args), cgroup=RIG.cg.path, hosts=RIG.hosts,
                timeout=timeout)
    check(p.stdout.strip(), "h2_client printed nothing: %s" % p.stderr[-600:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def still_works(tag):
    """The agent is alive and serves another connection normally."""
    check(RIG.agent.proc.poll() is None, "the agent died after %s: %s" % (tag, RIG.agent.log_tail()))
    code, out, ver, p = h2_request(chat("after %s" % tag))
    check(code == 200 and ver == "2", "a normal h2 request after %s failed: %s %s %s" % (tag, code, ver, p.stderr))


@test
def curl_http2_negotiates_h2_and_email_is_tokenized_and_restored():
    email = "jane.doe@example.com"
    code, out, ver, p = h2_request(chat("mail the report to %s today" % email))
    check(code == 200, "status %s %s" % (code, p.stderr))
    check(ver == "2", "curl did not negotiate HTTP/2 with the agent: http_version %r" % ver)
    got = RIG.received()[-1]
    check(email not in got["body"] and "[[VGL_EMAIL_" in got["body"],
          "the provider did not get a token instead of the address: %r" % got["body"][:300])
    content = json.loads(out)["choices"][0]["message"]["content"]
    check(content == "echo: mail the report to %s today" % email, "the answer was not restored: %r" % content)
    evs = RIG.request_events(lambda e: e["action"] == "redact")
    check(evs and evs[-1]["findings"] == [{"type": "EMAIL", "count": 1}] and evs[-1]["path"] == "/v1/chat/completions",
          "the h2 stream was not audited as a redacted request: %s" % evs[-1:])


@test
def secret_is_blocked_with_an_http2_403_in_provider_shape():
    before = len(RIG.received())
    code, out, ver, p = h2_request(chat("deploy with key %s now" % AWS_KEY))
    check(code == 403 and ver == "2", "expected an HTTP/2 403, got %s %s" % (code, ver))
    err = json.loads(out).get("error") or {}
    check("no-secrets" in err.get("message", ""), "403 body not in OpenAI's error shape naming the rule: %s" % out)
    check(len(RIG.received()) == before, "the blocked request reached the provider")
    # the connection is not torn down: a second request on the same h2
    # connection (curl reuses it for two URLs) is served
    argv = ["curl", "-sS", "--http2", "--cacert", RIG.ca, "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
            "-H", "Authorization: Bearer sk-test", "-H", "Content-Type: application/json",
            "--data-binary", chat("key %s" % AWS_KEY), URL, "--next", "--http2", "--cacert", RIG.ca, "-o", "/dev/null",
            "-w", "%{http_code} %{num_connects}\n", "-H", "Authorization: Bearer sk-test",
            "-H", "Content-Type: application/json", "--data-binary", chat("plain"), URL]
    p = lib.run(argv, cgroup=RIG.cg.path, uid=lib.NOBODY, hosts=RIG.hosts, timeout=40)
    lines = p.stdout.split()
    check(lines[:4] == ["403", "1", "200", "0"],
          "block then allow on one h2 connection: %s (%s)" % (lines, p.stderr[-300:]))


@test
def nghttp_h2_only_client_works():
    body = os.path.join(RIG.tmp, "nghttp-body.json")
    with open(body, "w") as f:
        f.write(chat("hello from nghttp, mail ann@example.com"))
    p = lib.run(["nghttp", "-d", body, "-H", "content-type: application/json",
                 "-H", "authorization: Bearer sk-test", URL], cgroup=RIG.cg.path, uid=lib.NOBODY,
                hosts=RIG.hosts, timeout=40)
    check(p.returncode == 0, "nghttp failed: %s %s" % (p.stdout[-300:], p.stderr[-300:]))
    content = json.loads(p.stdout)["choices"][0]["message"]["content"]
    check(content == "echo: hello from nghttp, mail ann@example.com", "nghttp answer %r" % content)
    check("ann@example.com" not in RIG.received()[-1]["body"], "the address reached the provider over nghttp")


@test
def sse_over_h2_arrives_incrementally():
    argv = ["curl", "-sS", "-N", "--http2", "--max-time", "30", "--cacert", RIG.ca,
            "-H", "Authorization: Bearer sk-test", "-H", "Content-Type: application/json",
            "-H", "x-fake-delay-ms: 400", "--data-binary", chat("one two three four five", stream=True), URL]
    p = lib.spawn(argv, cgroup=RIG.cg.path, uid=lib.NOBODY, hosts=RIG.hosts, stdout=subprocess.PIPE, text=True)
    t0 = time.time()
    stamps = []
    for line in p.stdout:
        if line.startswith("data: {"):
            stamps.append(time.time() - t0)
    p.wait(30)
    check(len(stamps) >= 5, "too few SSE events over h2: %d" % len(stamps))
    check(stamps[-1] - stamps[0] > 1.2, "SSE events arrived together (buffered): %s" % stamps)


@test
def rapid_reset_flood_gets_goaway_and_is_audited():
    res = attacker("reset", "400")
    check(res["alpn"] == "h2", "no h2: %s" % res)
    check(res["goaway"] == 0xb, "no GOAWAY ENHANCE_YOUR_CALM after a reset flood: %s" % {k: res[k] for k in ("goaway", "closed")})
    evs = RIG.agent.wait_events(lambda e: e.get("reason") == "h2_abuse" and "rapid reset" in e.get("error", ""),
                                kind="connection")
    check(evs, "the rapid reset was not audited")
    check(len(RIG.received()) < 50, "cancelled streams reached the provider")
    still_works("a rapid reset flood")


@test
def continuation_flood_gets_goaway_and_is_audited():
    res = attacker("continuation", "200")
    check(res["goaway"] == 0xb, "no GOAWAY ENHANCE_YOUR_CALM after a CONTINUATION flood: %s" % res)
    evs = RIG.agent.wait_events(lambda e: e.get("reason") == "h2_abuse" and "CONTINUATION" in e.get("error", ""),
                                kind="connection")
    check(evs, "the CONTINUATION flood was not audited")
    still_works("a CONTINUATION flood")


@test
def oversized_header_list_gets_431_on_its_stream_only():
    res = attacker("bigheader", "40000")
    s1, s3 = res["streams"].get("1", {}), res["streams"].get("3", {})
    check(s1.get("status") == 431 and "error" in json.loads(s1.get("body") or "{}"),
          "an oversized header list did not get a 431 in provider shape: %s" % s1)
    check(s3.get("status") == 200 and res["goaway"] is None,
          "the next stream on the same connection was not served: %s goaway %s" % (s3, res["goaway"]))
    evs = RIG.agent.wait_events(lambda e: e.get("status") == 431)
    check(evs and evs[-1]["method"] == "GET" and evs[-1]["path"] == "/v1/models" and evs[-1]["action"] == "block",
          "the refused stream's event does not name its method and path: %s" % evs[-1:])
    still_works("an oversized header list")


@test
def many_streams_are_served_or_refused_never_crash():
    res = attacker("many", "60")
    st = res["streams"]
    ok = [s for s in st.values() if s["status"] == 200 and s["end"]]
    refused = [s for s in st.values() if s["rst"] == 7]
    check(len(ok) >= 16, "fewer streams served than max_concurrent_streams: %d" % len(ok))
    check(len(ok) + len(refused) == 60, "streams neither served nor refused: %d ok, %d refused, %s" %
          (len(ok), len(refused), [s for s in st.values() if s not in ok and s not in refused][:3]))
    still_works("60 streams at once")


@test
def secret_split_across_data_frames_is_blocked():
    body = chat("ship it with %s please" % AWS_KEY).encode()
    cut = body.index(AWS_KEY.encode()) + 7
    before = len(RIG.received())
    res = attacker("split", base64.b64encode(body).decode(), str(cut))
    s1 = res["streams"].get("1", {})
    check(s1.get("status") == 403 and "no-secrets" in s1.get("body", ""),
          "a key split across DATA frames was not blocked: %s" % s1)
    check(len(RIG.received()) == before, "the split secret reached the provider")


@test
def connect_tunnels_over_h2_are_refused_and_audited():
    # A CONNECT stream would make the agent a byte tunnel to the provider,
    # and an extended CONNECT (RFC 8441, never offered: no
    # SETTINGS_ENABLE_CONNECT_PROTOCOL) a WebSocket it never parsed. Both
    # carry a key here; neither may reach the provider, and the connection
    # goes on serving.
    before = len(RIG.received())
    res = attacker("connect", base64.b64encode(chat("key %s" % AWS_KEY).encode()).decode())
    s1, s3, s5 = (res["streams"].get(k, {}) for k in ("1", "3", "5"))
    check(s1.get("status") == 405 and "CONNECT" in s1.get("body", ""),
          "a CONNECT stream did not get a 405 in provider shape: %s" % s1)
    check(s3.get("status") is None and s3.get("rst") == 1,
          "an extended CONNECT was not reset with PROTOCOL_ERROR: %s" % s3)
    check(s5.get("status") == 200 and res["goaway"] is None,
          "the connection did not go on after the refusals: %s goaway %s" % (s5, res["goaway"]))
    check(len(RIG.received()) == before + 1 and AWS_KEY not in RIG.received()[-1]["body"],
          "a tunnelled byte reached the provider: %s" % RIG.received()[before:])
    # both audited: the extended one too, though nghttp2 reset it itself
    deadline = time.time() + 10
    while True:
        evs = RIG.agent.wait_events(lambda e: e.get("method") == "CONNECT")
        if len(evs) >= 2 or time.time() > deadline:
            break
        time.sleep(0.1)
    check(len(evs) == 2 and all(e["action"] == "block" and e["reason"] == "tunnel_refused" and
                                e["status"] == 405 and "CONNECT is refused" in e.get("error", "") for e in evs),
          "the CONNECT streams were not both audited as refused tunnels: %s" % evs)
    still_works("CONNECT streams")


@test
def h2c_prior_knowledge_on_port_80_is_refused_and_audited():
    # Cleartext HTTP/2 (no TLS, no Upgrade: the client starts with the
    # preface) to a provider's address: plain HTTP is refused, whatever
    # its version, before a byte of the request reaches anyone.
    before = len(RIG.received())
    argv = ["curl", "-sS", "--http2-prior-knowledge", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
            "-H", "Content-Type: application/json", "--data-binary", chat("key %s" % AWS_KEY),
            "http://api.openai.com/v1/chat/completions"]
    p = lib.run(argv, cgroup=RIG.cg.path, uid=lib.NOBODY, hosts=RIG.hosts, timeout=30)
    check(p.returncode != 0 and p.stdout.strip() in ("", "000"),
          "h2c was answered: rc %s %r %s" % (p.returncode, p.stdout, p.stderr[-200:]))
    evs = RIG.agent.wait_events(lambda e: e.get("reason") == "plain_http" and e.get("dst_port") == 80 and
                                e.get("exe") == "/usr/bin/curl", kind="connection")
    check(evs and evs[-1]["action"] == "block" and evs[-1]["user"] == "nobody",
          "the h2c attempt was not audited as refused plain HTTP: %s" % evs[-1:])
    check(len(RIG.received()) == before, "an h2c request reached the provider")


@test
def body_past_the_buffer_budget_gets_a_503_on_its_stream():
    """limits.max_buffered_bytes binds h2 streams as it binds HTTP/1.1."""
    path = os.path.join(RIG.tmp, "big.json")
    with open(path, "w") as f:
        f.write(chat("x" * (1300 * 1024)))
    before = len(RIG.received())
    code, out, ver, p = h2_request("@" + path)
    check(code == 503 and ver == "2", "a body past the budget: %s %s %s" % (code, ver, p.stderr[-300:]))
    check("error" in json.loads(out), "503 not in provider shape: %s" % out[:300])
    check(len(RIG.received()) == before, "the refused body reached the provider")
    evs = RIG.request_events(lambda e: e.get("reason") == "overloaded" and e.get("status") == 503)
    check(evs, "the 503 was not audited")
    still_works("a body past the buffer budget")


@test
def openai_node_sdk_over_http1_still_works():
    res, p = RIG.node("openai_chat.mjs", "--message", "write to carl@example.com soon")
    check("error" not in res, "SDK call failed: %s" % res)
    check(res["content"] == "echo: write to carl@example.com soon", "answer %r" % res["content"])
    check("carl@example.com" not in RIG.received()[-1]["body"], "the SDK's address reached the provider")


def reload_with(http2_enabled):
    with open(RIG.agent.config) as f:
        text = f.read()
    text = re.sub(r"(?m)^  enabled: \w+\n", "", text).replace("http2:\n", "http2:\n  enabled: %s\n" % http2_enabled)
    with open(RIG.agent.config, "w") as f:
        f.write(text)
    n = RIG.agent.log_tail(10000).count("configuration reloaded")
    RIG.agent.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while RIG.agent.log_tail(10000).count("configuration reloaded") == n and time.time() < deadline:
        time.sleep(0.05)
    check(time.time() < deadline, "no reload after SIGHUP: %s" % RIG.agent.log_tail())


@test
def http2_off_on_reload_gives_http11_then_h2_again():
    reload_with("off")
    code, out, ver, p = h2_request(chat("after http2 off"))
    check(code == 200 and ver == "1.1", "with http2.enabled off curl got %s over %s" % (code, ver))
    reload_with("on")
    code, out, ver, p = h2_request(chat("after http2 on"))
    check(code == 200 and ver == "2", "with http2.enabled on again curl got %s over %s" % (code, ver))


@test
def agent_stops_cleanly_without_a_sanitizer_report():
    """Last: every attack above ran in this agent (run with SAN=1 too)."""
    status = RIG.agent.stop()
    check(status == 0, "agent exit status %s on SIGTERM" % status)
    with open(RIG.agent.stderr_path) as f:
        log = f.read()
    for sign in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer"):
        check(sign not in log, "sanitizer report in the agent's stderr: %s" % log[log.find(sign):][:800])


if __name__ == "__main__":
    lib.main()
