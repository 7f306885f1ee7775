"""End-to-end: TLS interception through the real BPF redirect.

Real clients (curl, Python urllib, the official openai and @anthropic-ai/sdk
Node packages) in a scratch cgroup call api.openai.com / api.anthropic.com,
which their private /etc/hosts maps to a fake provider on loopback. The
agent must decrypt with the interception CA, forward to the fake provider
(verified against the test "public web" CA), stream answers back, and audit
each exchange; anything it must not decrypt passes through untouched, and a
bad upstream certificate is refused and audited.
"""
import json
import os
import shutil
import subprocess
import time

import lib
from lib import check, test

import rig as rigmod

PY = rigmod.PY
GOOD, EXPIRED, WRONGHOST = "127.0.20.2", "127.0.20.4", "127.0.20.5"
RIG = rigmod.Rig("intercept", {
    "api.openai.com": GOOD,
    "api.anthropic.com": GOOD,
    "notwatched.example": GOOD,
    "api.mistral.ai": EXPIRED,
    "generativelanguage.googleapis.com": WRONGHOST,
}, {"good": (GOOD, "good", 100), "expired": (EXPIRED, "expired", 0), "wronghost": (WRONGHOST, "wronghost", 0)},
    endpoints=["api.openai.com", "api.anthropic.com", "api.mistral.ai", "generativelanguage.googleapis.com"],
    # notwatched.example shares the provider's address: this file checks
    # that such a name is relayed undecrypted, which is unwatched_sni:
    # passthrough (the default intercepts it, see test_coverage.py).
    agent_extra="unwatched_sni: passthrough\nlimits:\n  header_timeout: 2s\n  idle_timeout: 20s\n")
AGENT, CA, CG, TMP, HOSTS, CLIENTS = RIG.agent, RIG.ca, RIG.cg, RIG.tmp, RIG.hosts, rigmod.CLIENTS
REC, SNI_LOG = RIG.records["good"], RIG.sni_logs["good"]
records = RIG.read_jsonl
curl, node, request_events = RIG.curl, RIG.node, RIG.request_events
AGENT.start()

CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]})


@test
def curl_chat_completion_through_interception():
    code, body, p = curl("https://api.openai.com/v1/chat/completions", CHAT)
    check(code == 200, "status %s, stderr %s, body %s" % (code, p.stderr, body[:300]))
    answer = json.loads(body)
    check(answer["choices"][0]["message"]["content"] == "echo: hello there", "answer %s" % body[:300])
    got = [r for r in records(REC) if r["path"] == "/v1/chat/completions"]
    check(got and json.loads(got[-1]["body"]) == json.loads(CHAT), "provider did not receive the request intact")
    check(got[-1]["sni"] == "api.openai.com", "upstream SNI %s" % got[-1].get("sni"))
    evs = request_events(lambda e: e["path"] == "/v1/chat/completions" and e["uid"] == lib.NOBODY)
    check(evs, "no request event: %s" % AGENT.events()[-3:])
    ev = evs[-1]
    check(ev["provider"] == "openai" and ev["model"] == "gpt-4o-mini", "provider/model %s/%s" % (ev["provider"], ev["model"]))
    check(ev["status"] == 200 and ev["method"] == "POST", "status/method %s/%s" % (ev["status"], ev["method"]))
    check(ev["sni"] == "api.openai.com" and ev["dst_ip"] == GOOD and ev["dst_port"] == 443, "destination %s" % ev)
    check(ev["prompt_tokens"] == answer["usage"]["prompt_tokens"], "prompt_tokens %s vs %s" % (ev["prompt_tokens"], answer["usage"]))
    check(ev["completion_tokens"] == answer["usage"]["completion_tokens"], "completion_tokens %s" % ev["completion_tokens"])
    check(ev["exe"] and ev["exe"].endswith("curl"), "exe %s" % ev["exe"])
    check(ev["bytes_up"] >= len(CHAT) and ev["bytes_down"] >= len(body), "bytes %s/%s" % (ev["bytes_up"], ev["bytes_down"]))


@test
def python_urllib_client():
    script = os.path.join(TMP, "py_client.py")
    shutil.copy(os.path.join(CLIENTS, "py_client.py"), script)
    os.chmod(script, 0o755)
    p = lib.run([PY, script, "--url", "https://api.openai.com/v1/chat/completions", "--json", CHAT,
                 "--header", "Authorization: Bearer sk-test"], cgroup=CG.path, uid=lib.NOBODY, hosts=HOSTS,
                env={"SSL_CERT_FILE": CA}, timeout=30)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    check(res.get("status") == 200, "urllib status: %s %s" % (res, p.stderr[-300:]))
    check(res["body"]["choices"][0]["message"]["content"] == "echo: hello there", "urllib answer %s" % res)


@test
def openai_sdk_plain_and_streaming():
    res, p = node("openai_chat.mjs", "--message", "ping from the sdk")
    check("error" not in res, "openai SDK failed: %s %s" % (res, p.stderr[-500:]))
    check(res["content"] == "echo: ping from the sdk", "openai content %r" % res["content"])
    res, p = node("openai_chat.mjs", "--message", "stream me please now", "--stream")
    check("error" not in res, "openai SDK stream failed: %s %s" % (res, p.stderr[-500:]))
    check(res["content"] == "echo: stream me please now", "streamed content %r" % res["content"])
    check(res.get("usage") and res["usage"]["completion_tokens"] == 5, "streamed usage %s" % res.get("usage"))
    evs = request_events(lambda e: e["stream"] and e["provider"] == "openai")
    check(evs and evs[-1]["completion_tokens"] == 5 and evs[-1]["prompt_tokens"] == res["usage"]["prompt_tokens"],
          "streamed usage not audited: %s" % evs[-1:])


@test
def anthropic_sdk_plain_and_streaming():
    res, p = node("anthropic_msg.mjs", "--message", "hello claude")
    check("error" not in res, "anthropic SDK failed: %s %s" % (res, p.stderr[-500:]))
    check(res["content"] == "echo: hello claude", "anthropic content %r" % res["content"])
    res, p = node("anthropic_msg.mjs", "--message", "stream to me", "--stream")
    check("error" not in res, "anthropic stream failed: %s %s" % (res, p.stderr[-500:]))
    check(res["content"] == "echo: stream to me", "anthropic streamed content %r" % res["content"])
    evs = request_events(lambda e: e["provider"] == "anthropic" and e["stream"])
    check(evs and evs[-1]["completion_tokens"] == res["usage"]["output_tokens"],
          "anthropic streamed usage not audited: %s vs %s" % (evs[-1:], res.get("usage")))


@test
def streaming_is_not_buffered():
    # The fake sends one event per word, 100 ms apart: the first must arrive
    # long before the last (an agent that buffered would deliver all at once).
    res, p = node("openai_chat.mjs", "--message", "one two three four five six seven eight", "--stream")
    check("error" not in res, "stream failed: %s" % res)
    check(res["last_ms"] - res["first_ms"] >= 500,
          "events arrived together (first %s ms, last %s ms): buffered" % (res["first_ms"], res["last_ms"]))


@test
def keep_alive_reuses_connections():
    before = len(records(REC))
    res, p = node("openai_chat.mjs", "--message", "again", "--count", "3")
    check("error" not in res and res["calls"] == 3, "3 calls on one client failed: %s" % res)
    got = records(REC)[before:]
    check(len(got) == 3, "provider saw %d requests" % len(got))
    check(len({r["conn_id"] for r in got}) == 1, "upstream connection not reused: %s" % [r["conn_id"] for r in got])


@test
def five_megabyte_request_body():
    big = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * (5 << 20)}]})
    path = os.path.join(TMP, "big.json")
    with open(path, "w") as f:
        f.write(big)
    os.chmod(path, 0o644)
    code, body, p = curl("https://api.openai.com/v1/chat/completions", "@" + path)
    check(code == 200, "5 MB request: status %s %s" % (code, p.stderr))
    got = records(REC)[-1]
    check(got["body_len"] == len(big), "provider got %s bytes, sent %d" % (got["body_len"], len(big)))


@test
def non_watched_sni_passes_through_undecrypted():
    code, body, p = lib.run(["curl", "-sS", "-k", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
                             "https://notwatched.example/v1/models", "-H", "Authorization: Bearer x",
                             "-H", "Connection: close"],
                            cgroup=CG.path, uid=lib.NOBODY, hosts=HOSTS).stdout, None, None
    check(code in ("200", "404"), "pass-through request failed: %s" % code)
    snis = [r.get("sni") for r in records(SNI_LOG)]
    check("notwatched.example" in snis, "the fake server never saw the client's own ClientHello: %s" % snis[-5:])
    evs = AGENT.wait_events(lambda e: e.get("sni") == "notwatched.example", kind="connection")
    check(evs and evs[0]["action"] == "passthrough", "pass-through not audited: %s" % AGENT.events("connection")[-3:])
    check(not [e for e in AGENT.events("request") if e.get("sni") == "notwatched.example"],
          "a non-watched host was decrypted")


@test
def expired_upstream_certificate_refused():
    code, body, p = curl("https://api.mistral.ai/v1/chat/completions", CHAT)
    check(code == 502, "expired upstream: status %s body %s" % (code, body[:200]))
    check("expired" in body, "client error does not say why: %s" % body[:300])
    evs = request_events(lambda e: e.get("sni") == "api.mistral.ai")
    check(evs and evs[-1]["reason"] == "upstream_cert_invalid" and "expired" in evs[-1]["error"],
          "expired upstream not audited: %s" % evs[-1:])


@test
def wrong_host_upstream_certificate_refused():
    code, body, p = curl("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent",
                         json.dumps({"contents": [{"parts": [{"text": "hi"}]}]}), extra=["-H", "x-goog-api-key: k"])
    check(code == 502, "wrong-host upstream: status %s body %s" % (code, body[:200]))
    check(json.loads(body)["error"]["status"] == "UNAVAILABLE", "error not in Gemini's shape: %s" % body[:300])
    evs = request_events(lambda e: e.get("sni") == "generativelanguage.googleapis.com")
    check(evs and evs[-1]["reason"] == "upstream_cert_invalid", "wrong-host upstream not audited: %s" % evs[-1:])


@test
def slowloris_closed_while_others_served():
    # The slow client runs inside the cgroup too: from this test process
    # it would bypass the agent, so run the same logic as a subprocess.
    script = os.path.join(TMP, "slow.py")
    with open(script, "w") as f:
        f.write("import socket, ssl, time, json\n"
                "ctx = ssl.create_default_context(cafile=%r)\n"
                "s = socket.create_connection((%r, 443)); t0 = time.time(); closed = False\n"
                "try:\n"
                "    ts = ctx.wrap_socket(s, server_hostname='api.openai.com')\n"
                "    ts.sendall(b'POST /v1/chat/completions HTTP/1.1\\r\\n')\n"
                "    for i in range(40):\n"
                "        ts.sendall(b'X-Slow-%%d: y\\r\\n' %% i); time.sleep(0.25)\n"
                "        ts.settimeout(0.01)\n"
                "        try:\n"
                "            if ts.recv(1) == b'': closed = True; break\n"
                "        except socket.timeout: pass\n"
                "        except ssl.SSLError: closed = True; break\n"
                "except OSError: closed = True\n"
                "print(json.dumps({'closed': closed, 'after': time.time() - t0}))\n" % (CA, GOOD))
    os.chmod(script, 0o755)
    slow_p = lib.spawn([PY, script], cgroup=CG.path, uid=lib.NOBODY, stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    code, body, p = curl("https://api.openai.com/v1/chat/completions", CHAT)
    check(code == 200, "normal client not served during slowloris: %s" % code)
    out = slow_p.communicate(timeout=30)[0]
    res = json.loads(out.strip().splitlines()[-1])
    check(res["closed"], "slowloris client never closed: %s" % res)
    check(res["after"] < 4.0, "slowloris closed only after %.1f s (header timeout 2 s)" % res["after"])
    evs = request_events(lambda e: e.get("status") == 408)
    check(evs, "slowloris timeout not audited")


@test
def agent_stops_cleanly():
    rc = AGENT.stop()
    check(rc == 0, "agent exit %s: %s" % (rc, AGENT.log_tail()))


if __name__ == "__main__":
    lib.main()
