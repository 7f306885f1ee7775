"""End-to-end: explicit HTTP proxies (proxies:) and the agent's own egress
proxy (upstream_proxy:), through the real BPF redirect.

Clients in the scratch cgroup use HTTPS_PROXY=http://127.12.0.3:3128, as in
companies where every client goes through a proxy. The connect hook
redirects the connection to the proxy into the agent, which must: answer a
CONNECT to a watched host itself and intercept the tunnel (its own upstream
then goes through the real proxy: the fake proxy logs that CONNECT), splice
any other CONNECT to the real proxy byte for byte, refuse plain HTTP to a
watched host and every malformed or mismatched request, and audit each
refusal with the client's identity. A second agent sends its own upstream
through an authenticating proxy (upstream_proxy: + upstream_proxy_auth:)
while the client connects directly.
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
GOOD, PROXY, ECHO, AUTH_PROXY = "127.12.0.2", "127.12.0.3", "127.12.0.4", "127.12.0.6"
PROXY_URL = "http://%s:3128" % PROXY
AWS_KEY = "AKIA" + "Z7QW3RT5YU2IO4PL"   # split so this file itself is not a credential finding
CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello through the proxy"}]})

RIG = rigmod.Rig("proxy", {"api.openai.com": GOOD, "notwatched.example": ECHO, "proxy.test": PROXY,
                           "plain.example": "127.12.0.8"},
                 {"good": (GOOD, "good", 0)}, endpoints=["api.openai.com"],
                 agent_extra="proxies: [\"%s:3128\", \"%s:3128\"]\nlimits:\n  header_timeout: 2s\n" % (PROXY, AUTH_PROXY))
TOOLS = os.path.join(RIG.tmp, "proxy_tools.py")
for name in ("proxy_tools.py", "tcp_tools.py"):
    shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), name), os.path.join(RIG.tmp, name))
    os.chmod(os.path.join(RIG.tmp, name), 0o755)
FAKE_PROXY = os.path.join(lib.ROOT, "tests", "fakes", "fake_proxy.py")


def start_proxy(listen, log, require_auth=None, hosts=None):
    argv = [PY, FAKE_PROXY, "--listen", listen, "--log", log]
    if require_auth:
        argv += ["--require-auth", require_auth]
    p = lib.spawn(argv, hosts=hosts, stdout=subprocess.PIPE, text=True)
    check("fake-proxy ready" in p.stdout.readline(), "fake proxy on %s did not start" % listen)
    return p


def start_echo(host, port, log):
    p = lib.spawn([PY, os.path.join(RIG.tmp, "tcp_tools.py"), "echo", host, str(port), log],
                  stdout=subprocess.PIPE, text=True)
    check("echo ready" in p.stdout.readline(), "echo server did not start")


PROXY_LOG = os.path.join(RIG.tmp, "proxy.jsonl")
ECHO_LOG = os.path.join(RIG.tmp, "echo.jsonl")
start_proxy("%s:3128" % PROXY, PROXY_LOG, hosts=RIG.hosts)
AUTH_PROXY_LOG = os.path.join(RIG.tmp, "auth-proxy.jsonl")
start_proxy("%s:3128" % AUTH_PROXY, AUTH_PROXY_LOG, require_auth="carol:pw", hosts=RIG.hosts)
start_echo(ECHO, 443, ECHO_LOG)
RIG.agent.start()
PROXY_ENV = {"HTTPS_PROXY": PROXY_URL, "https_proxy": PROXY_URL, "HTTP_PROXY": PROXY_URL,
             "http_proxy": PROXY_URL, "NO_PROXY": "", "no_proxy": ""}


def proxy_log():
    return RIG.read_jsonl(PROXY_LOG)


def curl(url, data=None, extra=(), env=None):
    argv = ["curl", "-sS", "--max-time", "20", "--cacert", RIG.ca, "-o", "-", "-w", "\n%{http_code}",
            "-H", "Authorization: Bearer sk-test", "-H", "Content-Type: application/json"] + list(extra)
    if data is not None:
        argv += ["--data-binary", data]
    argv.append(url)
    p = lib.run(argv, cgroup=RIG.cg.path, uid=lib.NOBODY, hosts=RIG.hosts, env=env, timeout=40)
    body, _, code = p.stdout.rpartition("\n")
    return int(code or 0), body, p


def raw(head, *opts, timeout=5, proxy=PROXY):
    """proxy_tools.py as nobody in the cgroup, to the proxy address."""
    p = lib.run([PY, TOOLS, proxy, "3128", head, "--timeout", str(timeout)] + list(opts), cgroup=RIG.cg.path,
                uid=lib.NOBODY, hosts=RIG.hosts, timeout=timeout + 20)
    check(p.stdout.strip(), "proxy_tools printed nothing: %s" % p.stderr[-400:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def refusals(reason, since=0):
    return [e for e in RIG.agent.events("connection")[since:] if e.get("reason") == reason]


def conn_count():
    return len(RIG.agent.events("connection"))


@test
def curl_through_https_proxy_is_intercepted():
    before = len(proxy_log())
    code, body, p = curl("https://api.openai.com/v1/chat/completions", CHAT, env=PROXY_ENV)
    check(code == 200, "status %s, stderr %s, body %s" % (code, p.stderr, body[:300]))
    check(json.loads(body)["choices"][0]["message"]["content"] == "echo: hello through the proxy", body[:300])
    got = [r for r in RIG.received() if r["path"] == "/v1/chat/completions"]
    check(got and json.loads(got[-1]["body"]) == json.loads(CHAT), "provider did not receive the request")
    evs = RIG.request_events(lambda e: e["uid"] == lib.NOBODY and e["sni"] == "api.openai.com")
    check(evs, "no request event: %s" % RIG.agent.events()[-3:])
    ev = evs[-1]
    check(ev["exe"].endswith("curl") and ev["dst_ip"] == PROXY and ev["dst_port"] == 3128,
          "event identity/destination %s" % ev)
    # The client's CONNECT reached the real proxy (once); the intercepted
    # TLS ran inside that tunnel.
    new = proxy_log()[before:]
    check([r["target"] for r in new] == ["api.openai.com:443"], "proxy saw %s" % new)


@test
def secret_through_proxy_never_reaches_provider():
    before = len(RIG.received())
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "my key is " + AWS_KEY}]})
    code, out, p = curl("https://api.openai.com/v1/chat/completions", body, env=PROXY_ENV)
    check(code == 403, "status %s (expected the default table to block a credential): %s" % (code, out[:300]))
    check(not any(AWS_KEY in r["body"] for r in RIG.received()[before:]), "the provider received the AWS key")
    evs = RIG.request_events(lambda e: e["action"] == "block" and e["uid"] == lib.NOBODY and
                             any(f["type"] == "AWS_ACCESS_KEY" for f in e["findings"]))
    check(evs and evs[-1]["sni"] == "api.openai.com", "block not audited: %s" % RIG.agent.events("request")[-2:])


@test
def python_urllib_honours_https_proxy():
    script = os.path.join(RIG.tmp, "py_client.py")
    shutil.copy(os.path.join(rigmod.CLIENTS, "py_client.py"), script)
    os.chmod(script, 0o755)
    before = len(proxy_log())
    env = dict(PROXY_ENV, SSL_CERT_FILE=RIG.ca)
    p = lib.run([PY, script, "--url", "https://api.openai.com/v1/chat/completions", "--json", CHAT,
                 "--header", "Authorization: Bearer sk-test"], cgroup=RIG.cg.path, uid=lib.NOBODY,
                hosts=RIG.hosts, env=env, timeout=30)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    check(res.get("status") == 200, "urllib through the proxy: %s %s" % (res, p.stderr[-300:]))
    evs = RIG.request_events(lambda e: e["exe"] and "python" in e["exe"] and e["dst_port"] == 3128)
    check(evs and evs[-1]["provider"] == "openai", "no request event for the Python client: %s" % evs[-1:])
    check(len(proxy_log()) >= before, "proxy log shrank?")


@test
def openai_sdk_through_https_proxy():
    """The official Node SDK, routed through HTTPS_PROXY with CONNECT
    (tests/clients/proxy_fetch.mjs), plain and streaming."""
    before = len(proxy_log())
    for stream in (False, True):
        args = ["--message", "sdk via proxy", "--proxy-from-env"] + (["--stream"] if stream else [])
        res, p = RIG.node("openai_chat.mjs", *args, env=PROXY_ENV, uid=lib.NOBODY)
        check("error" not in res, "SDK through the proxy (stream %s): %s %s" % (stream, res, p.stderr[-400:]))
        check(res["content"] == "echo: sdk via proxy", "content %r" % res["content"])
    evs = RIG.request_events(lambda e: e["exe"] and e["exe"].endswith("node") and e["dst_port"] == 3128, n=2)
    check(len(evs) >= 2 and evs[-1]["stream"] and evs[-1]["completion_tokens"] > 0,
          "SDK requests not audited as proxied: %s" % evs[-2:])
    check(all(r["target"] == "api.openai.com:443" for r in proxy_log()[before:]), "proxy saw %s" % proxy_log()[before:])


@test
def connect_to_unwatched_host_is_spliced_to_the_real_proxy():
    before, cbefore = len(proxy_log()), conn_count()
    data = "opaque bytes \x01\x02 through the tunnel " * 50
    res = raw("CONNECT notwatched.example:443 HTTP/1.1\\r\\nHost: notwatched.example:443\\r\\n\\r\\n",
              "--data", data)
    check(res["status"] == 200, "CONNECT answer %s" % res)
    check(res["after"] == "echo:" + data, "bytes did not arrive unchanged: %r" % res["after"][:200])
    new = proxy_log()[before:]
    check([r["target"] for r in new] == ["notwatched.example:443"], "the real proxy saw %s" % new)
    evs = RIG.agent.wait_events(lambda e: e.get("sni") == "notwatched.example" and e["uid"] == lib.NOBODY,
                                kind="connection")
    check(evs and evs[-1]["action"] == "passthrough" and evs[-1]["bytes_up"] > len(data),
          "pass-through not audited: %s" % RIG.agent.events("connection")[cbefore:])


@test
def watched_sni_inside_an_unwatched_tunnel_is_refused():
    """CONNECT to an innocent name, then a ClientHello for the watched host:
    through a CDN that hosts both, that would reach the provider
    un-inspected (fronting). The real proxy answered, but the hello never
    leaves the machine."""
    before = len(RIG.read_jsonl(ECHO_LOG))
    res = raw("CONNECT notwatched.example:443 HTTP/1.1\\r\\nHost: notwatched.example:443\\r\\n\\r\\n",
              "--hello", "API.openai.com")
    check(res["status"] == 200 and res["closed"] and res["after"].startswith("\x15\x03"),
          "fronting attempt not refused with an alert: %s" % res)
    evs = RIG.agent.wait_events(lambda e: e.get("reason") == "tunnel_watched_sni", kind="connection")
    check(evs and evs[-1]["uid"] == lib.NOBODY and evs[-1]["sni"] == "notwatched.example" and
          "api.openai.com" in evs[-1]["error"], "fronting not audited: %s" % evs[-1:])
    time.sleep(0.3)
    got = RIG.read_jsonl(ECHO_LOG)[before:]
    check(got and all(r["n"] == 0 for r in got), "the hello reached the far end: %s" % got)
    # The provider by address: the name is only in the hello, refused the same way.
    rbefore = len(RIG.received())
    res = raw("CONNECT %s:443 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n" % GOOD, "--hello", "api.openai.com")
    check(res["status"] == 200 and res["closed"] and res["after"].startswith("\x15\x03"),
          "CONNECT by address with a watched hello: %s" % res)
    check(RIG.agent.wait_events(lambda e: e.get("reason") == "tunnel_watched_sni" and e["sni"] == GOOD,
                                kind="connection"), "CONNECT by address not audited")
    check(len(RIG.received()) == rbefore, "the provider was reached")
    # An unwatched name in the hello goes through (and reaches the far end).
    res = raw("CONNECT notwatched.example:443 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", "--hello", "notwatched.example",
              timeout=3)
    time.sleep(0.3)
    got = RIG.read_jsonl(ECHO_LOG)[before:]
    check(res["status"] == 200 and any(r["n"] > 100 for r in got), "unwatched hello not relayed: %s %s" % (res, got))


@test
def server_first_protocol_in_a_tunnel_is_relayed():
    """SSH through the proxy: the server speaks first, nothing to classify."""
    import socket
    import threading
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.12.0.7", 2222))
    srv.listen(4)
    lib.at_cleanup(srv.close)

    def serve():
        c, _ = srv.accept()
        c.sendall(b"SSH-2.0-fake\r\n")
        c.settimeout(5)
        data = b""
        while not data.endswith(b"\n"):
            b = c.recv(4096)
            if not b:
                break
            data += b
        c.sendall(b"got:" + data)
        c.close()
    threading.Thread(target=serve, daemon=True).start()
    res = raw("CONNECT 127.12.0.7:2222 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", "--read-first", "--data", "SSH-2.0-client\n")
    check(res["status"] == 200 and res["after"] == "SSH-2.0-fake\r\ngot:SSH-2.0-client\n",
          "server-first tunnel: %s" % res)


@test
def client_proxy_credentials_are_kept():
    """A proxy that wants credentials: its 407 reaches the client of a
    forwarded CONNECT, and the agent's own CONNECT for an intercepted
    tunnel carries the client's Proxy-Authorization."""
    res = raw("CONNECT notwatched.example:443 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", proxy=AUTH_PROXY)
    check(res["status"] == 407 and res["closed"], "the proxy's 407 did not reach the client: %s" % res)
    url = "http://carol:pw@%s:3128" % AUTH_PROXY
    env = dict(PROXY_ENV, HTTPS_PROXY=url, https_proxy=url)
    before = len(RIG.read_jsonl(AUTH_PROXY_LOG))
    code, body, p = curl("https://api.openai.com/v1/chat/completions", CHAT, env=env)
    check(code == 200, "status %s %s" % (code, p.stderr[-200:]))
    new = RIG.read_jsonl(AUTH_PROXY_LOG)[before:]
    check([(r["target"], r["user"], r["authorized"]) for r in new] == [("api.openai.com:443", "carol", True)],
          "the agent's CONNECT for the client: %s" % new)
    # A watched host too: the proxy's challenge reaches the client, which
    # answers it on the same connection (curl --proxy-anyauth), and the
    # retry is intercepted like the first request would have been.
    res = raw("CONNECT api.openai.com:443 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", proxy=AUTH_PROXY)
    check(res["status"] == 407 and "Proxy-Authenticate" in res["head"], "no 407 for a watched host: %s" % res)
    before = len(RIG.read_jsonl(AUTH_PROXY_LOG))
    rbefore = len(RIG.agent.events("request"))
    code, body, p = curl("https://api.openai.com/v1/chat/completions", CHAT, env=env, extra=["--proxy-anyauth"])
    check(code == 200, "status after a 407 challenge %s %s" % (code, p.stderr[-200:]))
    new = RIG.read_jsonl(AUTH_PROXY_LOG)[before:]
    check([(r["user"], r["authorized"]) for r in new] == [(None, False), ("carol", True)],
          "the challenge and its answer: %s" % new)
    check(len(RIG.agent.events("request")) > rbefore, "the retried request was not intercepted")
    with open(RIG.agent.audit_log) as f, open(RIG.agent.stderr_path) as g:
        text = f.read() + g.read()
    check("Y2Fyb2w6cHc=" not in text, "the client's proxy credentials were logged")


@test
def tunnel_sni_must_match_the_connect_host():
    cbefore, sbefore = conn_count(), len(RIG.read_jsonl(RIG.sni_logs["good"]))
    res = raw("CONNECT api.openai.com:443 HTTP/1.1\\r\\nHost: api.openai.com:443\\r\\n\\r\\n",
              "--hello", "example.org")
    check(res["status"] == 200, "CONNECT to a watched host not answered: %s" % res)
    check(res["closed"], "the mismatched tunnel was not closed: %s" % res)
    check(res["after"].startswith("\x15\x03"), "no TLS alert: %r" % res["after"][:20])
    evs = RIG.agent.wait_events(lambda e: e.get("reason") == "tunnel_sni_mismatch", kind="connection")
    check(evs and evs[-1]["uid"] == lib.NOBODY and evs[-1]["action"] == "block" and
          "example.org" in evs[-1]["error"], "mismatch not audited: %s" % RIG.agent.events("connection")[cbefore:])
    time.sleep(0.3)
    check(len(RIG.read_jsonl(RIG.sni_logs["good"])) == sbefore, "a ClientHello reached the provider")
    # No SNI at all, and not TLS at all: refused the same way.
    res = raw("CONNECT api.openai.com:443 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", "--data", "GET / HTTP/1.1\r\n\r\n")
    check(res["closed"], "plain bytes in a watched tunnel were not refused: %s" % res)
    check(RIG.agent.wait_events(lambda e: e.get("reason") == "tunnel_not_tls", kind="connection"),
          "not-TLS tunnel not audited")


@test
def plain_http_to_watched_host_is_refused():
    before = len(RIG.received())
    code, body, p = curl("http://api.openai.com/v1/chat/completions", CHAT, extra=["-x", PROXY_URL])
    check(code == 403, "status %s body %s stderr %s" % (code, body[:200], p.stderr[-200:]))
    err = json.loads(body)["error"]
    check(err["code"] == "https_required" and "https" in err["message"], "error body %s" % body)
    check(len(RIG.received()) == before, "the provider received a plain-HTTP request")
    evs = RIG.agent.wait_events(lambda e: e.get("reason") == "https_required", kind="connection")
    check(evs and evs[-1]["uid"] == lib.NOBODY and evs[-1]["sni"] == "api.openai.com" and evs[-1]["status"] == 403,
          "refusal not audited: %s" % evs[-1:])


@test
def plain_http_to_other_host_is_forwarded():
    before = len(proxy_log())
    res = raw("GET http://notwatched.example:443/x HTTP/1.1\\r\\nHost: notwatched.example\\r\\n\\r\\n")
    new = proxy_log()[before:]
    check([(r["method"], r["target"]) for r in new] == [("GET", "http://notwatched.example:443/x")],
          "the real proxy saw %s (client got %s)" % (new, res))


PLAIN = "127.12.0.8"
PLAIN_LOG = []


def start_plain_origin():
    """A plain-HTTP origin behind the proxy that records every byte it gets
    on a connection and answers the first request (then closes, as asked)."""
    import socket
    import threading
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((PLAIN, 80))
    srv.listen(16)
    lib.at_cleanup(srv.close)

    def serve(c):
        c.settimeout(1.5)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                b = c.recv(4096)
                if not b:
                    break
                data += b
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            while True:   # whatever else arrives on this connection
                b = c.recv(4096)
                if not b:
                    break
                data += b
        except OSError:
            pass
        PLAIN_LOG.append(data.decode("latin-1"))
        c.close()

    def loop():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


@test
def one_request_per_forwarded_connection():
    """A second request pipelined (or kept alive) behind a forwarded one
    must not pass unread: after a plain-HTTP request, and after a proxy's
    407, the connection ends and the next request is read on a new one."""
    start_plain_origin()
    before = len(proxy_log())
    res = raw("GET http://plain.example/a HTTP/1.1\\r\\nHost: plain.example\\r\\n\\r\\n"
              "CONNECT api.openai.com:443 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", timeout=5)
    check(res["status"] == 200 and res["after"] == "ok" and res["closed"], "first answer %s" % res)
    time.sleep(1.8)
    check(PLAIN_LOG and "connection: close" in PLAIN_LOG[-1].lower(), "Connection: close not added: %s" % PLAIN_LOG)
    check(all("CONNECT" not in d for d in PLAIN_LOG), "the pipelined CONNECT went through: %s" % PLAIN_LOG)
    check([r["method"] for r in proxy_log()[before:]] == ["GET"], "proxy saw %s" % proxy_log()[before:])
    # The authenticating proxy keeps a 407 connection open for a retry; the
    # retry on it (here: authorized, to a watched host) is read and decided
    # like a first request, never relayed blind: with no ClientHello after
    # it, it is refused.
    cbefore = conn_count()
    res = raw("CONNECT notwatched.example:443 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
              "CONNECT api.openai.com:443 HTTP/1.1\\r\\nHost: x\\r\\nProxy-Authorization: Basic Y2Fyb2w6cHc=\\r\\n\\r\\n",
              proxy=AUTH_PROXY, timeout=6)
    check(res["status"] == 407 and res["after"].startswith("auth pls\nHTTP/1.1 200") and res["closed"],
          "407 then the retry's answer: %s" % res)
    check(refusals("tunnel_clienthello_timeout", cbefore), "the retry on the 407 connection was not classified")


@test
def hostile_proxy_requests_are_refused():
    cases = [
        ("overlong", "CONNECT @40000a.example:443 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", (431,)),
        ("long_host", "CONNECT @300a.example:443 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", (400,)),
        ("bad_host_chars", "CONNECT api.open!ai.com:443 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", (400,)),
        ("bad_host_chars2", "CONNECT api.openai.com%00:443 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", (400,)),
        ("no_port", "CONNECT api.openai.com HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", (400,)),
        ("huge_port", "CONNECT api.openai.com:99999 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", (400,)),
        ("port_zero", "CONNECT api.openai.com:0 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", (400,)),
        ("signed_port", "CONNECT api.openai.com:+443 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", (400,)),
        ("bad_ipv6", "CONNECT [zz::1]:443 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", (400,)),
        ("userinfo", "GET http://u:p@api.openai.com/v1 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", (400,)),
        ("origin_form", "GET /v1/models HTTP/1.1\\r\\nHost: api.openai.com\\r\\n\\r\\n", (400,)),
        ("connect_with_body", "CONNECT api.openai.com:443 HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 5\\r\\n\\r\\nhello",
         (400,)),
        ("bare_lf", "CONNECT api.openai.com:443 HTTP/1.1\nHost: x\n\n", (400,)),
    ]
    before = len(proxy_log())
    for name, head, statuses in cases:
        cbefore = conn_count()
        res = raw(head)
        check(res["status"] in statuses and res["closed"], "%s: answer %s" % (name, res))
        evs = refusals("proxy_bad_request", cbefore)
        check(evs and evs[-1]["uid"] == lib.NOBODY, "%s: refusal not audited" % name)
    # A client that says nothing gets a 408 after header_timeout, not a hang.
    t0 = time.time()
    res = raw("", "--silent", timeout=8)
    check(res["status"] == 408 and res["closed"] and time.time() - t0 < 7, "silent client: %s" % res)
    check(refusals("proxy_request_timeout"), "timeout not audited")
    check(len(proxy_log()) == before, "a hostile request reached the proxy: %s" % proxy_log()[before:])
    check(RIG.agent.proc.poll() is None, "the agent died")
    code, _, p = curl("https://api.openai.com/v1/chat/completions", CHAT, env=PROXY_ENV)
    check(code == 200, "agent unusable after the hostile requests: %s %s" % (code, p.stderr))


# ---- upstream_proxy: the agent's own egress through an authenticating proxy ----

UP_GOOD, UP_PROXY = "127.12.1.2", "127.12.1.3"


@test
def upstream_proxy_with_credentials():
    tmp = RIG.tmp
    auth = os.path.join(tmp, "proxy-auth")
    with open(auth, "w") as f:
        f.write("vigil:s3cret-pass\n")
    os.chmod(auth, 0o600)
    log = os.path.join(tmp, "upstream-proxy.jsonl")
    start_proxy("%s:3129" % UP_PROXY, log, require_auth="vigil:s3cret-pass")
    rig2 = rigmod.Rig("upproxy", {"api.openai.com": UP_GOOD, "other.example": UP_GOOD}, {"good": (UP_GOOD, "good", 0)},
                      endpoints=["api.openai.com"],
                      agent_extra="upstream_proxy: %s:3129\nupstream_proxy_auth: %s\n"
                      "unwatched_sni: passthrough\n" % (UP_PROXY, auth))
    rig2.agent.start()
    code, body, p = rig2.curl("https://api.openai.com/v1/chat/completions", CHAT)
    check(code == 200, "status %s %s %s" % (code, body[:200], p.stderr[-200:]))
    got = rig2.received()
    check(got and json.loads(got[-1]["body"]) == json.loads(CHAT), "the provider did not receive the request")
    seen = RIG.read_jsonl(log)
    check(seen and seen[-1]["target"] == "%s:443" % UP_GOOD and seen[-1]["auth"] and seen[-1]["user"] == "vigil"
          and seen[-1]["authorized"], "the upstream proxy log: %s" % seen)
    evs = rig2.request_events(lambda e: e["uid"] == lib.NOBODY)
    check(evs and evs[-1]["dst_ip"] == UP_GOOD, "request event %s" % evs[-1:])
    # Pass-through (an unwatched name on a target address) leaves through
    # the proxy too: direct egress is what such networks block.
    before = len(RIG.read_jsonl(log))
    code, body, p = rig2.curl("https://other.example/v1/models", extra=["-k"])
    check(code == 200, "pass-through status %s %s" % (code, p.stderr[-200:]))
    seen = RIG.read_jsonl(log)[before:]
    check([(r["target"], r["user"]) for r in seen] == [("%s:443" % UP_GOOD, "vigil")],
          "pass-through did not CONNECT through the proxy: %s" % seen)
    evs = rig2.agent.wait_events(lambda e: e.get("sni") == "other.example", kind="connection")
    check(evs and evs[-1]["action"] == "passthrough" and evs[-1]["bytes_down"] > 0 and not evs[-1].get("error"),
          "pass-through event %s" % evs[-1:])
    with open(rig2.agent.stderr_path) as f, open(rig2.agent.audit_log) as g:
        text = f.read() + g.read()
    check("s3cret" not in text and "dmlnaWw6czNjcmV0" not in text, "the proxy credentials were logged")


@test
def upstream_proxy_refusal_is_a_provider_shaped_502():
    # A proxy that wants credentials the agent does not have.
    log = os.path.join(RIG.tmp, "strict-proxy.jsonl")
    start_proxy("127.12.1.4:3130", log, require_auth="someone:else")
    rig3 = rigmod.Rig("upproxy407", {"api.openai.com": "127.12.1.5", "other.example": "127.12.1.5"},
                      {"good": ("127.12.1.5", "good", 0)},
                      endpoints=["api.openai.com"],
                      agent_extra="upstream_proxy: 127.12.1.4:3130\nunwatched_sni: passthrough\n")
    rig3.agent.start()
    code, body, p = rig3.curl("https://api.openai.com/v1/chat/completions", CHAT)
    check(code == 502, "status %s %s" % (code, body[:200]))
    err = json.loads(body)["error"]
    check(err["code"] == "upstream_proxy_refused" and "407" in err["message"], "error %s" % body)
    check(not rig3.received(), "the provider was reached")
    evs = rig3.request_events(lambda e: e.get("reason") == "upstream_proxy_refused")
    check(evs and evs[-1]["status"] == 502, "not audited: %s" % rig3.agent.events("request")[-1:])
    # A pass-through the proxy refuses: closed at once and audited, never relayed direct.
    t0 = time.time()
    code, body, p = rig3.curl("https://other.example/v1/models", extra=["-k"])
    check(code == 0 and time.time() - t0 < 10, "refused pass-through answered %s" % code)
    evs = rig3.agent.wait_events(lambda e: e.get("sni") == "other.example", kind="connection")
    check(evs and evs[-1]["error"] == "upstream proxy refused CONNECT", "pass-through refusal %s" % evs[-1:])
    check(not rig3.received(), "the provider was reached directly")


@test
def bad_auth_file_mode_refused_at_check():
    d = os.path.join(RIG.tmp, "check")
    os.makedirs(d, exist_ok=True)
    auth = os.path.join(d, "auth")
    with open(auth, "w") as f:
        f.write("u:p\n")
    os.chmod(auth, 0o640)
    cfg = os.path.join(d, "agent.yaml")
    with open(cfg, "w") as f:
        f.write("listen: 127.0.0.1:15999\nupstream_proxy: proxy.corp.example:3128\nupstream_proxy_auth: %s\n" % auth)
    p = subprocess.run([lib.AGENT, "--config", cfg, "--check"], capture_output=True, text=True)
    check(p.returncode == 2 and p.stderr.startswith("%s:3: " % cfg) and "chmod 600" in p.stderr,
          "exit %d: %s" % (p.returncode, p.stderr))
    os.chmod(auth, 0o600)
    p = subprocess.run([lib.AGENT, "--config", cfg, "--check"], capture_output=True, text=True)
    check(p.returncode == 0, "0600 file refused: %s" % p.stderr)
    with open(cfg, "w") as f:
        f.write("listen: 127.0.0.1:15999\nproxies: [\"proxy.corp.example:99999\"]\n")
    p = subprocess.run([lib.AGENT, "--config", cfg, "--check"], capture_output=True, text=True)
    check(p.returncode == 2 and p.stderr.startswith("%s:2: " % cfg), "bad proxies: accepted: %s" % p.stderr)


if __name__ == "__main__":
    lib.main()
