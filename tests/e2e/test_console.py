"""End-to-end: the collector's web console in a real browser.

A collector (SQLite) is filled by the real agent (real curl clients as user
nobody through the BPF redirect to the fake provider: clean, PII, blocked
credential requests, and a program whose file name is HTML markup) plus
generated events of a second agent (injection scores for the alert
detectors, and enough events to page through). Then Debian's chromium,
headless, driven by puppeteer-core (tests/clients/console_browser.mjs): log
in with a token, filter events, open one, page, see top, alerts, agents,
verify and the inventory, approve a program as admin and see the audited
review; an analyst cannot approve; no CSP violation anywhere. Plain HTTPS
requests check that without a token only the login page and its two files
are served, the security headers on every response, the roles of the new
endpoints and the cross-origin refusal of state changes.
"""
import http.client
import json
import os
import shutil
import sqlite3
import ssl
import subprocess
import time

import lib
from lib import check, test
import rig as rigmod
from collector_tools import ADMIN_T, ANALYST_T, METRICS_T, Collector
from colrig import enroll_rig

HOST, GOOD = "127.84.0.1", "127.84.0.2"
AGENT_ID, GEN_AGENT, SICK_AGENT = "console-ws1", "console-gen", "console-sick"
AWS_KEY = "AKIA" + "Z7QW3RT5YU2IO4PL"   # split so this file itself is not a credential finding
XSS_NAME = "<img src=x onerror=window.__xss=1>"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
GEN_N = 160

RIG = rigmod.Rig("console", {"api.openai.com": GOOD}, {"good": (GOOD, "good", 0)})
COL = Collector(RIG.tmp, host=HOST, extra="""alerts:
  injection_score: 0.9
  burst_count: 3
pricing:
  - { provider: openai, model: "gpt-4o-mini*", input: 0.15, output: 0.60, currency: USD }
""")
COL.start()
enroll_rig(COL, RIG, AGENT_ID)
RIG.agent.start()
XSS_EXE = os.path.join(RIG.tmp, XSS_NAME)
shutil.copy("/usr/bin/curl", XSS_EXE)
os.chmod(XSS_EXE, 0o755)


def chat(text, exe="curl"):
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
    argv = [exe, "-sS", "--max-time", "20", "--cacert", RIG.ca, "-o", "/dev/null", "-w", "%{http_code}",
            "-H", "Authorization: Bearer sk-test", "-H", "Content-Type: application/json", "--data-binary", body,
            "https://api.openai.com/v1/chat/completions"]
    p = lib.run(argv, cgroup=RIG.cg.path, uid=lib.NOBODY, hosts=RIG.hosts, timeout=40)
    return int(p.stdout.strip() or 0), p


def add_generated(n):
    """n events of a second agent as it would ship them, straight into the
    store (with ingest_seq, so the alert detectors read them too): every
    fifth one carries an injection score over the threshold."""
    con = sqlite3.connect(COL.db, timeout=30)
    con.execute("INSERT OR IGNORE INTO agents(agent_id, pubkey, first_seen, last_seen) VALUES(?, ?, 1, 1)",
                (GEN_AGENT, bytes(32)))
    now = int(time.time() * 1e6) - 600 * 1000000
    rows = []
    for i in range(n):
        score, findings = (0.95, "PROMPT_INJECTION:1") if i % 5 == 2 else (-1.0, "")
        rows.append(((now + i) << 10, now + i, "gen-%04d" % i, GEN_AGENT, i + 1, "carol", "/usr/bin/python3",
                     "openai", "gpt-4o-mini", findings, score, 100 + i, 40))
    con.executemany("INSERT INTO events(id, time, event_id, agent_id, boot_id, seq, kind, user, exe, host, provider,"
                    " model, action, findings, injection_score, prompt_tokens, completion_tokens, prev_hash, hash,"
                    " ingest_seq) VALUES(?, ?, ?, ?, 'boot-gen', ?, 'request', ?, ?, 'ws-gen', ?, ?, 'allow', ?, ?,"
                    " ?, ?, zeroblob(32), zeroblob(32), (SELECT IFNULL(MAX(ingest_seq), 0) + 1 FROM events))", rows)
    # A third agent with a troubled life: two starts (the older one after an
    # unclean stop), a tamper record, two gap records (5 + 2 lost seqs).
    con.execute("INSERT OR IGNORE INTO agents(agent_id, pubkey, first_seen, last_seen) VALUES(?, ?, 1, ?)",
                (SICK_AGENT, bytes(32), now + 10**6))
    sick = [("agent_start", "version=0.0.9 fail_mode=open previous_stop=unclean", "unclean_stop", 0),
            ("tamper", "bpf program detached", "", 0), ("gap", "spool full", "", 5),
            ("agent_start", "version=0.1.0 fail_mode=open previous_stop=clean", "", 0), ("gap", "disk full", "", 2)]
    con.executemany("INSERT INTO events(id, time, event_id, agent_id, boot_id, seq, kind, reason, error, gap_count,"
                    " prev_hash, hash, ingest_seq) VALUES(?, ?, ?, ?, 'boot-sick', ?, ?, ?, ?, ?, zeroblob(32),"
                    " zeroblob(32), (SELECT IFNULL(MAX(ingest_seq), 0) + 1 FROM events))",
                    [((now + 10**6 + i) << 10, now + 10**6 + i, "sick-%d" % i, SICK_AGENT, i + 1, k, r, e, g)
                     for i, (k, r, e, g) in enumerate(sick)])
    con.commit()
    con.close()


def wait_for(fn, what, timeout=40):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() > deadline:
            check(v, "%s; collector log: %s; agent log: %s" % (what, COL.tail(6), RIG.agent.log_tail(6)))
            return v
        time.sleep(0.3)


_filled = []


def fill():
    """The traffic every test looks at, made once."""
    if _filled:
        return
    for text, want in (("plain question", 200), ("mail jane.doe@example.com please", 200),
                       ("my key is " + AWS_KEY, 403), ("again " + AWS_KEY, 403), ("and " + AWS_KEY, 403)):
        code, p = chat(text)
        check(code == want, "curl %r: %s (want %d) %s" % (text[:12], code, want, p.stderr[-300:]))
    code, p = chat("hello from a program named like markup", exe=XSS_EXE)
    check(code == 200, "the <img> program: %s %s" % (code, p.stderr[-300:]))
    add_generated(GEN_N)
    wait_for(lambda: len(COL.query_json("--user", "nobody", "--kind", "request")) >= 6,
             "the agent's 6 requests never reached the collector")
    wait_for(lambda: COL.query_json("--kind", "alert", "--since", "1d"), "no alert was raised")
    _filled.append(True)


def https(method, path, token=None, headers=None):
    ctx = ssl.create_default_context(cafile=COL.ca)
    c = http.client.HTTPSConnection(HOST, COL.api_port, context=ctx, timeout=60)
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    c.request(method, path, headers=h)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def check_security_headers(h, what):
    check(h.get("content-security-policy") == CSP, "%s: CSP %r" % (what, h.get("content-security-policy")))
    check(h.get("x-content-type-options") == "nosniff" and h.get("referrer-policy") == "no-referrer",
          "%s: nosniff/referrer %r" % (what, h))


@test
def without_token_only_the_login_page_is_served():
    fill()
    pages = {"/": "text/html", "/index.html": "text/html", "/console.js": "text/javascript",
             "/console.css": "text/css"}
    for path, ctype in pages.items():
        code, h, body = https("GET", path)
        check(code == 200 and h["content-type"].startswith(ctype), "%s: %d %s" % (path, code, h.get("content-type")))
        check_security_headers(h, path)
        for data in (AGENT_ID, GEN_AGENT, "nobody", "carol", "gpt-4o-mini"):
            check(data.encode() not in body, "%s without a token serves data (%s)" % (path, data))
    code, _, body = https("GET", "/")
    check(b'id="login-form"' in body and b"<script src=\"/console.js\"" in body and b"<script>" not in body
          and b"style=" not in body, "the login page has inline script or style, or no form")
    api = [("GET", "/api/v1/events"), ("GET", "/api/v1/events?format=json&limit=5"),
           ("GET", "/api/v1/event?agent=%s&boot=x&seq=1" % AGENT_ID), ("GET", "/api/v1/top?by=users"),
           ("GET", "/api/v1/verify"), ("GET", "/api/v1/agents?format=json"), ("GET", "/api/v1/inventory"),
           ("GET", "/api/v1/whoami"), ("POST", "/api/v1/review?exe=/usr/bin/curl&provider=openai&state=approved"),
           ("POST", "/api/v1/enroll?agent_id=x"), ("POST", "/api/v1/revoke?agent_id=x")]
    for method, path in api:
        for token in (None, "not-a-token-0123456789"):
            code, h, body = https(method, path, token)
            check(code == 401 and h["content-type"] == "application/json", "%s %s token %s: %d %r" %
                  (method, path, token, code, body[:80]))
            check_security_headers(h, path)
    for path in ("/events", "/inventory", "/console/index.html", "/index.html/", "/../index.html", "/favicon.ico",
                 "/api/v1/nope", "/console.js.map"):
        code, h, body = https("GET", path)
        check(code == 404 and h["content-type"] == "application/json" and b"<" not in body,
              "%s: %d %r" % (path, code, body[:80]))
        check_security_headers(h, path)
    # Pages are not served to other methods either.
    code, _, _ = https("POST", "/")
    check(code in (404, 405), "POST / answered %d" % code)


@test
def console_endpoints_check_token_role_and_origin():
    fill()
    code, _, body = https("GET", "/api/v1/whoami", ADMIN_T)
    check(code == 200 and json.loads(body) == {"name": "soc-admin", "role": "admin", "currency": "USD"},
          "whoami admin: %d %r" % (code, body))
    code, _, body = https("GET", "/api/v1/whoami", ANALYST_T)
    check(code == 200 and json.loads(body)["role"] == "analyst", "whoami analyst: %d %r" % (code, body))
    code, _, _ = https("GET", "/api/v1/whoami", METRICS_T)
    check(code == 403, "a metrics token logs into the console: %d" % code)
    ev = COL.query_json("--user", "nobody", "--kind", "request", "--limit", "1")[0]
    q = "/api/v1/event?agent=%s&boot=%s&seq=%d" % (ev["agent_id"], ev["boot_id"], ev["seq"])
    code, _, _ = https("GET", q, METRICS_T)
    check(code == 403, "event detail for a metrics token: %d" % code)
    code, _, body = https("GET", q, ANALYST_T)
    d = json.loads(body) if code == 200 else {}
    check(code == 200 and d["event"]["event_id"] == ev["event_id"] and d["chain"]["seq"] == ev["seq"] and
          d["chain"]["hash"] == ev["hash"] and d["chain"]["head_seq"] >= ev["seq"] and d["chain"]["signed"],
          "event detail: %d %r" % (code, body[:300]))
    code, _, _ = https("GET", q.replace("seq=%d" % ev["seq"], "seq=999999"), ANALYST_T)
    check(code == 404, "unknown event: %d" % code)
    code, _, _ = https("GET", "/api/v1/event?agent=x", ANALYST_T)
    check(code == 400, "event without boot/seq: %d" % code)
    # Keyset paging over the generated agent: every event once, then no cursor.
    seen, cursor, pages = [], "", 0
    while True:
        code, h, body = https("GET", "/api/v1/events?agent=%s&format=json&limit=50%s" % (
            GEN_AGENT, "&cursor=" + cursor if cursor else ""), ANALYST_T)
        check(code == 200, "page %d: %d %r" % (pages, code, body[:100]))
        seen += [json.loads(l)["seq"] for l in body.decode().splitlines() if l.strip()]
        pages += 1
        cursor = h.get("x-vigil-next", "")
        if not cursor or pages > 10:
            break
    check(sorted(seen) == list(range(1, GEN_N + 1)) and seen == sorted(seen, reverse=True) and pages == 4,
          "paging: %d events in %d pages, distinct %d" % (len(seen), pages, len(set(seen))))
    for bad in ("x", "1.2.zz.41", "1.2.41", "%0d%0a.1.41.41"):
        code, _, _ = https("GET", "/api/v1/events?cursor=" + bad, ANALYST_T)
        check(code == 400, "cursor %r: %d" % (bad, code))
    # State changes: admin only, and never from another origin.
    rv = "/api/v1/review?exe=/usr/bin/python3&provider=openai&state=unapproved"
    code, _, _ = https("POST", rv, ANALYST_T)
    check(code == 403, "an analyst reviewed: %d" % code)
    for hdr in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                {"Origin": "https://%s:%d" % (HOST, COL.api_port), "Sec-Fetch-Site": "same-site"}):
        code, _, _ = https("POST", rv, ADMIN_T, hdr)
        check(code == 403, "cross-origin review %r: %d" % (hdr, code))
    check(not COL.query_json("--kind", "review", "--exe", "/usr/bin/python3"), "a refused review was recorded")
    code, _, _ = https("POST", rv, ADMIN_T, {"Origin": "https://%s:%d" % (HOST, COL.api_port),
                                            "Sec-Fetch-Site": "same-origin"})
    check(code == 200, "same-origin admin review: %d" % code)
    audit = COL.query_json("--kind", "review", "--exe", "/usr/bin/python3")
    check(len(audit) == 1 and audit[0]["user"] == "soc-admin" and audit[0]["action"] == "unapproved",
          "review audit %r" % audit)
    # Agents: the real agent's version and health, the generated one silent.
    code, _, body = https("GET", "/api/v1/agents?format=json", ANALYST_T)
    ag = {a["agent_id"]: a for a in map(json.loads, body.decode().splitlines())}
    check(ag[AGENT_ID]["version"] == "0.1.0" and not ag[AGENT_ID]["silent"] and ag[AGENT_ID]["tamper"] == 0 and
          ag[AGENT_ID]["unclean_stops"] == 0 and ag[AGENT_ID]["gaps"] == 0, "agent %r" % ag.get(AGENT_ID))
    check(ag[GEN_AGENT]["silent"], "an agent last seen in 1970 is not silent: %r" % ag.get(GEN_AGENT))
    sick = ag[SICK_AGENT]
    check(sick["version"] == "0.1.0" and sick["unclean_stops"] == 1 and sick["tamper"] == 1 and sick["gaps"] == 2
          and sick["missing_seqs"] == 7, "troubled agent %r" % sick)


@test
def browser_console_end_to_end():
    fill()
    spec = {"url": "https://%s:%d" % (HOST, COL.api_port), "admin": ADMIN_T, "analyst": ANALYST_T,
            "metrics": METRICS_T, "user": "nobody",
            "agent": AGENT_ID, "gen_agent": GEN_AGENT, "xss_exe": XSS_EXE, "block_exe": "/usr/bin/curl",
            "key": AWS_KEY}
    p = subprocess.run(["node", os.path.join(rigmod.CLIENTS, "console_browser.mjs"), json.dumps(spec)],
                       capture_output=True, text=True, timeout=300)
    lines = p.stdout.strip().splitlines()
    check(lines, "console_browser.mjs printed nothing: %s" % p.stderr[-800:])
    out = json.loads(lines[-1])
    check(not out.get("error"), "browser run failed after %s: %s" % (out["steps"], out.get("error", "")[:900]))
    check(out["deep_link"] == {"app_hidden": True, "login_visible": True, "rows": 0} and out["api_before_login"] == 0,
          "a deep link without a token: %r, %d API calls" % (out["deep_link"], out["api_before_login"]))
    check(out["metrics_login"]["app_hidden"] and out["metrics_login"]["kept"] is None and
          "analyst" in out["metrics_login"]["error"], "a metrics token in the console: %r" % out["metrics_login"])
    check(out["wrong_token_app_hidden"], "a wrong token showed the app")
    check(out["who"] == "soc-admin (admin)", "who %r" % out["who"])
    check(len(out["blocked_rows"]) == 3, "filtered blocked rows %r" % out["blocked_rows"])
    d = out["detail"]
    check(d["decision"].get("action") == "block" and d["identity"].get("user") == "nobody" and
          d["identity"].get("program", "").endswith("curl") and ["findings", "AWS_ACCESS_KEY", "1"] in d["findings"],
          "detail %r" % d)
    check(d["chain"].get("agent") == AGENT_ID and len(d["chain"].get("hash", "")) == 64 and
          d["chain"].get("signed by the agent") == "yes" and int(d["chain"]["seq"]) <= int(d["chain"]["agent head seq"]),
          "chain %r" % d["chain"])
    check(not out["detail_has_key"], "the detail page holds the credential's value")
    pg = out["paging"]
    check(pg["seen"] == 150 and pg["distinct"] == 150 and not pg["older_disabled"], "paging %r" % pg)
    check(out["xss"]["cell"] == XSS_EXE and out["xss"]["fired"] is None and out["xss"]["imgs"] == 0,
          "markup program %r" % out["xss"])
    check(any(r[0] == "nobody" for r in out["top"]), "top users %r" % out["top"])
    rules = {r[1] for r in out["alerts"]}
    check("injection" in rules and "burst" in rules, "alerts %r" % out["alerts"][:5])
    a = [r for r in out["agents"] if r[0] == AGENT_ID][0]
    check(a[1] == "0.1.0" and a[3] == "no" and a[6] == "0", "agent row %r" % a)
    # The generated agent's rows carry no signed encoding: verify must say
    # so, and find nothing wrong with the real agent's chain.
    v = out["verify"]
    check(v["status"] == "BROKEN" and "agent %s: seq 1 altered" % GEN_AGENT in v["text"] and
          "agent %s:" % AGENT_ID not in v["text"] and "agent %s: seq 1 altered" % SICK_AGENT in v["text"],
          "verify %s %r" % (v["status"], v["text"][-300:]))
    row = [r for r in out["inventory"] if r[1] == "/usr/bin/curl" and r[2] == "openai"][0]
    check(row[12] == "unreviewed" and row[11].endswith(" USD") and float(row[11].split()[0]) > 0,
          "inventory row before %r" % row)
    check(any(r[1] == "soc-admin" and r[2] == "/usr/bin/curl" and r[3] == "openai" and r[4] == "approved"
              for r in out["reviews"]), "no audited review row %r" % out["reviews"])
    audit = COL.query_json("--kind", "review", "--exe", "/usr/bin/curl")
    check(len(audit) == 1 and audit[0]["user"] == "soc-admin" and audit[0]["action"] == "approved",
          "the approval is not an audit record: %r" % audit)
    check(out["after_logout"] == {"token": None, "login": True}, "logout %r" % out["after_logout"])
    check(out["analyst_buttons"] == 0 and out["analyst_post"] == 403,
          "analyst: %d buttons, POST %d" % (out["analyst_buttons"], out["analyst_post"]))
    check(not out["csp_violations"], "CSP violations: %r" % out["csp_violations"])
    check(not out["page_errors"], "page errors: %r" % out["page_errors"])
    docs = [r for r in out["responses"] if r["url"].startswith(spec["url"])]
    check(docs and all(r["csp"] == CSP and r["nosniff"] == "nosniff" and r["referrer"] == "no-referrer" for r in docs),
          "a response without the security headers: %r" % [r for r in docs if r["csp"] != CSP][:3])


@test
def collector_stops_clean():
    """Last: the collector that served all of the above stops without a
    sanitizer report (SAN=1 builds) or a crash."""
    fill()
    COL.stop()
    check(COL.proc.returncode == 0, "collector exited %s: %s" % (COL.proc.returncode, COL.tail(10)))
    with open(COL.log) as f:
        log = f.read()
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error", "UndefinedBehaviorSanitizer"):
        check(bad not in log, "collector log has %s: %s" % (bad, log[log.find(bad) - 200:][:1200]))


if __name__ == "__main__":
    lib.main()
