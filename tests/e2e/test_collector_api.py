"""End-to-end: the collector's API plays against hostile HTTP clients.

The real vigil-collector, raw TLS sockets. The API parses requests with
the project's HTTP/1.1 parser (common/http.c): every malformed or oversized
request gets the right 4xx and closes that connection only; a client that
sends its head one byte at a time, or not at all, holds nothing that other
clients need.

Listens on 127.87.0.0/16 only.
"""
import signal
import socket
import ssl
import tempfile
import threading
import time

import lib
from lib import check, test
from collector_tools import ANALYST_T, Collector, fill_store

HOST = "127.87.0.1"
TMP = tempfile.mkdtemp(prefix="vigil-colapi-")
COL = None
IDLE_CLIENTS = 40


def col():
    global COL
    if COL is None:
        COL = Collector(TMP, host=HOST, name="api")
        COL.start()
    return COL


def tls(c, timeout=10):
    ctx = ssl.create_default_context(cafile=c.ca)
    raw = socket.create_connection((c.host, c.api_port), timeout)
    return ctx.wrap_socket(raw, server_hostname=c.host)


def read_all(s):
    out = b""
    while True:
        try:
            b = s.recv(65536)
        except (ssl.SSLError, OSError):
            break
        if not b:
            break
        out += b
    return out


def exchange(raw):
    """Sends raw bytes on a new connection, returns everything the server
    sent before it closed."""
    c = col()
    s = tls(c)
    try:
        s.sendall(raw)
    except OSError:
        pass            # refused mid-send: the answer is still to be read
    resp = read_all(s)
    s.close()
    return resp


def status(resp):
    try:
        return int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def still_serves():
    code, body = col().http("GET", "/api/v1/whoami", ANALYST_T)
    check(code == 200 and "soc-analyst" in body, "a normal request after the attack: %d %s" % (code, body[:200]))


GOOD = "GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n" % ANALYST_T


@test
def api_well_formed_request_answered():
    resp = exchange((GOOD + "\r\n").encode())
    check(status(resp) == 200 and b"soc-analyst" in resp, "plain request: %r" % resp[:300])


@test
def api_oversized_head_431():
    resp = exchange((GOOD + "X-Pad: %s\r\n\r\n" % ("a" * 20000)).encode())
    check(status(resp) == 431, "20 kB header: %r" % resp[:200])
    resp = exchange((GOOD + "".join("X-H%d: v\r\n" % i for i in range(100)) + "\r\n").encode())
    check(status(resp) == 431, "100 headers: %r" % resp[:200])
    still_serves()


@test
def api_obs_fold_and_bare_lf_400():
    resp = exchange((GOOD + "X-Folded: a\r\n b\r\n\r\n").encode())
    check(status(resp) == 400, "obs-fold: %r" % resp[:200])
    resp = exchange(GOOD.replace("\r\n", "\n").encode() + b"\n")
    check(status(resp) == 400, "bare LF line ends: %r" % resp[:200])
    resp = exchange((GOOD + "X-Nul: a\x00b\r\n\r\n").encode())
    check(status(resp) == 400, "NUL in a header: %r" % resp[:200])
    resp = exchange((GOOD + "Bad Name: v\r\n\r\n").encode())
    check(status(resp) == 400, "space in a field name: %r" % resp[:200])
    still_serves()


@test
def api_duplicate_content_length_and_auth_400():
    resp = exchange((GOOD + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!").encode())
    check(status(resp) == 400, "two different Content-Length: %r" % resp[:200])
    resp = exchange((GOOD + "Content-Length: 5, 5\r\n\r\nhello").encode())
    check(status(resp) == 400, "a Content-Length list: %r" % resp[:200])
    resp = exchange((GOOD + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").encode())
    check(status(resp) == 400, "Content-Length with Transfer-Encoding: %r" % resp[:200])
    resp = exchange((GOOD + "Authorization: Bearer nope\r\n\r\n").encode())
    check(status(resp) == 400, "two Authorization headers: %r" % resp[:200])
    resp = exchange((GOOD + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").encode())
    check(status(resp) == 411, "chunked body: %r" % resp[:200])
    still_serves()


@test
def api_limits_version_and_target():
    resp = exchange((GOOD + "Content-Length: 100000000\r\n\r\n").encode())
    check(status(resp) == 413, "a 100 MB body declared: %r" % resp[:200])
    resp = exchange(GOOD.replace("HTTP/1.1", "HTTP/2.0").encode() + b"\r\n")
    check(status(resp) == 505, "HTTP/2.0 in the request line: %r" % resp[:200])
    resp = exchange(GOOD.replace("/api/v1/whoami", "/api/v1/whoami?" + "a" * 3000).encode() + b"\r\n")
    check(status(resp) == 414, "3 kB target: %r" % resp[:200])
    resp = exchange(GOOD.replace("/api/v1/whoami", "http://x/api/v1/whoami").encode() + b"\r\n")
    check(status(resp) == 400, "absolute-form target: %r" % resp[:200])
    still_serves()


@test
def api_body_longer_than_declared():
    """A POST declaring 5 bytes followed by a smuggled second request in the
    same write: the declared body is consumed, the first request answered,
    and the bytes after it never run as a request of their own."""
    smuggled = GOOD.replace("Connection: close\r\n", "") + "\r\n"
    req = ("POST /api/v1/nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + smuggled).encode()
    resp = exchange(req)
    check(resp.count(b"HTTP/1.1 ") == 1 and status(resp) == 404, "declared request: %r" % resp[:400])
    check(b"soc-analyst" not in resp, "the bytes after the body ran as a request: %r" % resp[:600])
    # A body shorter than declared: the server waits for the rest, then answers.
    c = col()
    s = tls(c)
    s.sendall(b"POST /api/v1/nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    s.settimeout(1)
    try:
        early = s.recv(100)
    except (socket.timeout, ssl.SSLError, OSError):
        early = b""
    check(early == b"", "answered before the declared body arrived: %r" % early)
    s.settimeout(10)
    s.sendall(b"defghij")
    resp = read_all(s)
    s.close()
    check(status(resp) == 404, "after the rest of the body: %r" % resp[:200])


@test
def api_slowloris_does_not_block_others():
    """Clients that send a head a byte at a time, or open TLS and say
    nothing: others are answered at once, and the slow ones are dropped
    (408) after the head timeout instead of held for ever."""
    c = col()
    idle = [tls(c, timeout=30) for _ in range(IDLE_CLIENTS)]
    slow = tls(c, timeout=30)
    stop = threading.Event()
    head = ("GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nX-Slow: " + "a" * 200).encode()

    def drip():
        for b in head:
            if stop.is_set():
                return
            try:
                slow.send(bytes([b]))
            except OSError:
                return
            time.sleep(0.05)
    t = threading.Thread(target=drip, daemon=True)
    t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    still_serves()
    took = time.monotonic() - t0
    check(took < 3, "a normal request took %.1f s next to %d slow clients" % (took, IDLE_CLIENTS + 1))
    # The slow client's head never completes within the timeout: 408 and closed.
    resp = read_all(slow)
    stop.set()
    check(status(resp) == 408 or resp == b"", "slow head: %r" % resp[:200])
    check(time.monotonic() - t0 < 20, "slow client held for %.1f s" % (time.monotonic() - t0))
    for s in idle:
        s.close()
    slow.close()
    still_serves()


def read_response(s):
    """One response (head + Content-Length body) from s, or b"" at EOF."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            return buf
        buf += b
    head, _, body = buf.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            n = int(v)
    while len(body) < n:
        b = s.recv(65536)
        if not b:
            break
        body += b
    return head + b"\r\n\r\n" + body


@test
def api_keep_alive_serves_several_requests():
    c = col()
    s = tls(c)
    ka = GOOD.replace("Connection: close\r\n", "") + "\r\n"
    for i in range(3):
        s.sendall(ka.encode())
        resp = read_response(s)
        check(status(resp) == 200 and b"soc-analyst" in resp, "request %d on one connection: %r" % (i, resp[:300]))
        check(b"Connection: keep-alive" in resp, "request %d: no keep-alive: %r" % (i, resp[:300]))
    s.sendall((GOOD + "\r\n").encode())
    resp = read_all(s)
    s.close()
    check(status(resp) == 200 and b"Connection: close" in resp, "Connection: close honoured: %r" % resp[:300])
    # HTTP/1.0 without keep-alive: closed after the answer.
    resp = exchange(GOOD.replace("HTTP/1.1", "HTTP/1.0").replace("Connection: close\r\n", "").encode() + b"\r\n")
    check(status(resp) == 200 and b"Connection: close" in resp, "HTTP/1.0: %r" % resp[:300])


@test
def api_thousand_idle_connections():
    """1,000 clients connect (TLS done) and say nothing: a normal request
    is still answered at once, and the collector did not start a thread
    per connection."""
    c = col()
    ctx = ssl.create_default_context(cafile=c.ca)
    idle = []
    for i in range(1000):
        raw = socket.create_connection((c.host, c.api_port), 10)
        try:
            idle.append(ctx.wrap_socket(raw, server_hostname=c.host))
        except (ssl.SSLError, OSError) as e:
            check(False, "connection %d refused: %s" % (i, e))
    with open("/proc/%d/status" % c.proc.pid) as f:
        threads = [int(l.split()[1]) for l in f if l.startswith("Threads:")][0]
    check(threads < 20, "%d threads with 1,000 idle connections" % threads)
    t0 = time.monotonic()
    still_serves()
    took = time.monotonic() - t0
    check(took < 3, "a request next to 1,000 idle connections took %.1f s" % took)
    # They are all still held (none was dropped to make room).
    alive = 0
    for s in idle:
        s.setblocking(False)
        try:
            alive += 1 if s.recv(1) else 0
        except ssl.SSLWantReadError:
            alive += 1
        except (ssl.SSLError, OSError):
            pass
    for s in idle:
        s.close()
    check(alive == 1000, "%d of 1,000 idle connections still open" % alive)
    still_serves()


@test
def api_stop_closes_idle_and_answers_in_flight():
    """SIGTERM with an idle keep-alive connection and a query in flight: the
    query is answered (Connection: close), the idle one closed, exit 0."""
    c = Collector(TMP, host="127.87.0.3", name="stop")
    c.start()
    idle = tls(c)
    busy = tls(c)
    busy.sendall(b"GET /api/v1/events?limit=1&format=json HTTP/1.1\r\nHost: x\r\n")
    time.sleep(0.3)
    c.proc.send_signal(signal.SIGTERM)
    time.sleep(1)
    check(c.proc.poll() is None, "exited with a request half read: %s" % c.tail())
    idle.settimeout(5)
    try:
        closed = idle.recv(100) == b""
    except socket.timeout:
        closed = False
    except (ssl.SSLError, OSError):
        closed = True
    check(closed, "idle keep-alive connection not closed at stop")
    busy.sendall(("Authorization: Bearer %s\r\n\r\n" % ANALYST_T).encode())
    resp = read_all(busy)
    check(status(resp) == 200 and b"Connection: close" in resp, "in-flight request at stop: %r" % resp[:300])
    check(c.proc.wait(15) == 0, "exit status: %s" % c.tail())


@test
def api_stop_waits_for_a_query_on_a_worker():
    """SIGTERM while a verify (seconds of work on a worker thread) runs: the
    collector answers it in full before the store closes, then exits 0."""
    c = Collector(TMP, host="127.87.0.4", name="stopq")
    c.start()
    c.stop()
    fill_store(c.db, 300000)
    c.start()
    res = {}

    def verify():
        t0 = time.monotonic()
        res["v"] = c.http("GET", "/api/v1/verify", ANALYST_T) + (time.monotonic() - t0,)
    t = threading.Thread(target=verify)
    t.start()
    time.sleep(0.5)
    c.proc.send_signal(signal.SIGTERM)
    t.join(120)
    code, body, took = res["v"]
    check(code == 200 and "BROKEN" in body, "verify across the stop: %d %s" % (code, body[-300:]))
    check(took > 0.7, "verify finished in %.2f s, before the stop could overlap it" % took)
    rc = c.proc.wait(30)
    tail = c.tail(40)
    check(rc == 0 and "Sanitizer" not in tail and "ERROR" not in tail, "exit %d: %s" % (rc, tail))


@test
def api_connections_cannot_take_the_agents_descriptors():
    """With 256 descriptors, 200 idle API clients: the API holds at most
    half of the descriptors, and an enrolled agent still completes its mTLS
    handshake on the ingest port; once the clients leave, the API serves."""
    import os
    import resource
    c = Collector(TMP, host="127.87.0.5", name="fds")
    bundle = os.path.join(c.dir, "agent-fd")
    p = c.enroll("fd-agent", bundle)
    check(p.returncode == 0, "enroll: %s" % p.stderr)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        c.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    ctx = ssl.create_default_context(cafile=c.ca)
    conns = []
    for _ in range(200):
        try:
            raw = socket.create_connection((c.host, c.api_port), 5)
            conns.append(ctx.wrap_socket(raw, server_hostname=c.host))
        except (ssl.SSLError, OSError):
            pass
    time.sleep(0.5)
    held = 0
    for s in conns:
        s.setblocking(False)
        try:
            held += 1 if s.recv(1) else 0
        except ssl.SSLWantReadError:
            held += 1
        except (ssl.SSLError, OSError):
            pass
    check(100 <= held <= 128, "%d idle API connections held with 256 descriptors" % held)
    actx = ssl.create_default_context(cafile=os.path.join(bundle, "ca.crt"))
    actx.load_cert_chain(os.path.join(bundle, "agent.crt"), os.path.join(bundle, "agent.key"))
    actx.check_hostname = False
    raw = socket.create_connection((c.host, c.port), 5)
    try:
        agent = actx.wrap_socket(raw)
        agent.settimeout(0.5)
        try:
            alive = agent.recv(1) != b""
        except socket.timeout:
            alive = True
        except (ssl.SSLError, OSError):
            alive = False
        agent.close()
    except (ssl.SSLError, OSError) as e:
        alive = False
        check(False, "agent handshake with the API full: %s | %s" % (e, c.tail()))
    check(alive, "agent connection dropped with the API full: %s" % c.tail())
    for s in conns:
        s.close()
    time.sleep(0.5)
    code, body = c.http("GET", "/api/v1/whoami", ANALYST_T)
    check(code == 200, "API after the clients left: %d %s" % (code, body[:200]))
    c.stop()


@test
def api_collector_exits_clean_after_the_attacks():
    """After every attack above: SIGTERM, exit 0, no error and no sanitizer
    report (under SAN=1: no leak of a refused or timed-out connection)."""
    c = col()
    c.proc.send_signal(signal.SIGTERM)
    rc = c.proc.wait(20)
    tail = c.tail(80)
    check(rc == 0, "exit status %d: %s" % (rc, tail))
    check("Sanitizer" not in tail and "runtime error" not in tail and "ERROR" not in tail, tail)


if __name__ == "__main__":
    lib.main()
