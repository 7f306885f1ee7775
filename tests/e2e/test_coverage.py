"""End-to-end: no first flight walks around the agent (issue 11, part 1).

An attacker in the watched cgroup (user nobody) tries to get a prompt with
an AWS key to the provider by shaping what the agent classifies on: no SNI
(openssl s_client -noservername, curl to the bare address), a ClientHello
sent after the deadline, a trailing-dot SNI, an unwatched SNI with a watched
Host (domain fronting, both ways), plain HTTP on port 80, bytes that are not
TLS. With the DEFAULT configuration (unwatched_sni: intercept, ports 443 and
80) the fake provider must never receive the key, and an audit event must
name the client process; the client gets a prompt error, never a hang. A
ClientHello split in two records or two segments within the deadline is
intercepted normally, and an unwatched site that is honest about its name
still works through interception. Then unwatched_sni: block and passthrough
do what they say.
"""
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import lib
from lib import check, test
import rig as rigmod

PY = rigmod.PY
GOOD, OTHER = "127.11.0.2", "127.11.0.3"
METRICS_PORT = lib.free_port()
SECRET = "AKIAZ7Q4RW2LXN5TB3KD"      # an AWS access key id in the real format (not the documented example)
RIG = rigmod.Rig("coverage", {
    "api.openai.com": GOOD,
    "api.anthropic.com": GOOD,
    "cdn-other.example": GOOD,         # an unwatched name on a provider's address
    "wrong.example": OTHER,            # an unwatched site whose certificate names it
}, {"good": (GOOD, "good", 0), "other": (OTHER, "wronghost", 0)},
    endpoints=["api.openai.com", "api.anthropic.com"], log_level="info",
    agent_extra="metrics: 127.0.0.1:%d\n" % METRICS_PORT)
AGENT = RIG.agent
TOOLS = os.path.join(RIG.tmp, "coverage_tools.py")
shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "coverage_tools.py"), TOOLS)
os.chmod(TOOLS, 0o755)
AGENT.start()

CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "my key is " + SECRET}]})
CLEAN = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]})
DEADLINE = 3.0                        # the default limits.clienthello_timeout


def http_request(host, body, path="/v1/chat/completions"):
    return ("POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer sk-test\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n%s" % (path, host, len(body), body)).encode()


def tool(*args, timeout=30):
    p = lib.run([PY, TOOLS] + [str(a) for a in args], cgroup=RIG.cg.path, uid=lib.NOBODY, hosts=RIG.hosts,
                timeout=timeout)
    check(p.stdout.strip(), "client printed nothing: %s" % p.stderr[-600:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def secret_never_received():
    for name in RIG.records:
        for r in RIG.received(name):
            blob = json.dumps(r)
            check(SECRET not in blob, "the %s provider received the raw key: %s %s" % (name, r["method"], r["path"]))


def refusal(reason, exe, since=0, **fields):
    """The connection event that refuses a client of executable exe."""
    def match(e):
        return (e.get("seq", 0) > since and e.get("action") == "block" and e.get("reason") == reason and
                all(e.get(k) == v for k, v in fields.items()))
    evs = AGENT.wait_events(match, kind="connection")
    check(evs, "no connection event with action block, reason %s, %s; last: %s" %
          (reason, fields, AGENT.events("connection")[-2:]))
    ev = evs[-1]
    check(ev["uid"] == lib.NOBODY and ev["pid"] > 0, "the event does not name the client: uid %s pid %s" %
          (ev.get("uid"), ev.get("pid")))
    check(ev.get("exe") and os.path.basename(ev["exe"]).startswith(exe) and ev.get("comm"),
          "exe/comm %s/%s, expected %s" % (ev.get("exe"), ev.get("comm"), exe))
    check(ev["dst_port"] in (80, 443) and ev["dst_ip"] in (GOOD, OTHER), "destination %s:%s" %
          (ev["dst_ip"], ev["dst_port"]))
    check(not [e for e in AGENT.events("connection") if e.get("pid") == ev["pid"] and e.get("action") == "passthrough"],
          "the refused client was also relayed")
    return ev


def last_seq():
    evs = AGENT.events()
    return evs[-1]["seq"] if evs else 0


@test
def openssl_s_client_without_sni_gets_an_alert():
    since = last_seq()
    t0 = time.time()
    p = lib.run(["openssl", "s_client", "-connect", "%s:443" % GOOD, "-noservername", "-CAfile", RIG.ca, "-quiet"],
                cgroup=RIG.cg.path, uid=lib.NOBODY, hosts=RIG.hosts, timeout=20,
                input=http_request("api.openai.com", CHAT).decode())
    took = time.time() - t0
    check(p.returncode != 0, "s_client without SNI completed a handshake: %s" % p.stdout[-300:])
    check("unrecognized name" in p.stderr or "alert" in p.stderr, "no TLS alert reported: %s" % p.stderr[-400:])
    check(took < DEADLINE, "the refusal took %.1f s (not prompt)" % took)
    refusal("no_sni", "openssl", since)
    secret_never_received()


@test
def curl_to_the_bare_address_refused():
    since = last_seq()
    code, body, p = RIG.curl("https://%s/v1/chat/completions" % GOOD, CHAT, extra=["-H", "Host: api.openai.com", "-k"])
    check(code == 0 and p.returncode == 35, "curl to the bare IP: status %s, exit %s, %s" % (code, p.returncode, p.stderr))
    refusal("no_sni", "curl", since)
    secret_never_received()


@test
def clienthello_after_the_deadline_refused():
    since = last_seq()
    res = tool("tls", RIG.ca, GOOD, 443, "api.openai.com", http_request("api.openai.com", CHAT).hex(),
               "--delay", DEADLINE + 1.0)
    check(not res.get("handshake"), "a ClientHello sent after the deadline was answered: %s" % res)
    check(res["elapsed"] < DEADLINE + 3.0, "the late client hung: %s" % res)
    ev = refusal("clienthello_timeout", "python3", since)
    check(ev.get("latency_ms", 0) >= DEADLINE * 1000 - 200, "refused before the deadline: %s ms" % ev.get("latency_ms"))
    secret_never_received()


@test
def split_clienthello_within_the_deadline_intercepted():
    for mode in ("records", "segments"):
        n = len(RIG.received())
        res = tool("tls", RIG.ca, GOOD, 443, "api.openai.com", http_request("api.openai.com", CLEAN).hex(),
                   "--split", mode, "--pause", 1.0)
        check(res.get("status") == 200, "hello split in %s: %s" % (mode, res))
        check("echo: hello there" in res["body"], "answer %s" % res["body"][:200])
        got = RIG.received()[n:]
        check(got and got[-1]["sni"] == "api.openai.com" and got[-1]["path"] == "/v1/chat/completions",
              "the provider did not get the request through the agent: %s" % got)
    evs = RIG.request_events(lambda e: e.get("sni") == "api.openai.com" and "python3" in (e.get("exe") or "")
                             and e.get("status") == 200, n=2)
    check(evs and evs[-1]["uid"] == lib.NOBODY, "split-hello requests not audited: %s" % evs[-1:])


@test
def trailing_dot_sni_intercepted_and_inspected():
    # A verifying client that sends "api.openai.com." rejects the forged
    # certificate exactly as it rejects the provider's own (no public
    # certificate names an absolute name, and certgen never forges one: a
    # trailing-dot SAN would also break name-constrained CAs)...
    direct = lib.run([PY, TOOLS, "tls", RIG.pki["ca_cert"], GOOD, "443", "api.openai.com.",
                      http_request("api.openai.com.", CLEAN).hex()], uid=lib.NOBODY, timeout=30)
    direct = json.loads(direct.stdout.strip().splitlines()[-1])
    res = tool("tls", RIG.ca, GOOD, 443, "api.openai.com.", http_request("api.openai.com.", CHAT).hex())
    check("Hostname mismatch" in direct.get("error", "") and "Hostname mismatch" in res.get("error", ""),
          "verifying client: direct to the provider %s, through the agent %s" % (direct, res))
    # ...so only a client that skips verification gets through, and it is
    # intercepted and inspected under the normalised name.
    since = last_seq()
    res = tool("tls", RIG.ca, GOOD, 443, "api.openai.com.", http_request("api.openai.com.", CHAT).hex(),
               "--insecure", 1)
    check(res.get("status") == 403 and "credential" in res.get("body", ""), "the key was not blocked: %s" % res)
    evs = RIG.request_events(lambda e: e.get("seq", 0) > since and e.get("action") == "block")
    check(evs, "no request event: %s" % AGENT.events()[-2:])
    ev = evs[-1]
    check(ev["sni"] == "api.openai.com", "sni not normalised in the event: %s" % ev["sni"])
    check(ev["uid"] == lib.NOBODY and "python3" in ev["exe"], "identity %s %s" % (ev["uid"], ev["exe"]))
    check("AWS_ACCESS_KEY" in json.dumps(ev.get("findings")), "findings %s" % ev.get("findings"))
    # a clean request goes upstream under the plain name
    n = len(RIG.received())
    res = tool("tls", RIG.ca, GOOD, 443, "api.openai.com.", http_request("api.openai.com.", CLEAN).hex(),
               "--insecure", 1)
    check(res.get("status") == 200, "clean request with the absolute name: %s" % res)
    got = RIG.received()[n:]
    check(got and got[-1]["sni"] == "api.openai.com", "upstream SNI %s" % (got[-1].get("sni") if got else None))
    secret_never_received()


@test
def fronting_unwatched_sni_watched_host_refused_by_default():
    since = last_seq()
    code, body, p = RIG.curl("https://cdn-other.example/v1/chat/completions", CHAT, extra=["-H", "Host: api.openai.com"])
    check(code == 421, "fronting request: status %s, %s %s" % (code, body[:300], p.stderr))
    check(json.loads(body)["error"]["code"] == "host_mismatch", "error body %s" % body[:300])
    evs = RIG.request_events(lambda e: e.get("seq", 0) > since and e.get("reason") == "host_mismatch")
    check(evs, "fronting not audited: %s" % AGENT.events()[-2:])
    ev = evs[-1]
    check(ev["action"] == "block" and ev["sni"] == "cdn-other.example" and ev["status"] == 421, "event %s" % ev)
    check(ev["uid"] == lib.NOBODY and ev["exe"].endswith("curl"), "identity %s %s" % (ev["uid"], ev["exe"]))
    secret_never_received()


@test
def fronting_watched_sni_other_host_refused():
    since = last_seq()
    code, body, p = RIG.curl("https://api.openai.com/v1/messages", CHAT,
                             extra=["-H", "Host: api.anthropic.com", "-H", "anthropic-version: 2023-06-01"])
    check(code == 421, "watched SNI with another Host: status %s %s" % (code, body[:300]))
    evs = RIG.request_events(lambda e: e.get("seq", 0) > since and e.get("reason") == "host_mismatch")
    check(evs and evs[-1]["sni"] == "api.openai.com", "not audited: %s" % AGENT.events()[-2:])
    # the port in Host and an absolute Host name are the same host
    code, body, p = RIG.curl("https://api.openai.com/v1/chat/completions", CLEAN,
                             extra=["-H", "Host: API.OpenAI.com.:443"])
    check(code == 200, "Host with case, trailing dot and port refused: %s %s" % (code, body[:200]))
    secret_never_received()


@test
def unwatched_site_honest_about_its_name_works_through_interception():
    n = len(RIG.received("other"))
    code, body, p = RIG.curl("https://wrong.example/v1/chat/completions", CLEAN)
    check(code == 200, "unwatched site under the default: status %s %s %s" % (code, body[:200], p.stderr))
    got = RIG.received("other")[n:]
    check(got and got[-1]["sni"] == "wrong.example", "upstream did not get it under its own name: %s" % got)
    evs = RIG.request_events(lambda e: e.get("sni") == "wrong.example" and e.get("status") == 200)
    check(evs and evs[-1]["uid"] == lib.NOBODY, "not audited as a request: %s" % evs[-1:])
    # ...and it is inspected like any other request: the key does not leave
    code, body, p = RIG.curl("https://wrong.example/v1/chat/completions", CHAT)
    check(code == 403, "a key to an unwatched site on a provider address: status %s" % code)
    secret_never_received()


@test
def plain_http_on_port_80_refused_with_provider_error():
    since = last_seq()
    code, body, p = RIG.curl("http://api.openai.com/v1/chat/completions?api_key=sk-query", CHAT)
    check(code == 403, "plain HTTP: status %s, %s %s" % (code, body[:300], p.stderr))
    err = json.loads(body)["error"]
    check(err["code"] == "plain_http" and "HTTPS is required" in err["message"], "error body %s" % body[:300])
    ev = refusal("plain_http", "curl", since, sni="api.openai.com")
    check(ev["dst_port"] == 80 and ev["method"] == "POST" and ev["path"] == "/v1/chat/completions" and ev["status"] == 403,
          "event %s" % ev)
    check("sk-query" not in json.dumps(AGENT.events()), "the query string reached the audit log")
    # and in Anthropic's own shape for an Anthropic host
    code, body, p = RIG.curl("http://api.anthropic.com/v1/messages", CHAT)
    check(code == 403 and json.loads(body)["error"]["type"] == "permission_error", "anthropic shape: %s" % body[:300])
    secret_never_received()


@test
def plain_http_with_unwatched_host_refused_by_default():
    since = last_seq()
    code, body, p = RIG.curl("http://cdn-other.example/v1/chat/completions", CHAT)
    check(code == 403, "plain HTTP to another site on a provider address: status %s" % code)
    refusal("plain_http", "curl", since, sni="cdn-other.example")
    secret_never_received()


@test
def name_that_cannot_be_forged_refused_on_record():
    # "localhost" (one label) is a valid SNI but no certificate is forged for
    # it: under the default it must be refused with an event, not dropped
    # silently or relayed.
    since = last_seq()
    res = tool("tls", RIG.ca, GOOD, 443, "localhost", http_request("api.openai.com", CHAT).hex(), "--insecure", 1)
    check(not res.get("handshake") and res["elapsed"] < DEADLINE, "a one-label SNI was served or held: %s" % res)
    refusal("clienthello_invalid", "python3", since, sni="localhost")
    secret_never_received()


@test
def not_tls_garbage_closed():
    since = last_seq()
    res = tool("raw", GOOD, 443, ("\x00\x01garbage " + SECRET + "\r\n").encode().hex())
    check(res["reply"] == "" and res["elapsed"] < DEADLINE, "garbage was answered or held: %s" % res)
    refusal("not_tls", "python3", since)
    res = tool("raw", GOOD, 443, ("SSH-2.0-OpenSSH_9.2 " + SECRET + "\r\n").encode().hex())
    check(res["reply"] == "" and res["elapsed"] < DEADLINE, "SSH banner answered or held: %s" % res)
    secret_never_received()


@test
def silent_client_closed_at_the_deadline():
    since = last_seq()
    t0 = time.time()
    p = lib.run([PY, "-c", "import socket,sys; s=socket.create_connection((sys.argv[1],443)); "
                 "s.settimeout(15); print(repr(s.recv(10)))", GOOD],
                cgroup=RIG.cg.path, uid=lib.NOBODY, timeout=30)
    took = time.time() - t0
    check(p.returncode == 0 or "reset" in p.stderr.lower(), "silent client: %s %s" % (p.stdout, p.stderr[-300:]))
    check(DEADLINE - 0.5 < took < DEADLINE + 2.0, "a silent client was closed after %.1f s" % took)
    refusal("clienthello_timeout", "python3", since)


@test
def refusals_counted_by_reason():
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % METRICS_PORT, timeout=5).read().decode()
    vals = dict(l.rsplit(" ", 1) for l in text.splitlines() if l and not l.startswith("#"))
    check("vigil_agent_collector_connected" in vals, "the metrics page was cut short (%d bytes)" % len(text))
    for reason, at_least in (("no_sni", 2), ("plain_http", 3), ("host_mismatch", 2), ("not_tls", 2),
                             ("clienthello_timeout", 2)):
        got = int(vals.get('vigil_agent_refused_total{reason="%s"}' % reason, "0"))
        check(got >= at_least, "refused_total for %s is %d, expected >= %d" % (reason, got, at_least))


def restart_with(line):
    check(AGENT.stop() == 0, "agent exit status")
    with open(AGENT.config, "a") as f:
        f.write(line + "\n")
    AGENT.start()


@test
def unwatched_sni_block_mode():
    restart_with("unwatched_sni: block")
    since = last_seq()
    t0 = time.time()
    code, body, p = RIG.curl("https://cdn-other.example/v1/chat/completions", CHAT, extra=["-H", "Host: api.openai.com"])
    check(code == 0 and p.returncode == 35 and time.time() - t0 < DEADLINE, "block mode: status %s exit %s %s" %
          (code, p.returncode, p.stderr))
    check("unrecognized name" in p.stderr, "no unrecognized_name alert: %s" % p.stderr)
    refusal("unwatched_sni", "curl", since, sni="cdn-other.example")
    # watched names are still intercepted
    code, body, p = RIG.curl("https://api.openai.com/v1/chat/completions", CLEAN)
    check(code == 200, "watched name in block mode: %s" % code)
    secret_never_received()


@test
def unwatched_sni_passthrough_mode_relays_and_audits():
    # switched by SIGHUP: classification settings reload with the domains
    with open(AGENT.config) as f:
        text = f.read().replace("unwatched_sni: block\n", "unwatched_sni: passthrough\n")
    with open(AGENT.config, "w") as f:
        f.write(text)
    AGENT.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "unwatched_sni, clienthello_timeout" not in AGENT.log_tail(5):
        check(time.time() < deadline, "no reload logged: %s" % AGENT.log_tail(5))
        time.sleep(0.05)
    since = last_seq()
    n = len(RIG.received())
    # The operator accepted fronting: the request is relayed undecrypted
    # (the client must skip verification, the fake's certificate does not
    # name cdn-other.example), and the connection is on record.
    code, body, p = RIG.curl("https://cdn-other.example/v1/chat/completions", CLEAN, extra=["-k"])
    check(code == 200, "passthrough mode: status %s %s" % (code, p.stderr))
    got = RIG.received()[n:]
    check(got and got[-1]["sni"] == "cdn-other.example", "not relayed with the client's own SNI: %s" % got)
    evs = AGENT.wait_events(lambda e: e.get("seq", 0) > since and e.get("sni") == "cdn-other.example" and
                            e.get("action") == "passthrough", kind="connection")
    check(evs and evs[-1]["uid"] == lib.NOBODY and evs[-1]["exe"].endswith("curl"), "not audited: %s" % evs[-1:])
    check(not [e for e in AGENT.events("request") if e.get("seq", 0) > since and e.get("sni") == "cdn-other.example"],
          "passthrough mode decrypted the unwatched name")
    # plain HTTP: another site's Host is relayed in passthrough mode (only
    # its first request is seen), a watched Host is still refused
    site = os.path.join(RIG.tmp, "site")
    os.makedirs(site, exist_ok=True)
    with open(os.path.join(site, "marker.txt"), "w") as f:
        f.write("plain-site-ok")
    srv = lib.spawn([PY, "-m", "http.server", "80", "--bind", GOOD, "--directory", site],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while subprocess.run(["curl", "-s", "-o", "/dev/null", "http://%s/" % GOOD]).returncode != 0:
        check(time.time() < deadline and srv.poll() is None, "the plain-HTTP site did not start")
        time.sleep(0.1)
    since = last_seq()
    code, body, p = RIG.curl("http://cdn-other.example/marker.txt?x=1")
    check(code == 200 and body == "plain-site-ok", "plain HTTP to another site not relayed: %s %s" % (code, body[:200]))
    evs = AGENT.wait_events(lambda e: e.get("seq", 0) > since and e.get("action") == "passthrough" and
                            e.get("dst_port") == 80, kind="connection")
    check(evs and evs[-1]["sni"] == "cdn-other.example" and evs[-1]["path"] == "/marker.txt" and
          evs[-1]["method"] == "GET" and evs[-1]["uid"] == lib.NOBODY, "relay not audited: %s" % evs[-1:])
    code, body, p = RIG.curl("http://api.openai.com/v1/chat/completions", CHAT)
    check(code == 403, "plain HTTP to a watched host in passthrough mode: %s" % code)
    srv.kill()
    # no SNI is still refused in passthrough mode
    since = last_seq()
    code, body, p = RIG.curl("https://%s/v1/chat/completions" % GOOD, CHAT, extra=["-k"])
    check(code == 0, "no SNI relayed in passthrough mode: %s" % code)
    refusal("no_sni", "curl", since)
    secret_never_received()


@test
def agent_stops_cleanly():
    check(AGENT.stop() == 0, "agent exit: %s" % AGENT.log_tail())


if __name__ == "__main__":
    lib.main()
