"""End-to-end: the collector's operations, with the real binary and no agent.

Housekeeping: a request in flight when the collector is told to stop is
answered before the store closes; `verify` (which reads every event) does
not stall other queries; SIGHUP reloads the tokens, and a configuration with
a mistake is refused with file:line while the running one stays.

Listens on 127.41.0.0/16 only.
"""
import os
import re
import signal
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import threading
import time

import lib
from lib import check, test
from collector_tools import ADMIN_T, ANALYST_T, Collector, fill_store

HOST = "127.41.0.1"
TMP = tempfile.mkdtemp(prefix="vigil-colops-")


def tls_conn(col):
    ctx = ssl.create_default_context(cafile=col.ca)
    raw = socket.create_connection((col.host, col.api_port), 10)
    return ctx.wrap_socket(raw, server_hostname=col.host)


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


@test
def stop_waits_for_request_in_flight():
    """SIGTERM while a request is half sent: the collector must answer it
    (the store stays open until the last request worker ended), then exit 0.
    The rest of the request arrives after 6 s, past the old 5 s give-up."""
    col = Collector(TMP, host=HOST, name="stop")
    col.start()
    s = tls_conn(col)
    s.sendall(b"GET /api/v1/events?limit=1&format=json HTTP/1.1\r\nHost: x\r\n")
    time.sleep(0.3)
    col.proc.send_signal(signal.SIGTERM)
    time.sleep(6)
    check(col.proc.poll() is None, "collector exited with a request in flight: %s" % col.tail())
    s.sendall(("Authorization: Bearer %s\r\n\r\n" % ANALYST_T).encode())
    resp = read_all(s)
    s.close()
    check(resp.startswith(b"HTTP/1.1 200"), "in-flight request not answered: %r | %s" % (resp[:200], col.tail()))
    rc = col.proc.wait(15)
    check(rc == 0, "collector exit %d after the request: %s" % (rc, col.tail()))
    check("ERROR" not in col.tail(50) and "AddressSanitizer" not in col.tail(50), col.tail())


def timed(col, path):
    t0 = time.time()
    code, body = col.http("GET", path, ANALYST_T)
    return code, body, time.time() - t0


@test
def verify_does_not_block_queries():
    col = Collector(TMP, host=HOST, name="verify")
    col.start()            # creates the schema
    col.stop()
    fill_store(col.db, 400000)
    col.start()
    res = {}

    def run_verify():
        res["verify"] = timed(col, "/api/v1/verify")
    t = threading.Thread(target=run_verify)
    t.start()
    time.sleep(0.5)
    lat = []
    while t.is_alive() and len(lat) < 5:
        code, body, dt = timed(col, "/api/v1/events?limit=5&format=json")
        check(code == 200, "query during verify: %d %s" % (code, body[:200]))
        lat.append(dt)
        time.sleep(0.1)
    t.join(120)
    vcode, vbody, vdt = res["verify"]
    check(vcode == 200 and "BROKEN" in vbody, "verify: %d %s" % (vcode, vbody[-300:]))
    check(lat, "verify finished in %.2f s before a query could overlap it (store too small)" % vdt)
    print("verify took %.2f s; queries during it: %s s" % (vdt, ", ".join("%.3f" % x for x in lat)))
    check(max(lat) < vdt / 3, "queries waited for verify: %s vs verify %.2f s" % (lat, vdt))
    col.stop()


@test
def sighup_reloads_tokens_and_keeps_old_on_mistake():
    col = Collector(TMP, host=HOST, name="hup")
    col.start()
    new_t = "rotated-token-0123456789abcdef"
    with open(col.config) as f:
        good = f.read()
    check(col.http("GET", "/api/v1/agents", ANALYST_T)[0] == 200, "analyst token before reload")
    check(col.http("GET", "/api/v1/agents", new_t)[0] == 401, "new token before reload")
    with open(col.config, "w") as f:
        f.write(good.replace(ANALYST_T, new_t))
    col.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while col.http("GET", "/api/v1/agents", new_t)[0] != 200:
        check(time.time() < deadline, "new token not accepted after SIGHUP: %s" % col.tail())
        time.sleep(0.2)
    check(col.http("GET", "/api/v1/agents", ANALYST_T)[0] == 401, "removed token still accepted after reload")
    # A mistake: refused with file:line, the running tokens stay.
    lines = good.replace(ANALYST_T, "third-token-0123456789abcdef").splitlines()
    lines.insert(3, "retain_dayz: 30")
    with open(col.config, "w") as f:
        f.write("\n".join(lines) + "\n")
    col.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    want = "%s:4:" % col.config
    while want not in col.tail(50):
        check(time.time() < deadline, "no file:line error after a bad reload: %s" % col.tail())
        time.sleep(0.2)
    check("reload refused" in col.tail(50), col.tail())
    check(col.http("GET", "/api/v1/agents", new_t)[0] == 200, "running token lost after a refused reload")
    check(col.http("GET", "/api/v1/agents", "third-token-0123456789abcdef")[0] == 401, "refused config applied")
    check(col.proc.poll() is None, "collector died on a bad reload")
    col.stop()
    check(col.proc.returncode == 0, "exit %s: %s" % (col.proc.returncode, col.tail()))


# ---- SIEM formats and forwarding ----

def add_events(db, n, start=0, agent="fwd-agent"):
    """n events as an agent would ship them: requests (some with PII, some
    with an injection, some blocked), a pass-through connection and a bypass
    record. Returns their event ids."""
    con = sqlite3.connect(db, timeout=30)
    con.execute("INSERT OR IGNORE INTO agents(agent_id, pubkey, first_seen, last_seen) VALUES(?, ?, 1, 1)",
                (agent, bytes(32)))
    now = int(time.time() * 1e6)
    ids, rows = [], []
    for i in range(start, start + n):
        kind, findings, score, action, path = "request", "", -1.0, "allow", "/v1/chat/completions"
        if i % 5 == 1:
            findings = "EMAIL:2,AWS_ACCESS_KEY:1"
        if i % 5 == 2:
            findings, score = "PROMPT_INJECTION:1", 0.93
        if i % 5 == 3:
            action, findings = "block", "US_SSN:1"
        if i % 7 == 4:
            kind, path = "connection", ""
        if i % 11 == 5:
            kind = "bypass"
        eid = "ev-%06d" % i
        ids.append(eid)
        rows.append(((now + i) << 10, now + i, eid, agent, i + 1, kind, "alice", 1000, 4242, "python3", "/usr/bin/python3",
                     "162.159.140.245", 443, "api.openai.com", "openai", "POST", path, "gpt-4o-mini", action,
                     findings, score, 200, 1200, 3400, 120 + i, 45, 800, bytes(32), bytes(32)))
    con.executemany("INSERT INTO events(id, time, event_id, agent_id, boot_id, seq, kind, user, uid, pid, comm, exe,"
                    " dst_ip, dst_port, sni, provider, method, path, model, action, findings, injection_score,"
                    " status, bytes_up, bytes_down, prompt_tokens, completion_tokens, latency_ms, prev_hash, hash,"
                    " host, ingest_seq) VALUES(?, ?, ?, ?, 'boot1', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                    " ?, ?, ?, ?, ?, ?, ?, ?, 'ws1', (SELECT IFNULL(MAX(ingest_seq), 0) + 1 FROM events))", rows)
    con.commit()
    con.close()
    return ids


GENAI_ATTRS = {"gen_ai.provider.name", "gen_ai.request.model", "gen_ai.usage.input_tokens",
               "gen_ai.usage.output_tokens", "gen_ai.operation.name"}
VIGIL_ATTRS = {"vigil.event_id", "vigil.agent_id", "vigil.user", "vigil.uid", "vigil.pid", "vigil.exe",
               "vigil.host", "vigil.action", "vigil.kind", "vigil.seq"}


def otlp_records(req):
    """logRecords of one ExportLogsServiceRequest, checking its shape."""
    out = []
    for rl in req["resourceLogs"]:
        check(any(a["key"] == "service.name" for a in rl["resource"]["attributes"]), "no service.name")
        for sl in rl["scopeLogs"]:
            out += sl["logRecords"]
    return out


def otlp_attrs(rec):
    """{key: value} of a logRecord, checking each value's OTLP/JSON type."""
    out = {}
    for a in rec["attributes"]:
        (typ, v), = a["value"].items()
        check(typ in ("stringValue", "intValue", "doubleValue", "boolValue"), "attribute type %s" % typ)
        if typ == "intValue":
            check(isinstance(v, str) and v.lstrip("-").isdigit(), "intValue must be a decimal string: %r" % v)
            v = int(v)
        out[a["key"]] = v
    return out


def check_otlp(records, ids):
    by_id = {}
    for r in records:
        check(r["timeUnixNano"].isdigit() and r["severityNumber"] in (9, 13), "record head %r" % r)
        a = otlp_attrs(r)
        by_id[a["vigil.event_id"]] = a
    check(set(by_id) == set(ids), "OTLP records for %d of %d events" % (len(set(by_id) & set(ids)), len(ids)))
    for eid, a in by_id.items():
        missing = VIGIL_ATTRS - set(a)
        check(not missing, "%s lacks %s" % (eid, missing))
        if a["vigil.kind"] == "request":
            missing = GENAI_ATTRS - set(a)
            check(not missing, "%s lacks %s" % (eid, missing))
            check(a["gen_ai.provider.name"] == "openai" and a["gen_ai.request.model"] == "gpt-4o-mini"
                  and a["gen_ai.operation.name"] == "chat" and a["gen_ai.usage.output_tokens"] == 45, a)
    bad = [k for a in by_id.values() for k in a if not (k.startswith(("gen_ai.", "vigil.", "server.", "http."))
                                                         or k == "event.name")]
    check(not bad, "attributes outside the conventions and vigil.*: %s" % set(bad))


# OCSF 1.3.0 (schema.ocsf.io/1.3.0): the attributes each class marks required,
# plus the ones we commit to for an analyst (actor, endpoints, http_request).
OCSF_BASE = {"activity_id", "category_uid", "class_uid", "metadata", "severity_id", "time", "type_uid"}
OCSF_REQUIRED = {
    4002: OCSF_BASE | {"http_request", "actor", "src_endpoint", "dst_endpoint"},
    4001: OCSF_BASE | {"src_endpoint", "dst_endpoint", "actor"},
    2006: OCSF_BASE | {"finding_info", "actor", "src_endpoint", "dst_endpoint"},
    2004: OCSF_BASE | {"finding_info", "actor", "src_endpoint"},
}
OCSF_CATEGORY = {4002: 4, 4001: 4, 2006: 2, 2004: 2}


def check_ocsf(records, ids):
    seen = {}
    for r in records:
        cls = r.get("class_uid")
        check(cls in OCSF_REQUIRED, "unexpected class %r" % cls)
        missing = OCSF_REQUIRED[cls] - set(k for k, v in r.items() if v is not None)
        check(not missing, "class %d record lacks %s" % (cls, missing))
        check(r["category_uid"] == OCSF_CATEGORY[cls], "category of %d: %r" % (cls, r["category_uid"]))
        check(r["type_uid"] == cls * 100 + r["activity_id"], "type_uid %r" % r["type_uid"])
        check(1 <= r["severity_id"] <= 6 and isinstance(r["time"], int), "severity/time %r" % r)
        md = r["metadata"]
        check(md["version"].startswith("1.") and md["product"]["name"] == "Vigil" and md["product"]["vendor_name"],
              "metadata %r" % md)
        if cls in (2004, 2006):
            fi = r["finding_info"]
            check(fi["uid"] and fi["title"] and fi["types"], "finding_info %r" % fi)
        if cls == 4002:
            check(r["http_request"]["http_method"] == "POST" and r["http_request"]["url"]["hostname"] ==
                  "api.openai.com" and r["activity_id"] == 6, "http_request %r" % r["http_request"])
        check(r["actor"]["process"]["file"]["path"] == "/usr/bin/python3" or cls == 2004, "actor %r" % r["actor"])
        seen.setdefault(r["metadata"]["uid"], set()).add(cls)
    check(set(seen) == set(ids), "OCSF records for %d of %d events" % (len(seen), len(ids)))
    n = len(ids)
    for i, eid in enumerate(ids):
        want = set()
        if i % 11 == 5:
            want = {2004}
        else:
            want.add(4001 if i % 7 == 4 else 4002)
            if i % 5 in (1, 3):
                want.add(2006)
            if i % 5 == 2:
                want.add(2004)
        check(seen[eid] == want, "%s: classes %s, expected %s (of %d)" % (eid, seen[eid], want, n))


def export(col, fmt):
    p = subprocess.run([lib.BUILD + "/vigil-collector", "export", "--format", fmt, "--since", "1d", "--config",
                        col.config], capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "export %s: %s" % (fmt, p.stderr))
    return [__import__("json").loads(l) for l in p.stdout.splitlines()]


@test
def export_otlp_ocsf_hec():
    col = Collector(TMP, host=HOST, name="export")
    col.start()
    col.stop()
    ids = add_events(col.db, 40)
    recs = []
    for req in export(col, "otlp"):
        recs += otlp_records(req)
    check_otlp(recs, ids)
    check_ocsf(export(col, "ocsf"), ids)
    hec = export(col, "hec")
    check(len(hec) == 40, "hec lines %d" % len(hec))
    for h in hec:
        check(set(h) == {"time", "host", "source", "sourcetype", "event"} and isinstance(h["time"], float)
              and h["host"] == "ws1" and h["event"]["event_id"].startswith("ev-"), "hec event %r" % h)
    p = subprocess.run([lib.BUILD + "/vigil-collector", "export", "--format", "xml", "--config", col.config],
                       capture_output=True, text=True)
    check(p.returncode == 2 and "otlp, ocsf or hec" in p.stderr, "bad format: %d %s" % (p.returncode, p.stderr))


class Receiver:
    """A local HTTP endpoint (OTLP / OCSF / HEC collector stand-in) that
    records every POST; fail_first answers that many requests with 503."""

    def __init__(self, host, port=None, fail_first=0):
        import http.server
        self.posts, self.fail_left = [], fail_first
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    fail = outer.fail_left > 0
                    if fail:
                        outer.fail_left -= 1
                    else:
                        outer.posts.append((self.path, dict(self.headers), body))
                self.send_response(503 if fail else 200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"text":"Success","code":0}' if not fail else b"{}")

            def log_message(self, *a):
                pass
        self.srv = http.server.ThreadingHTTPServer((host, port or 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        lib.at_cleanup(self.close)

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()

    def bodies(self, path):
        with self.lock:
            return [(h, b) for p, h, b in self.posts if p == path]


def wait_for(pred, what, col, timeout=30):
    deadline = time.time() + timeout
    while not pred():
        check(time.time() < deadline, "%s | %s" % (what, col.tail()))
        time.sleep(0.2)


def ndjson(bodies):
    import json
    return [json.loads(l) for _, b in bodies for l in b.decode().splitlines() if l.strip()]


@test
def forward_otlp_and_ocsf_over_http():
    import json
    rx = Receiver("127.41.0.2")
    col = Collector(TMP, host=HOST, name="fwd-http", extra="""forward:
  - { name: otel, format: otlp, url: "http://127.41.0.2:%d" }
  - { name: ocsf-lake, format: ocsf, url: "http://127.41.0.2:%d/ocsf", token: ocsf-bearer-0123456789, batch: 7 }
""" % (rx.port, rx.port))
    col.start()
    ids = add_events(col.db, 30)

    def otlp():
        return [r for h, b in rx.bodies("/v1/logs") for r in otlp_records(json.loads(b))]
    wait_for(lambda: len(otlp()) >= 30 and len({r["metadata"]["uid"] for r in ndjson(rx.bodies("/ocsf"))}) >= 30,
             "forwarded: otlp %d, ocsf posts %d" % (len(otlp()), len(rx.bodies("/ocsf"))), col)
    check_otlp(otlp(), ids)
    for h, _ in rx.bodies("/v1/logs"):
        check(h.get("Content-Type") == "application/json" and "Authorization" not in h, "otlp headers %r" % h)
    ocsf = rx.bodies("/ocsf")
    check(all(h.get("Authorization") == "Bearer ocsf-bearer-0123456789" for h, _ in ocsf), "ocsf auth header")
    check(len(ocsf) >= 30 // 7, "batch: 7 gave %d posts for 30 events" % len(ocsf))
    check_ocsf(ndjson(ocsf), ids)
    check("ocsf-bearer" not in open(col.log).read(), "a forward token reached the log")
    col.stop()


@test
def forward_hec_retries_until_up_then_resumes_after_restart():
    """The HEC endpoint is down (connection refused), then answers 503 once,
    then accepts: every event arrives exactly once. Events stored while the
    collector is stopped arrive after its restart, and nothing twice."""
    import json
    hec_host = "127.41.0.3"
    port = lib.free_port(hec_host)
    col = Collector(TMP, host=HOST, name="fwd-hec", extra="""forward:
  - name: splunk
    format: hec
    url: "http://%s:%d"
    token: 11111111-2222-3333-4444-555555555555
""" % (hec_host, port))
    col.start()
    ids = add_events(col.db, 25)
    wait_for(lambda: "forward splunk:" in col.tail(50) and "retrying" in col.tail(50), "no retry logged", col)
    time.sleep(1.5)
    rx = Receiver(hec_host, port, fail_first=1)

    def got():
        return [o["event"]["event_id"] for o in ndjson(rx.bodies("/services/collector/event"))]
    wait_for(lambda: len(got()) >= 25, "HEC got %d of 25" % len(got()), col, timeout=60)
    time.sleep(1.5)
    check(sorted(got()) == sorted(ids), "HEC: %d events, %d distinct, expected 25" % (len(got()), len(set(got()))))
    for h, b in rx.bodies("/services/collector/event"):
        check(h.get("Authorization") == "Splunk 11111111-2222-3333-4444-555555555555", "HEC auth %r" % h)
        for o in ndjson([(h, b)]):
            check(set(o) == {"time", "host", "source", "sourcetype", "event"}, "HEC object %r" % o)
    check(rx.fail_left == 0, "the 503 was never hit")
    col.stop()
    more = add_events(col.db, 10, start=25)
    col.start()
    wait_for(lambda: len(got()) >= 35, "after restart HEC got %d of 35" % len(got()), col)
    time.sleep(1.5)
    check(sorted(got()) == sorted(ids + more), "after restart: %d events, %d distinct" % (len(got()), len(set(got()))))
    col.stop()


class SyslogServer:
    """RFC 5425 / 6587 receiver: octet-counted frames over TCP or TLS."""

    def __init__(self, host, cert=None, key=None):
        self.frames, self.errors = [], []
        self.lsock = socket.socket()
        self.lsock.bind((host, 0))
        self.lsock.listen(4)
        self.port = self.lsock.getsockname()[1]
        self.ctx = None
        if cert:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(cert, key)
        threading.Thread(target=self._accept, daemon=True).start()
        lib.at_cleanup(self.lsock.close)

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(c,), daemon=True).start()

    def _read(self, c):
        try:
            if self.ctx:
                c = self.ctx.wrap_socket(c, server_side=True)
            buf = b""
            while True:
                d = c.recv(65536)
                if not d:
                    break
                buf += d
                while True:
                    sp = buf.find(b" ")
                    if sp < 0:
                        break
                    if not buf[:sp].isdigit():
                        self.errors.append(buf[:40])
                        return
                    n = int(buf[:sp])
                    if len(buf) < sp + 1 + n:
                        break
                    self.frames.append(buf[sp + 1:sp + 1 + n].decode())
                    buf = buf[sp + 1 + n:]
        except (OSError, ssl.SSLError) as e:
            self.errors.append(repr(e))


@test
def forward_syslog_over_tcp_and_tls():
    col = Collector(TMP, host=HOST, name="fwd-syslog")
    tcp = SyslogServer("127.41.0.4")
    tls = SyslogServer(HOST, os.path.join(col.pki, "server.crt"), os.path.join(col.pki, "server.key"))
    # The same server certificate checked against a CA that did not sign it:
    # nothing may be sent (a man in the middle would look like this).
    spoof = SyslogServer(HOST, os.path.join(col.pki, "server.crt"), os.path.join(col.pki, "server.key"))
    other = os.path.join(col.dir, "other-pki")
    subprocess.run([lib.BUILD + "/vigil-collector", "pki", "init", "--dir", other], check=True, capture_output=True)
    with open(col.config, "a") as f:
        f.write("""forward:
  - { name: siem-tcp, format: syslog, address: "127.41.0.4:%d", transport: tcp }
  - { name: siem-tls, format: syslog, address: "%s:%d", transport: tls, ca: %s/ca.crt }
  - { name: siem-spoof, format: syslog, address: "%s:%d", transport: tls, ca: %s/ca.crt }
""" % (tcp.port, HOST, tls.port, col.pki, HOST, spoof.port, other))
    col.start()
    ids = add_events(col.db, 12)
    wait_for(lambda: len(tcp.frames) >= 12 and len(tls.frames) >= 12,
             "syslog frames tcp %d tls %d (errors %s %s)" % (len(tcp.frames), len(tls.frames), tcp.errors,
                                                             tls.errors), col)
    for name, srv in (("tcp", tcp), ("tls", tls)):
        check(not srv.errors, "%s framing: %s" % (name, srv.errors))
        got = []
        for fr in srv.frames:
            check(re.match(r"<\d{1,3}>1 \S+ ", fr) and "[vigil@32473" in fr and "\n" not in fr,
                  "%s: not an RFC 5424 message: %r" % (name, fr[:120]))
            got.append(fr.split('event_id="', 1)[1].split('"', 1)[0])
        check(sorted(got) == sorted(ids), "%s: %d frames for %d events" % (name, len(got), len(ids)))
    # The forwarders take turns: the refused handshake may be logged after the
    # other two have delivered.
    wait_for(lambda: "forward siem-spoof: TLS" in open(col.log).read(),
             "refused handshake with the spoofed server not logged", col)
    check(not spoof.frames,
          "sent to a server the CA does not vouch for: %d frames | %s" % (len(spoof.frames), col.tail()))
    col.stop()


@test
def forward_config_errors_name_file_and_line():
    col = Collector(TMP, host=HOST, name="fwd-bad")
    with open(col.config) as f:
        base = f.read()
    cases = [
        ("forward:\n  - { name: a, format: kafka, url: \"http://x:1\" }\n", "format must be otlp, ocsf, hec or syslog"),
        ("forward:\n  - { name: a, format: hec, url: \"http://x:1\" }\n", "hec needs the HEC token"),
        ("forward:\n  - { name: a, format: otlp, url: \"ftp://x\" }\n", "url must start with http"),
        ("forward:\n  - { name: a, format: syslog, address: \"h:1\", transport: udp }\n", "transport must be tcp or tls"),
        ("forward:\n  - { name: a, format: syslog }\n", "syslog needs address"),
        ("forward:\n  - { name: ../x, format: otlp, url: \"http://x:1\" }\n", "forward name is 1 to 64"),
        ("forward:\n  - { name: a, format: otlp, url: \"http://x:1\", batch: 0 }\n", ""),
        ("forward:\n  - { name: a, format: otlp, url: \"http://x:1\", colour: red }\n", "unknown key 'forward.colour'"),
        ("forward:\n  - { name: a, format: otlp, url: \"http://x:1\" }\n  - { name: a, format: ocsf, url: \"http://x:1\" }\n",
         "the same name is used twice"),
    ]
    line = base.count("\n") + 2
    for text, want in cases:
        with open(col.config, "w") as f:
            f.write(base + text)
        p = subprocess.run([lib.BUILD + "/vigil-collector", "--config", col.config, "--check"], capture_output=True,
                           text=True)
        check(p.returncode == 2 and ("%s:" % col.config) in p.stderr and want in p.stderr,
              "%r: exit %d %s" % (text, p.returncode, p.stderr))
        check(":%d:" % line in p.stderr or ":%d:" % (line + 1) in p.stderr, "%r: wrong line: %s" % (text, p.stderr))


PRICING = """pricing:
  - { provider: openai, model: "gpt-4o-mini*", input: 0.15, output: 0.60, cached_input: 0.075, currency: USD }
  - { provider: openai, model: "*", input: 2.50, output: 10.00 }
"""


@test
def cost_in_query_json_table_and_top():
    import json
    col = Collector(TMP, host=HOST, name="cost", extra=PRICING)
    col.start()
    ids = add_events(col.db, 20)
    add_events(col.db, 1, start=100, agent="other-agent")   # same model: priced too
    p = col.vigil("query", "--json", "--since", "1d", "--limit", "1000")
    check(p.returncode == 0, p.stderr)
    rows = {r["event_id"]: r for r in map(json.loads, p.stdout.splitlines())}
    check(set(ids) <= set(rows), "query rows")
    total = 0.0
    for i, eid in enumerate(ids):
        want = ((120 + i) * 0.15 + 45 * 0.60) / 1e6
        r = rows[eid]
        check(r.get("currency") == "USD" and abs(r["cost"] - want) < 1e-12, "%s cost %r, want %.9f" % (eid, r.get("cost"), want))
        total += want
    p = col.vigil("query", "--top", "users", "--since", "1d")
    check(p.returncode == 0 and "COST (USD)" in p.stdout, "top users table: %s %s" % (p.stdout, p.stderr))
    alice = [l for l in p.stdout.splitlines() if l.startswith("alice")]
    want_all = total + ((120 + 100) * 0.15 + 45 * 0.60) / 1e6
    check(alice and abs(float(alice[0].split()[-1]) - want_all) < 1e-4, "alice cost: %s (want %.4f)" % (alice, want_all))
    p = col.vigil("query", "--top", "models", "--json", "--since", "1d")
    top = [json.loads(l) for l in p.stdout.splitlines()]
    check(len(top) == 1 and top[0]["key"] == "gpt-4o-mini" and abs(top[0]["cost"] - want_all) < 1e-12,
          "top models json: %s" % p.stdout)
    p = col.vigil("query", "--since", "1d", "--user", "alice", "--limit", "3")
    check(" USD" in p.stdout and "COST" in p.stdout.splitlines()[0], "table lacks cost: %s" % p.stdout)
    # A price change applies on SIGHUP, to history too (cost is computed at read time).
    with open(col.config) as f:
        text = f.read()
    with open(col.config, "w") as f:
        f.write(text.replace("input: 0.15, output: 0.60", "input: 0.30, output: 1.20"))
    col.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while True:
        p = col.vigil("query", "--top", "models", "--json", "--since", "1d")
        top = [json.loads(l) for l in p.stdout.splitlines()]
        if top and abs(top[0]["cost"] - 2 * want_all) < 1e-12:
            break
        check(time.time() < deadline, "new prices not applied after SIGHUP: %s" % p.stdout)
        time.sleep(0.2)
    col.stop()


def add_passthrough(db, user, exe, sni):
    con = sqlite3.connect(db, timeout=30)
    now = int(time.time() * 1e6)
    con.execute("INSERT INTO events(id, time, event_id, agent_id, boot_id, seq, kind, user, exe, host, sni, provider,"
                " action, findings, ingest_seq) VALUES(?, ?, 'pt-1', 'fwd-agent', 'boot2', 1, 'connection', ?, ?,"
                " 'ws2', ?, '', 'passthrough', '', (SELECT IFNULL(MAX(ingest_seq), 0) + 1 FROM events))",
                (now << 10, now, user, exe, sni))
    con.commit()
    con.close()


@test
def inventory_lists_use_and_admin_reviews_are_audited():
    import json
    col = Collector(TMP, host=HOST, name="inventory")
    col.start()
    n = 20
    add_events(col.db, n)
    add_passthrough(col.db, "bob", "/usr/bin/node", "api.mistral.ai")

    def inventory():
        p = col.vigil("inventory", "--json", "--since", "1d")
        check(p.returncode == 0, "vigil inventory: %d %s" % (p.returncode, p.stderr))
        return {(r["user"], r["exe"], r["provider"], r["host"]): r for r in map(json.loads, p.stdout.splitlines())}
    inv = inventory()
    check(set(inv) == {("alice", "/usr/bin/python3", "openai", "ws1"), ("bob", "/usr/bin/node", "api.mistral.ai", "ws2")},
          "inventory keys %s" % list(inv))
    a = inv[("alice", "/usr/bin/python3", "openai", "ws1")]
    want_req = sum(1 for i in range(n) if i % 7 != 4 and i % 11 != 5)
    want_fnd = sum(1 for i in range(n) if i % 5 in (1, 2, 3))
    want_blk = sum(1 for i in range(n) if i % 5 == 3)
    want_tok = sum(120 + i + 45 for i in range(n))
    check(a["events"] == n and a["requests"] == want_req and a["findings"] == want_fnd and a["blocks"] == want_blk
          and a["tokens"] == want_tok and a["review"] == "unreviewed" and a["first_seen"] < a["last_seen"],
          "alice row %r" % a)
    b = inv[("bob", "/usr/bin/node", "api.mistral.ai", "ws2")]
    check(b["events"] == 1 and b["requests"] == 0, "pass-through row %r" % b)
    # Only an admin sets a review state; the change is an audit record.
    p = col.vigil("inventory", "--review", "approved", "--exe", "/usr/bin/python3", "--provider", "openai")
    check(p.returncode == 1 and "403" in p.stderr, "analyst could review: %d %s" % (p.returncode, p.stderr))
    p = col.vigil("inventory", "--review", "maybe", "--exe", "/usr/bin/python3", "--provider", "openai", token=ADMIN_T)
    check(p.returncode == 2, "bad state accepted: %d %s" % (p.returncode, p.stderr))
    p = col.vigil("inventory", "--review", "unapproved", "--exe", "/usr/bin/node", "--provider", "api.mistral.ai",
                  token=ADMIN_T)
    check(p.returncode == 0, "admin review: %d %s" % (p.returncode, p.stderr))
    p = col.vigil("inventory", "--review", "approved", "--exe", "/usr/bin/python3", "--provider", "openai",
                  token=ADMIN_T)
    check(p.returncode == 0, "admin review: %d %s" % (p.returncode, p.stderr))
    inv = inventory()
    check(inv[("alice", "/usr/bin/python3", "openai", "ws1")]["review"] == "approved" and
          inv[("bob", "/usr/bin/node", "api.mistral.ai", "ws2")]["review"] == "unapproved", "review states %r" % inv)
    audit = col.query_json("--kind", "review", "--since", "1d")
    check(len(audit) == 2 and all(r["user"] == "soc-admin" for r in audit) and
          {r["action"] for r in audit} == {"approved", "unapproved"}, "review audit records %r" % audit)
    p = col.vigil("inventory", "--since", "1d")
    check(p.returncode == 0 and "REVIEW" in p.stdout and "approved" in p.stdout and "(2 rows)" in p.stdout,
          "table: %s" % p.stdout)
    p = col.vigil("inventory", "--csv", "--user", "bob")
    check(p.stdout.startswith("user,exe,provider") and p.stdout.count("\n") == 2, "csv %r" % p.stdout)
    col.stop()


@test
def alerts_raised_stored_listed_and_exported():
    """The detector thread on a running collector: an injection score over
    the threshold, tamper-like bypass records and a burst of blocked and
    finding events become kind alert events that `vigil alerts` lists with
    their evidence and export carries (OCSF Detection Finding)."""
    import json
    col = Collector(TMP, host=HOST, name="alerts", extra="alerts:\n  injection_score: 0.9\n  burst_count: 5\n")
    col.start()
    wait_for(lambda: os.path.exists(os.path.join(col.dir, "alerts.cursor")), "the detector never caught up", col)
    add_events(col.db, 20)

    def alerts(*a):
        p = col.vigil("alerts", "--json", "--since", "1d", *a)
        check(p.returncode == 0, "vigil alerts: %d %s" % (p.returncode, p.stderr))
        return [json.loads(l) for l in p.stdout.splitlines()]
    wait_for(lambda: len(alerts()) >= 7, "alerts: %s" % [(a["rule"], a["reason"]) for a in alerts()], col)
    time.sleep(1.5)
    got = alerts()
    rules = sorted(a["rule"] for a in got)
    # injections at i % 5 == 2 (score 0.93): 2, 7, 12, 17; bypass at i % 11 == 5: 5, 16;
    # one burst (the 5th bad event; later ones fall in the same window).
    check(rules == ["burst", "injection", "injection", "injection", "injection", "tamper", "tamper"],
          "alert rules %s" % rules)
    check(all(a["kind"] == "alert" and a["user"] == "alice" and a["reason"] for a in got if a["rule"] != "tamper"),
          "alert fields %r" % got)
    inj = alerts("--rule", "injection")
    check(len(inj) == 4 and all("0.93" in a["reason"] for a in inj), "rule filter / evidence %r" % inj)
    p = col.vigil("alerts", "--since", "1d")
    check(p.returncode == 0 and "injection" in p.stdout and "(7 events)" in p.stdout, "table %s" % p.stdout)
    ocsf = export(col, "ocsf")
    check(sum(1 for r in ocsf if r["class_uid"] == 2004 and r["unmapped"]["vigil.kind"] == "alert") == 7,
          "alerts in the OCSF export")
    inv = col.vigil("inventory", "--json", "--since", "1d").stdout
    check(all(json.loads(l)["events"] == 20 for l in inv.splitlines()), "alerts counted as use: %s" % inv)
    col.stop()


if __name__ == "__main__":
    lib.main()
