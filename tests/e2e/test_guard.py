"""End-to-end: the first-flight guard, through the real BPF programs.

The connect hook only redirects address:port pairs in the target set, and
addresses, ports and DNS are the client's to choose. Here a client in the
watched cgroup (user nobody) pins api.openai.com to an address the agent
never learned (curl --resolve), uses another port (8443), or names it in a
CONNECT line or a plain-HTTP Host header to an unlisted address: each first
flight is refused at once (the segment is dropped in the kernel, nothing
reaches the server, and the agent destroys the socket: ECONNABORTED in the
client within milliseconds), audited with the client's identity, and the
address:port joins the target set so the retry is intercepted. Traffic to
unwatched names passes untouched and costs nothing once its first data is
ACKed; with
first_flight_guard: off the pinned call goes through (the guard is what
refused it). The agent itself runs inside the watched cgroup, so its own
upstream connections (SNI api.openai.com to the pinned address) prove the
guard never touches them.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import lib
from lib import check, test
import rig as rigmod

PY = "/usr/bin/python3"
TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guard_tools.py")
PROVIDER, PINNED, SINK, EXAMPLE, BULK, OFF_PINNED = ("127.13.0.2", "127.13.0.3", "127.13.0.4", "127.13.0.5",
                                                     "127.13.0.6", "127.13.0.7")
EMAIL = "jane.doe@example.com"
METRICS_PORT = lib.free_port()
RIG = rigmod.Rig("guard", {"api.openai.com": PROVIDER, "example.org": EXAMPLE}, {"good": (PROVIDER, "good", 0)},
                 agent_extra="metrics: 127.0.0.1:%d\nquic: targets\n" % METRICS_PORT,
                 endpoints=["api.openai.com", '"*.openai.azure.com"'])
RIG.start_fake("pinned", PINNED)
RIG.start_fake("p8443", PROVIDER, port=8443)
RIG.start_fake("offpinned", OFF_PINNED)


def example_cert():
    """A self-signed certificate for example.org (the unwatched site)."""
    d = os.path.join(RIG.tmp, "example")
    os.makedirs(d)
    crt, key = os.path.join(d, "example.crt"), os.path.join(d, "example.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=example.org",
                    "-addext", "subjectAltName=DNS:example.org"], check=True, capture_output=True)
    os.chmod(d, 0o755)
    os.chmod(crt, 0o644)
    os.chmod(key, 0o644)
    RIG.pki["exampleorg_cert"], RIG.pki["exampleorg_key"] = crt, key
    return crt


EXAMPLE_CRT = example_cert()
RIG.start_fake("example", EXAMPLE, kind="exampleorg")

# An explicit proxy the agent's config does not list (tests/fakes/fake_proxy.py).
UNLISTED_PROXY = "127.71.0.2"
UNLISTED_PROXY_LOG = os.path.join(RIG.tmp, "unlisted-proxy.jsonl")
_p = lib.spawn([PY, os.path.join(lib.ROOT, "tests", "fakes", "fake_proxy.py"), "--listen", UNLISTED_PROXY + ":3128",
                "--log", UNLISTED_PROXY_LOG], hosts=RIG.hosts, stdout=subprocess.PIPE, text=True)
check("fake-proxy ready" in _p.stdout.readline(), "the unlisted fake proxy did not start")


def start_sink(host, port):
    log = os.path.join(RIG.tmp, "sink-%s-%d.jsonl" % (host, port))
    p = lib.spawn([PY, TOOLS, "sink", host, str(port), log], stdout=subprocess.PIPE, text=True)
    check(p.stdout.readline().strip() == "sink ready", "sink on %s:%d did not start" % (host, port))
    return log


# One port per refused case: a refusal puts its address:port in the target
# set, so the next connection there is redirected to the agent.
SINKS = {port: start_sink(SINK, port) for port in (3128, 3129, 3130, 3131, 8080, 8081, 8082, 8083, 8084, 8090, 4431, 4432, 4433, 4434, 4435, 4436, 4437, 4438, 4439, 4440, 4441, 4442)}
SINK_BULK = start_sink(BULK, 9000)
# The attacker tests of the egress classifier (a newer range).
SINK2 = "127.81.0.2"
SINKS2 = {port: start_sink(SINK2, port) for port in (4501, 4502, 4503, 4504, 4505, 4506, 4507, 4508)}


# The agent destroyed the refused socket: the client's next call on it
# fails, whichever it is: recv ECONNABORTED, shutdown ENOTCONN, send EPIPE.
REFUSED = (103, 107, 32)


def refused(res):
    """The client was told promptly: the refused socket was destroyed
    while it waited (never a hang until TCP's own timeout)."""
    return res.get("error") in REFUSED and res.get("ms", 0) < 3000


def sink_log(path):
    return RIG.read_jsonl(path)


def send(host, port, *chunks, cgroup=True):
    argv = [PY, TOOLS, "send", host, str(port)] + [c.encode("latin-1").hex() for c in chunks]
    p = lib.run(argv, cgroup=RIG.cg.path if cgroup else None, uid=lib.NOBODY, timeout=30)
    check(p.returncode == 0 and p.stdout.strip(), "client failed: %s %s" % (p.stdout, p.stderr))
    return json.loads(p.stdout.strip().splitlines()[-1])


def chat(content):
    return json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]})


def refusals(pred=lambda e: True, timeout=5):
    return RIG.agent.wait_events(lambda e: e.get("reason") == "first_flight" and pred(e), kind="connection",
                                 timeout=timeout)


def metrics():
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % METRICS_PORT, timeout=5).read().decode()
    return dict(l.rsplit(" ", 1) for l in text.splitlines() if l and not l.startswith("#"))


def check_refused_then_intercepted(url, resolve, fake, dst_ip, dst_port, tag):
    """curl pinned somewhere the agent does not capture: refused at once,
    audited, and the retry lands in the agent (redacted on its way)."""
    extra = ["--resolve", resolve] if resolve else []
    t0 = time.time()
    code, _, p = RIG.curl(url, chat("first try %s, mail %s" % (tag, EMAIL)), extra=extra)
    took = time.time() - t0
    check(code == 0 and p.returncode != 0, "the first call was not refused: HTTP %s, curl exit %s, %s" %
          (code, p.returncode, p.stderr.strip()[-300:]))
    check(took < 5, "the refusal took %.1f s (must be prompt, not a timeout)" % took)
    check(not RIG.received(fake), "the provider at %s:%d received the refused call: %s" %
          (dst_ip, dst_port, RIG.received(fake)))
    evs = refusals(lambda e: e.get("dst_ip") == dst_ip and e.get("dst_port") == dst_port)
    check(evs, "no first_flight refusal audited for %s:%d: %s" % (dst_ip, dst_port, RIG.agent.events()[-3:]))
    ev = evs[-1]
    check(ev["action"] == "block" and ev["sni"] == "api.openai.com", "refusal event: %s" % ev)
    # uid, pid and comm come from the kernel at the refusal; the executable
    # is read from /proc afterwards and is gone when curl has already exited
    # (it does at once when its socket is destroyed): present, it must be curl's.
    check(ev["uid"] == lib.NOBODY and ev["comm"] == "curl" and ev.get("pid") and
          (ev.get("exe") is None or ev["exe"].endswith("curl")),
          "the refusal does not name the client (uid %s, pid %s, comm %s, exe %s)" %
          (ev["uid"], ev.get("pid"), ev["comm"], ev.get("exe")))
    deadline = time.time() + 3
    while True:
        code, out, p = RIG.curl(url, chat("retry %s, mail %s" % (tag, EMAIL)), extra=extra)
        if code == 200 or time.time() > deadline:
            break
        time.sleep(0.1)
    check(code == 200, "the retry failed: HTTP %s %s; agent: %s" % (code, p.stderr.strip()[-300:],
                                                                  RIG.agent.log_tail(6)))
    got = RIG.received(fake)
    check(got and all(EMAIL not in r["body"] for r in got), "the provider saw the raw secret: %s" % got)
    check("[EMAIL_1]" in got[-1]["body"], "the retry was not inspected: %s" % got[-1]["body"])
    evs = RIG.request_events(lambda e: e.get("dst_ip") == dst_ip and e.get("dst_port") == dst_port)
    check(evs and evs[-1]["uid"] == lib.NOBODY and evs[-1]["action"] == "redact",
          "no request event for the intercepted retry: %s" % evs[-1:])


@test
def agent_starts_inside_the_watched_cgroup():
    RIG.agent.start()
    # The agent's own upstream sockets are then in the cgroup too: the
    # guard must leave them alone (the retries below depend on it).
    with open(os.path.join(RIG.cg.path, "cgroup.procs"), "w") as f:
        f.write(str(RIG.agent.proc.pid))
    out = subprocess.run(["bpftool", "cgroup", "show", RIG.cg.path], capture_output=True, text=True).stdout
    check("vigil_guard_egress" in out, "guard egress program not attached: %s" % out)


@test
def pinned_address_refused_then_intercepted():
    check_refused_then_intercepted("https://api.openai.com/v1/chat/completions", "api.openai.com:443:" + PINNED,
                                   "pinned", PINNED, 443, "pinned")


@test
def other_port_refused_then_intercepted():
    check_refused_then_intercepted("https://api.openai.com:8443/v1/chat/completions", None, "p8443",
                                   PROVIDER, 8443, "8443")


@test
def connect_line_refused():
    for port, host in ((3128, "api.openai.com:443"), (3129, "API.OpenAI.com.:443")):
        res = send(SINK, port, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (host, host))
        check(refused(res), "CONNECT %s not refused at once: %s" % (host, res))
        time.sleep(0.2)
        got = sink_log(SINKS[port])
        check(all(g["n"] == 0 for g in got), "the proxy received bytes of a refused CONNECT: %s" % got)
        evs = refusals(lambda e: e.get("dst_port") == port)
        check(evs and evs[-1]["uid"] == lib.NOBODY and evs[-1]["sni"] == "api.openai.com" and
              evs[-1]["comm"].startswith("python3"), "CONNECT refusal not audited with identity: %s" % evs)
    # An IPv6 socket reaching an IPv4 address (v4-mapped) goes through the same check.
    res = send("::ffff:" + SINK, 3131, "CONNECT api.openai.com:443 HTTP/1.1\r\n\r\n")
    check(refused(res), "CONNECT from an IPv6 socket not refused: %s" % res)
    evs = refusals(lambda e: e.get("dst_port") == 3131)
    check(evs and evs[-1]["dst_ip"] == SINK, "v4-mapped refusal not audited with the IPv4 destination: %s" % evs)
    # Another host through a proxy address the guard never refused is untouched.
    res = send(SINK, 3130, "CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n")
    check(res.get("reply") == "ok", "CONNECT to an unwatched host broken: %s" % res)


@test
def unlisted_proxy_refused_then_used_as_a_proxy():
    """curl through an explicit proxy that proxies: does not list: the
    CONNECT naming api.openai.com is refused and audited; the proxy then
    joins the agent's proxy set (not the target set, where a CONNECT line
    would meet the TLS classifier and every proxied call would fail): the
    retry is intercepted through the real proxy, and a CONNECT to another
    host through it is forwarded untouched."""
    proxy = ["--proxy", "http://%s:3128" % UNLISTED_PROXY]
    code, _, p = RIG.curl("https://api.openai.com/v1/chat/completions", chat("via proxy, mail %s" % EMAIL),
                          extra=proxy)
    check(code == 0 and p.returncode != 0, "the CONNECT through the unlisted proxy was not refused: HTTP %s, %s" %
          (code, p.stderr.strip()[-300:]))
    check(not RIG.read_jsonl(UNLISTED_PROXY_LOG), "the proxy received the refused CONNECT: %s" %
          RIG.read_jsonl(UNLISTED_PROXY_LOG))
    evs = refusals(lambda e: e.get("dst_ip") == UNLISTED_PROXY and e.get("dst_port") == 3128)
    check(evs and evs[-1]["sni"] == "api.openai.com" and evs[-1]["uid"] == lib.NOBODY,
          "CONNECT refusal not audited with identity: %s" % evs)
    before = len(RIG.received())
    deadline = time.time() + 3
    while True:
        code, out, p = RIG.curl("https://api.openai.com/v1/chat/completions", chat("retry via proxy, mail %s" % EMAIL),
                                extra=proxy)
        if code == 200 or time.time() > deadline:
            break
        time.sleep(0.1)
    check(code == 200, "the retry through the proxy failed: HTTP %s %s; agent: %s" %
          (code, p.stderr.strip()[-300:], RIG.agent.log_tail(6)))
    got = RIG.received()[before:]
    check(got and EMAIL not in got[-1]["body"] and "[EMAIL_1]" in got[-1]["body"],
          "the retry through the proxy was not inspected: %s" % got)
    evs = RIG.request_events(lambda e: e.get("dst_ip") == UNLISTED_PROXY and e.get("dst_port") == 3128)
    check(evs and evs[-1]["uid"] == lib.NOBODY and evs[-1]["action"] == "redact",
          "no request event for the proxied retry: %s" % evs[-1:])
    log = RIG.read_jsonl(UNLISTED_PROXY_LOG)
    check(any(r.get("method") == "CONNECT" and r.get("target") == "api.openai.com:443" for r in log),
          "the intercepted call did not go through the real proxy: %s" % log)
    # another host through the same proxy: forwarded to it, byte for byte
    body = os.urandom(24).hex()
    before = len(RIG.received("example"))
    p = lib.run(["curl", "-sS", "--max-time", "10", "--cacert", EXAMPLE_CRT, "-o", "-", "-H",
                 "Content-Type: application/json", "--data-binary", body] + proxy +
                ["https://example.org/v1/embeddings"], cgroup=RIG.cg.path, uid=lib.NOBODY, hosts=RIG.hosts, timeout=30)
    check(p.returncode == 0, "CONNECT example.org through the learned proxy failed: %s" % p.stderr.strip()[-300:])
    got = RIG.received("example")[before:]
    check(len(got) == 1 and got[0]["body"] == body, "example.org did not get the request untouched: %s" % got)
    check(any(r.get("method") == "CONNECT" and r.get("target") == "example.org:443"
              for r in RIG.read_jsonl(UNLISTED_PROXY_LOG)), "example.org did not go through the real proxy")


@test
def connect_line_to_a_tls_server_keeps_it_tls():
    """Anyone in the cgroup can send a CONNECT line to any server: the
    address:port then joins the learned proxies, but a client of that
    server whose first bytes are TLS is classified by its SNI as on any
    target address (here the default unwatched_sni: intercept), not
    refused as a bad proxy request."""
    res = send(SINK, 4442, "CONNECT api.openai.com:443 HTTP/1.1\r\n\r\n")
    check(refused(res), "CONNECT to the TLS server not refused: %s" % res)
    deadline = time.time() + 3
    while "proxy %s port 4442 added" % SINK not in RIG.agent.log_tail(200) and time.time() < deadline:
        time.sleep(0.05)
    check("proxy %s port 4442 added" % SINK in RIG.agent.log_tail(200), "the address did not join the learned proxies: %s"
          % RIG.agent.log_tail(5))
    res = send(SINK, 4442, client_hello("example.org").decode("latin-1"))
    check(res.get("reply", "").startswith("\x16\x03"), "the TLS client was not answered in TLS: %s" % str(res)[:200])
    evs = RIG.agent.wait_events(lambda e: e.get("dst_port") == 4442 and e.get("sni") == "example.org",
                                kind="connection")
    check(evs and evs[-1]["action"] == "intercept" and evs[-1]["uid"] == lib.NOBODY,
          "the TLS client was not classified by its SNI: %s" % evs[-1:])


@test
def plain_http_host_refused():
    cases = [
        ("GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\n\r\n",),
        # the head split over writes: the kernel holds it until the Host line is whole
        ("POST /v1/chat HTTP/1.1\r\nUser-Agent: x\r\nHo", "st: api.openai.com:80\r\n\r\n{}"),
        # an absolute-form target names the host even when Host does not
        ("GET http://user@api.openai.com/v1/models HTTP/1.1\r\nHost: example.org\r\n\r\n",),
        # a second Host header
        ("GET / HTTP/1.1\r\nHost: example.org\r\nhost:\tapi.openai.com\r\n\r\n",),
        # empty lines before the request line (servers skip them)
        ("\r\n\r\nCONNECT api.openai.com:443 HTTP/1.1\r\n\r\n",),
    ]
    for port, chunks in zip((8080, 8081, 8082, 8083, 8084), cases):
        res = send(SINK, port, *chunks)
        check(refused(res), "plain HTTP %r not refused at once: %s" % ("".join(chunks)[:60], res))
        time.sleep(0.2)
        got = sink_log(SINKS[port])
        check(all(g["n"] == 0 for g in got), "the server received a refused request: %s" % got)
        check(refusals(lambda e: e.get("dst_port") == port), "plain-HTTP refusal on port %d not audited" % port)
    res = send(SINK, 8090, "GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
    check(res.get("reply") == "ok", "plain HTTP to an unwatched host broken: %s" % res)
    got = sink_log(SINKS[8090])[-1]
    check(got["head"] == "GET / HTTP/1.1\r\nHost: example.org\r\n\r\n", "request altered: %r" % got["head"])


def client_hello(sni):
    p = subprocess.run([PY, TOOLS, "hello", sni], capture_output=True, text=True, check=True)
    return bytes.fromhex(p.stdout.strip())


@test
def other_text_protocols_are_not_held():
    """Only HTTP/1.x request lines are parsed and, while incomplete, held:
    an SMTP, FTP or Redis client that waits for an answer after one line
    must get its bytes through at once, intact."""
    # ("PUTS" shares a prefix with "PUT ": decided at its fourth byte)
    for line in ("EHLO mail.example.org\r\n", "GET counter\r\n", "USER anonymous\r\n", "PUTS k v\r\n"):
        before = len(sink_log(SINKS[4441]))
        res = send(SINK, 4441, line)
        check(res.get("reply") == "ok", "%r broken: %s" % (line, res))
        got = sink_log(SINKS[4441])[before:]
        check(got and got[-1]["head"] == line, "%r not delivered intact: %s" % (line, got))


@test
def split_and_fragmented_client_hellos():
    """The attacker's variants of a ClientHello: written in two pieces (the
    kernel holds the first until the hello is whole), or split over two TLS
    records (not read: refused rather than let through unread)."""
    hello = client_hello("api.openai.com")
    res = send(SINK, 4431, hello[:20].decode("latin-1"), hello[20:].decode("latin-1"))
    check(refused(res), "a ClientHello in two writes was not refused: %s" % res)
    evs = refusals(lambda e: e.get("dst_port") == 4431)
    check(evs and evs[-1]["sni"] == "api.openai.com", "split hello refusal not audited: %s" % evs)
    # one handshake message, two records
    body = hello[5:]
    frag = b"\x16\x03\x01" + len(body[:40]).to_bytes(2, "big") + body[:40] + \
        b"\x16\x03\x01" + len(body[40:]).to_bytes(2, "big") + body[40:]
    res = send(SINK, 4432, frag.decode("latin-1"))
    check(refused(res), "a ClientHello over two records was not refused: %s" % res)
    evs = RIG.agent.wait_events(lambda e: e.get("reason") == "first_flight_unparsed" and e.get("dst_port") == 4432,
                                kind="connection")
    check(evs and evs[-1]["action"] == "block" and evs[-1]["uid"] == lib.NOBODY,
          "unreadable hello refusal not audited: %s" % evs)
    time.sleep(0.2)
    for port in (4431, 4432):
        check(all(g["n"] == 0 for g in sink_log(SINKS[port])), "bytes of a refused hello reached port %d" % port)
    # an unwatched hello in two writes passes whole, byte for byte
    other = client_hello("example.org")
    res = send(SINK, 4433, other[:20].decode("latin-1"), other[20:].decode("latin-1"))
    check(res.get("reply") == "ok", "an unwatched split hello was broken: %s" % res)
    got = sink_log(SINKS[4433])
    check(got and got[-1]["n"] == len(other) and got[-1]["head"] == other[:256].decode("latin-1"),
          "an unwatched hello did not arrive intact: %s" % got)
    # a wildcard entry matches below it, not the bare suffix (as the agent's own matching)
    hello = client_hello("x.y.openai.azure.com")
    res = send(SINK, 4434, hello.decode("latin-1"))
    check(refused(res), "a name under a *.suffix entry was not refused: %s" % res)
    res = send(SINK, 4435, client_hello("openai.azure.com").decode("latin-1"))
    check(res.get("reply") == "ok", "the bare suffix of a *.suffix entry was refused: %s" % res)


def tfo(port, data, mode=""):
    p = lib.run([PY, TOOLS, "tfo", SINK, str(port), data.encode().hex()] + ([mode] if mode else []),
                cgroup=RIG.cg.path, uid=lib.NOBODY, timeout=30)
    check(p.returncode == 0 and p.stdout.strip(), "TFO client failed: %s %s" % (p.stdout, p.stderr))
    return json.loads(p.stdout.strip().splitlines()[-1])


@test
def tcp_fast_open_refused():
    """Fast Open data leaves with (or right behind) the SYN, inside the
    connect call, before the guard can read it: refused, audited."""
    for port, mode in ((4438, ""), (4439, "defer")):
        res = tfo(port, "CONNECT api.openai.com:443 HTTP/1.1\r\n\r\n", mode)
        check(res.get("error") == 95, "TCP Fast Open (%s) not refused with EOPNOTSUPP: %s" % (mode or "sendto", res))
        evs = RIG.agent.wait_events(lambda e: e.get("reason") == "first_flight_tfo" and e.get("dst_port") == port,
                                    kind="connection")
        check(evs and evs[-1]["uid"] == lib.NOBODY and evs[-1]["action"] == "block",
              "Fast Open refusal not audited with identity: %s" % evs)
        time.sleep(0.2)
        check(all(g["n"] == 0 for g in sink_log(SINKS[port])), "Fast Open data reached the server")


def drip(port, delay_ms, chunks):
    argv = [PY, TOOLS, "drip", SINK2, str(port), str(delay_ms)] + [c.hex() for c in chunks]
    p = lib.run(argv, cgroup=RIG.cg.path, uid=lib.NOBODY, timeout=30)
    check(p.returncode == 0 and p.stdout.strip(), "client failed: %s %s" % (p.stdout, p.stderr))
    return json.loads(p.stdout.strip().splitlines()[-1])


def held_count():
    return guard_counter(metrics(), "held")


@test
def client_hello_dripped_over_many_segments():
    """A ClientHello written in five pieces 250 ms apart, each its own
    segment (TCP_NODELAY): the kernel holds the head of the stream, which
    grows with each write, through TCP's own probes of the held head (the
    first comes after 200 ms), until the hello is whole; then refuses it.
    Nothing reaches the server. An unwatched hello dripped the same way
    arrives whole and intact."""
    held0 = held_count()
    hello = client_hello("api.openai.com")
    cut = [0, 3, 40, 120, 200, len(hello)]
    res = drip(4501, 250, [hello[cut[i]:cut[i + 1]] for i in range(5)])
    check(res.get("error") in REFUSED, "a dripped ClientHello was not refused: %s" % res)
    evs = refusals(lambda e: e.get("dst_ip") == SINK2 and e.get("dst_port") == 4501)
    check(evs and evs[-1]["sni"] == "api.openai.com" and evs[-1]["uid"] == lib.NOBODY,
          "dripped hello refusal not audited: %s" % evs)
    check(held_count() - held0 >= 4, "the head was not held between the writes: %d holds" % (held_count() - held0))
    time.sleep(0.2)
    check(all(g["n"] == 0 for g in sink_log(SINKS2[4501])), "bytes of a dripped hello reached the server: %s" %
          sink_log(SINKS2[4501]))
    other = client_hello("example.org")
    res = drip(4502, 250, [other[cut[i]:min(cut[i + 1], len(other))] for i in range(5)])
    check(res.get("reply") == "ok", "an unwatched dripped hello was broken: %s" % res)
    got = sink_log(SINKS2[4502])
    check(got and got[-1]["n"] == len(other) and got[-1]["head"] == other[:256].decode("latin-1"),
          "an unwatched dripped hello did not arrive intact: %s" % got)


@test
def refused_segment_retransmissions_dropped():
    """While nobody destroys a refused socket (the agent stopped), TCP
    keeps resending its queued first flight: every resend is dropped too,
    nothing reaches the server; once the agent runs again the client gets
    its error."""
    m0 = metrics()
    RIG.agent.proc.send_signal(signal.SIGSTOP)
    try:
        argv = [PY, TOOLS, "send", SINK2, "4503", ("CONNECT api.openai.com:443 HTTP/1.1\r\n\r\n").encode().hex()]
        client = lib.spawn(argv, cgroup=RIG.cg.path, uid=lib.NOBODY, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        time.sleep(2.0)         # TCP probes the queued segment after ~200 ms, then backs off
        check(client.poll() is None, "the client finished while the agent was stopped")
    finally:
        RIG.agent.proc.send_signal(signal.SIGCONT)
    out, err = client.communicate(timeout=15)
    check(out.strip(), "the refused client printed nothing: %r" % err)
    res = json.loads(out.strip().splitlines()[-1])
    check(res.get("error") in REFUSED, "the refused client did not get an error once the agent ran: %s" % res)
    dropped = guard_counter(metrics(), "dropped") - guard_counter(m0, "dropped")
    check(dropped >= 1, "no resend of the refused segment was seen and dropped (dropped %d)" % dropped)
    time.sleep(0.2)
    got = sink_log(SINKS2[4503])
    check(got and all(g["n"] == 0 for g in got), "the server received a resent refused segment: %s" % got)


@test
def tfo_client_hello_refused():
    """A ClientHello for a watched name in the SYN (TCP Fast Open, both
    forms): refused in connect() as any Fast Open the guard runs for;
    nothing reaches the server."""
    hello = client_hello("api.openai.com").decode("latin-1")
    for port, mode in ((4504, ""), (4505, "defer")):
        p = lib.run([PY, TOOLS, "tfo", SINK2, str(port), hello.encode("latin-1").hex()] + ([mode] if mode else []),
                    cgroup=RIG.cg.path, uid=lib.NOBODY, timeout=30)
        res = json.loads(p.stdout.strip().splitlines()[-1])
        check(res.get("error") == 95, "a ClientHello in a Fast Open SYN (%s) was not refused: %s" %
              (mode or "sendto", res))
        time.sleep(0.2)
        check(all(g["n"] == 0 for g in sink_log(SINKS2[port])), "Fast Open hello data reached the server")


@test
def many_refused_at_once():
    """200 connections established first, then each sends a ClientHello
    for a watched name at the same instant: every one is refused and
    destroyed (none answered, none left waiting), each refusal audited,
    nothing reaches the server."""
    n = 200
    hello = client_hello("api.openai.com")
    p = lib.run([PY, TOOLS, "many", SINK2, "4506", str(n), hello.hex()], cgroup=RIG.cg.path, uid=lib.NOBODY,
                timeout=60)
    check(p.returncode == 0, "the many-connection client failed: %s" % p.stderr[-300:])
    res = json.loads(p.stdout.strip().splitlines()[-1])
    errs = sum(v for k, v in res["errors"].items() if int(k) in REFUSED)
    check(errs == n and res["answers"] == 0 and res["pending"] == 0,
          "of %d refused connections: %s" % (n, res))
    check(res["slowest_ms"] < 5000, "the slowest refusal took %.0f ms" % res["slowest_ms"])
    deadline = time.time() + 10
    while len(refusals(lambda e: e.get("dst_ip") == SINK2 and e.get("dst_port") == 4506, timeout=0.5)) < n and \
            time.time() < deadline:
        time.sleep(0.2)
    evs = refusals(lambda e: e.get("dst_ip") == SINK2 and e.get("dst_port") == 4506, timeout=0.5)
    check(len(evs) == n, "%d refusals audited for %d refused connections" % (len(evs), n))
    time.sleep(0.3)
    got = sink_log(SINKS2[4506])
    check(len(got) == n and all(g["n"] == 0 for g in got), "the server received bytes of refused connections: %s" %
          [g for g in got if g["n"]][:3])


@test
def socket_bound_to_a_device_refused_at_once():
    """A client binds its socket to the loopback device (SO_BINDTODEVICE,
    allowed unprivileged): a socket lookup without the device would not find
    it, and the client would wait for TCP's own timeout. Refused at once."""
    argv = [PY, TOOLS, "sendbound", "lo", SINK2, "4508", client_hello("api.openai.com").hex()]
    p = lib.run(argv, cgroup=RIG.cg.path, uid=lib.NOBODY, timeout=30)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    check(refused(res), "a refused socket bound to a device was not told at once: %s" % res)
    time.sleep(0.2)
    check(all(g["n"] == 0 for g in sink_log(SINKS2[4508])), "bytes of the bound socket reached the server")


@test
def native_ipv6_refused():
    """The same refusal over IPv6 (its own header walk in the kernel, an
    AF_INET6 socket destroyed by its IPv6 4-tuple)."""
    port = lib.free_port("::1")
    log = start_sink("::1", port)
    hello = client_hello("api.openai.com")
    res = send("::1", port, hello.decode("latin-1"))
    check(refused(res), "a ClientHello over IPv6 was not refused at once: %s" % res)
    evs = refusals(lambda e: e.get("dst_ip") == "::1" and e.get("dst_port") == port)
    check(evs and evs[-1]["sni"] == "api.openai.com" and evs[-1]["uid"] == lib.NOBODY,
          "IPv6 refusal not audited: %s" % evs)
    time.sleep(0.2)
    check(all(g["n"] == 0 for g in sink_log(log)), "bytes of a refused IPv6 hello reached the server")


@test
def unwatched_https_unaffected():
    body = os.urandom(48).hex() * 40
    want = hashlib.sha256(body.encode()).hexdigest()
    before = len(RIG.received("example"))
    for i in range(10):
        p = lib.run(["curl", "-sS", "--max-time", "10", "--cacert", EXAMPLE_CRT, "-o", "-", "-H",
                     "Content-Type: application/json", "--data-binary", body,
                     "https://example.org/v1/embeddings"], cgroup=RIG.cg.path, uid=lib.NOBODY, hosts=RIG.hosts,
                    timeout=30)
        check(p.returncode == 0, "HTTPS to example.org failed on try %d: %s" % (i, p.stderr.strip()))
    got = RIG.received("example")[before:]
    check(len(got) == 10, "example.org server saw %d of 10 requests" % len(got))
    check(all(hashlib.sha256(g["body"].encode()).hexdigest() == want for g in got),
          "a request to an unwatched site was altered")
    check(not refusals(lambda e: e.get("dst_ip") == EXAMPLE, timeout=0.3), "an unwatched site was refused")
    check(not RIG.agent.events("request") or all(e.get("dst_ip") != EXAMPLE for e in RIG.agent.events("request")),
          "an unwatched site was intercepted")


def bulk(cgroup):
    p = lib.run([PY, TOOLS, "bulk", BULK, "9000", "64"], cgroup=RIG.cg.path if cgroup else None, uid=lib.NOBODY,
                timeout=120)
    check(p.returncode == 0, "bulk upload failed: %s" % p.stderr.strip()[-300:])
    res = json.loads(p.stdout.strip().splitlines()[-1])
    check(res["reply"] == "ok", "bulk upload not answered: %s" % res)
    return res["mib_s"]


def guard_counter(m, outcome):
    return int(m['vigil_agent_guard_segments_total{outcome="%s"}' % outcome])


@test
def large_upload_unslowed_and_read_once():
    m0 = metrics()
    inside, outside = [], []
    for _ in range(3):          # interleaved: the machine's speed drifts
        inside.append(bulk(True))
        outside.append(bulk(False))
    ratio = max(inside) / max(outside)
    print("bulk 64 MiB: in the guarded cgroup %.0f MiB/s, outside %.0f MiB/s (ratio %.2f)" %
          (max(inside), max(outside), ratio), flush=True)
    # Loopback throughput on a shared 2-core machine swings by 2x between
    # runs: this only catches a gross slowdown. The per-byte cost itself is
    # ruled out below (only the head of each stream is read) and measured
    # by tests/bench/guard_bench.py against the guard off.
    check(ratio > 0.4, "uploads in the guarded cgroup are slower: %.0f vs %.0f MiB/s" % (max(inside), max(outside)))
    m1 = metrics()
    inspected = guard_counter(m1, "inspected") - guard_counter(m0, "inspected")
    # one read per connection (a retransmitted head may be read again),
    # never one per segment of the 3 x 64 MiB
    check(3 <= inspected <= 12, "bulk connections: %d first-flight reads for 3 uploads" % inspected)
    check(guard_counter(m1, "held") == guard_counter(m0, "held") and
          guard_counter(m1, "dropped") == guard_counter(m0, "dropped"), "a bulk upload was held or dropped")


@test
def reload_updates_the_guards_names():
    with open(RIG.agent.config) as f:
        text = f.read()
    old = 'endpoints: [api.openai.com, "*.openai.azure.com"]'
    check(old in text, "unexpected agent config: %s" % text)
    with open(RIG.agent.config, "w") as f:
        f.write(text.replace(old, "endpoints: [api.openai.com, api.reload.test]"))
    RIG.agent.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "configuration reloaded" not in RIG.agent.log_tail(50) and time.time() < deadline:
        time.sleep(0.05)
    check("configuration reloaded" in RIG.agent.log_tail(50), "no reload: %s" % RIG.agent.log_tail(5))
    res = send(SINK, 4436, "CONNECT api.reload.test:443 HTTP/1.1\r\n\r\n")
    check(refused(res), "a name added by reload is not guarded: %s" % res)
    res = send(SINK, 4437, client_hello("x.openai.azure.com").decode("latin-1"))
    check(res.get("reply") == "ok", "a name removed by reload is still refused: %s" % res)


UDP_PROBE = """
import json, socket, sys
res = {}
for how in ("connect", "sendto"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if how == "connect":
            s.connect((sys.argv[1], 443)); s.send(b"q")
        else:
            s.sendto(b"q", (sys.argv[1], 443))
        res[how] = 0
    except OSError as e:
        res[how] = e.errno
    s.close()
print(json.dumps(res))
"""


@test
def quic_targets_refuses_udp_443_to_targets_only():
    """quic: targets (this rig's agent): UDP/443 to the pinned provider
    address (a target) is refused, to an address that is not one it goes
    out (the site chose to keep other QUIC)."""
    out = {}
    for name, host in (("target", PROVIDER), ("other", EXAMPLE)):
        p = lib.run([PY, "-c", UDP_PROBE, host], cgroup=RIG.cg.path)
        out[name] = json.loads(p.stdout)
    check(out["target"] == {"connect": 111, "sendto": 111}, "UDP/443 to a target: %s" % out["target"])
    check(out["other"] == {"connect": 0, "sendto": 0}, "UDP/443 to a non-target with quic: targets: %s" % out["other"])


@test
def guard_off_lets_the_pinned_call_through():
    a = lib.Agent(RIG.tmp, RIG.cg.path, name="guardoff", extra="""ca_cert: %s
ca_key: %s
upstream_ca: %s
target_addresses: [%s]
endpoints: [api.openai.com]
first_flight_guard: off
""" % (RIG.ca, os.path.join(RIG.ca_dir, "intercept.key"), RIG.pki["ca_cert"], PROVIDER))
    check(RIG.agent.stop() == 0, "the guarded agent did not exit 0 (a sanitizer report?): %s" % RIG.agent.log_tail(5))
    a.start()
    try:
        out = subprocess.run(["bpftool", "cgroup", "show", RIG.cg.path], capture_output=True, text=True).stdout
        check("vigil_guard" not in out, "guard attached with first_flight_guard: off: %s" % out)
        code, _, p = RIG.curl("https://api.openai.com/v1/chat/completions", chat("unguarded, mail %s" % EMAIL),
                              extra=["--cacert", RIG.pki["ca_cert"], "--resolve", "api.openai.com:443:" + OFF_PINNED])
        check(code == 200, "the pinned call failed with the guard off: %s %s" % (code, p.stderr.strip()[-300:]))
        got = RIG.received("offpinned")
        check(got and EMAIL in got[-1]["body"], "with the guard off the call should go direct, raw: %s" % got)
        res = tfo(4440, "GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
        check(res.get("reply") == "ok", "TCP Fast Open refused with the guard off: %s" % res)
    finally:
        check(a.stop() == 0, "guard-off agent exit status")


@test
def bad_guard_key_names_file_and_line():
    bad = os.path.join(RIG.tmp, "bad-guard.yaml")
    with open(bad, "w") as f:
        f.write("listen: 127.0.0.1:15001\nfirst_flight_guard: sometimes\n")
    p = subprocess.run([lib.AGENT, "--check", "--config", bad], capture_output=True, text=True)
    check(p.returncode == 2 and p.stderr.startswith(bad + ":2: ") and "on or off" in p.stderr,
          "bad first_flight_guard: exit %d %r" % (p.returncode, p.stderr))


if __name__ == "__main__":
    lib.main()
