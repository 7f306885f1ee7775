"""End-to-end: agent -> collector -> SOC, with the real binaries.

A collector (pki init, enroll, SQLite store) receives what the real agent
audits while real clients (curl, as user nobody, in a scratch cgroup) call a
fake provider through the real BPF redirect. Then `vigil query` must return
those events with the kernel's identity, the findings and the actions;
`vigil verify` must pass, and fail naming the problem after a row of the
store is altered or deleted. Also: API roles (401/403), export formats, the
syslog forward, /metrics, revocation refusing enrollment.
"""
import base64
import csv
import io
import json
import os
import re
import sqlite3
import subprocess
import time

import lib
from lib import check, test
import rig as rigmod

from collector_tools import VIGIL, COLLECTOR, ADMIN_T, ANALYST_T, METRICS_T, Collector, ClickHouse
from colrig import enroll_rig
AWS_KEY = "AKIA" + "Z7QW3RT5YU2IO4PL"   # split so this file itself is not a credential finding
AGENT_ID = "e2e-ws1"


# VIGIL_COLLECTOR_STORE=clickhouse (tests/e2e/test_collector_clickhouse.py) runs
# this whole file against a ClickHouse server: same questions, same answers.
STORE_KIND = os.environ.get("VIGIL_COLLECTOR_STORE", "sqlite")
GOOD = "127.0.60.2" if STORE_KIND == "sqlite" else "127.0.61.2"
RIG = rigmod.Rig("collector-" + STORE_KIND, {"api.openai.com": GOOD, "api.anthropic.com": GOOD}, {"good": (GOOD, "good", 0)})
CH = ClickHouse(RIG.tmp) if STORE_KIND == "clickhouse" else None
COL = Collector(RIG.tmp, store="clickhouse://127.0.0.1:%d/vigil" % CH.http if CH else None)
COL.start()
enroll_rig(COL, RIG, AGENT_ID)
RIG.agent.start()

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "%s"}]}


def chat(text):
    body = json.loads(json.dumps(CHAT))
    body["messages"][0]["content"] = text
    return RIG.curl("https://api.openai.com/v1/chat/completions", json.dumps(body))


def wait_rows(pred, n, *args, timeout=30):
    deadline = time.time() + timeout
    while True:
        rows = [r for r in COL.query_json(*args) if pred(r)]
        if len(rows) >= n or time.time() > deadline:
            return rows
        time.sleep(0.3)


@test
def events_reach_collector_with_identity_findings_and_actions():
    code, _, p = chat("plain question")
    check(code == 200, "clean request: %s %s" % (code, p.stderr))
    code, _, _ = chat("mail jane.doe@example.com please")
    check(code == 200, "email request: %s" % code)
    code, _, _ = chat("my key is " + AWS_KEY)
    check(code == 403, "credential request not blocked: %s" % code)
    body = json.loads(json.dumps(CHAT))
    body["messages"][0]["content"] = "and the answer?"
    code, _, _ = RIG.curl("https://api.openai.com/v1/chat/completions", json.dumps(body),
                          extra=["-H", lib.fake_answer("reach carol@example.net")])
    check(code == 200, "request with a PII answer: %s" % code)
    rows = wait_rows(lambda r: r["kind"] == "request" and r["user"] == "nobody", 4, "--user", "nobody")
    check(len(rows) >= 4, "collector has %d request events of nobody after 30 s; collector log: %s; agent log: %s"
          % (len(rows), COL.tail(8), RIG.agent.log_tail(8)))
    for r in rows:
        check(r["agent_id"] == AGENT_ID and r["uid"] == lib.NOBODY, "identity %s/%s" % (r["agent_id"], r["uid"]))
        check(r["exe"].endswith("curl") and r["provider"] == "openai" and r["model"] == "gpt-4o-mini",
              "process/provider %s %s %s" % (r["exe"], r["provider"], r["model"]))
        check(r["sni"] == "api.openai.com" and r["dst_ip"] == GOOD, "destination %s %s" % (r["sni"], r["dst_ip"]))
        check(len(r["hash"]) == 64 and len(r["prev_hash"]) == 64, "hashes %s" % r["hash"])
    blocked = [r for r in rows if r["action"] == "block"]
    check(blocked and {"type": "AWS_ACCESS_KEY", "count": 1} in blocked[0]["findings"],
          "blocked event with AWS_ACCESS_KEY missing: %s" % [(r["action"], r["findings"]) for r in rows])
    redacted = [r for r in rows if r["action"] == "redact"]
    check(redacted and redacted[0]["findings"] == [{"type": "EMAIL", "count": 1}], "redact event: %s" % redacted)
    answered = [r for r in rows if r.get("output_findings")]
    check(answered and answered[0]["output_findings"] == [{"type": "EMAIL", "count": 1}] and
          answered[0]["findings"] == [], "findings in the answer not at the collector: %s" %
          [(r["action"], r.get("output_findings")) for r in rows])
    # The collector's rows are the agent's events, field for field.
    local = {e["event_id"]: e for e in RIG.agent.events("request")}
    for r in rows:
        e = local.get(r["event_id"])
        check(e is not None, "event %s is not in the agent's audit log" % r["event_id"])
        for k in ("hash", "prev_hash", "seq", "user", "action", "findings", "output_findings", "time", "exe", "pid"):
            check(e[k] == r[k], "field %s differs: agent %r collector %r" % (k, e[k], r[k]))


@test
def query_filters_formats_and_aggregates():
    rows = COL.query_json("--finding", "EMAIL", "--since", "1h")
    check(rows and all(any(f["type"] == "EMAIL" for f in r["findings"]) for r in rows), "--finding EMAIL: %s" % rows)
    rows = COL.query_json("--action", "block")
    check(rows and all(r["action"] == "block" for r in rows), "--action block: %s" % rows)
    check(COL.query_json("--action", "block", "--user", "root") == [], "--user root matched nobody's events")
    rows = COL.query_json("--exe", "/usr/bin/curl", "--provider", "openai", "--model", "gpt-4o-mini", "--kind", "request",
                          "--host", rows[0]["host"], "--limit", "2")
    check(len(rows) == 2, "combined filters with --limit 2 gave %d rows" % len(rows))
    p = COL.vigil("query", "--csv", "--user", "nobody", "--kind", "request")
    check(p.returncode == 0, "csv: %s" % p.stderr)
    table = list(csv.DictReader(io.StringIO(p.stdout)))
    check(len(table) >= 3 and table[0]["user"] == "nobody" and "findings" in table[0], "csv rows %s" % table[:1])
    p = COL.vigil("query", "--user", "nobody")
    lines = p.stdout.splitlines()
    check(p.returncode == 0 and lines[0].startswith("TIME") and "USER" in lines[0] and "FINDINGS" in lines[0],
          "table header: %r" % lines[:1])
    col = lines[0].index("USER")
    check(all(l[col:col + 6] == "nobody" for l in lines[1:-1]), "USER column not aligned: %r" % lines[:4])
    p = COL.vigil("query", "--top", "users", "--since", "7d", "--json")
    top = [json.loads(l) for l in p.stdout.splitlines()]
    check(p.returncode == 0 and any(t["key"] == "nobody" and t["events"] >= 3 and t["blocked"] >= 1 for t in top),
          "--top users: %s %s" % (top, p.stderr))
    p = COL.vigil("query", "--top", "findings", "--since", "7d")
    check(p.returncode == 0 and "AWS_ACCESS_KEY" in p.stdout and "EMAIL" in p.stdout, "--top findings: %s" % p.stdout)
    p = COL.vigil("query", "--since", "yesterday")
    check(p.returncode == 2 and "duration" in p.stderr, "bad --since: exit %d %s" % (p.returncode, p.stderr))


@test
def api_roles_enforced():
    code, _ = COL.http("GET", "/api/v1/events")
    check(code == 401, "no token: %d" % code)
    code, _ = COL.http("GET", "/api/v1/events", token="not-a-token-at-all-xx")
    check(code == 401, "unknown token: %d" % code)
    p = COL.vigil("query", token=METRICS_T)
    check(p.returncode != 0 and "403" in p.stderr, "a token without the analyst role: exit %d %s" % (p.returncode, p.stderr))
    code, body = COL.http("POST", "/api/v1/enroll?agent_id=new-ws", token=ANALYST_T)
    check(code == 403, "analyst enrolling: %d %s" % (code, body))
    code, body = COL.http("POST", "/api/v1/enroll?agent_id=new-ws", token=ADMIN_T)
    check(code == 200 and "BEGIN CERTIFICATE" in json.loads(body)["cert_pem"], "admin enroll: %d %s" % (code, body[:200]))
    code, body = COL.http("POST", "/api/v1/revoke?agent_id=new-ws", token=ADMIN_T)
    check(code == 200, "admin revoke: %d %s" % (code, body))
    code, body = COL.http("POST", "/api/v1/enroll?agent_id=new-ws", token=ADMIN_T)
    check(code == 403 and "revoked" in body, "enrolling a revoked id: %d %s" % (code, body))
    code, body = COL.http("GET", "/metrics")
    check(code == 200 and 'vigil_collector_events_total{action="block"}' in body and "vigil_collector_lag_seconds" in body,
          "metrics: %d %s" % (code, body[:300]))
    # The agent shipping right now is active; silent agents are a gauge the SOC alerts on.
    m = re.search(r'vigil_collector_agents\{state="active"\} (\d+)', body)
    check(m and int(m.group(1)) >= 1 and 'vigil_collector_agents{state="silent"}' in body,
          "silent/active agent gauge missing: %s" % body[-400:])


@test
def revoked_agent_id_cannot_enroll():
    p = subprocess.run([COLLECTOR, "revoke", "--agent-id", "gone-ws", "--config", COL.config], capture_output=True, text=True)
    check(p.returncode == 0, "revoke: %s" % p.stderr)
    p = COL.enroll("gone-ws", os.path.join(RIG.tmp, "gone"))
    check(p.returncode != 0 and "revoked" in p.stderr, "enroll of a revoked id: exit %d %s" % (p.returncode, p.stderr))


@test
def export_formats_and_syslog_forward():
    for fmt, probe in (("jsonl", '"agent_id":"%s"' % AGENT_ID), ("cef", "CEF:0|Vigil|vigil-collector|"),
                       ("syslog", "[vigil@32473 ")):
        p = subprocess.run([COLLECTOR, "export", "--format", fmt, "--since", "1h", "--config", COL.config],
                           capture_output=True, text=True)
        check(p.returncode == 0 and probe in p.stdout, "export %s: exit %d %s %s" % (fmt, p.returncode, p.stderr, p.stdout[:200]))
        if fmt == "syslog":
            line = [l for l in p.stdout.splitlines() if "nobody" in l][0]
            check(re.match(r"^<\d{1,3}>1 \d{4}-\d\d-\d\dT[0-9:.]+Z \S+ vigil-collector - request \[vigil@32473 ", line),
                  "not RFC 5424: %r" % line[:100])
    deadline = time.time() + 5
    while time.time() < deadline and not any("nobody" in l for l in COL.syslog_lines):
        time.sleep(0.1)
    check(any("nobody" in l and "vigil-collector" in l for l in COL.syslog_lines),
          "no forwarded syslog line: %s" % COL.syslog_lines[:2])


@test
def verify_passes_then_names_altered_and_deleted_rows():
    p = COL.vigil("verify")
    check(p.returncode == 0 and "INTACT" in p.stdout, "verify on an intact store: exit %d %s %s" % (p.returncode, p.stdout, p.stderr))
    if CH:
        seq, user = CH.sql("SELECT seq, `user` FROM events WHERE agent_id = '%s' AND kind = 'request' ORDER BY seq"
                           " LIMIT 1 FORMAT TabSeparated" % AGENT_ID).split()
        seq = int(seq)
        alter = lambda u: CH.mutate("ALTER TABLE events UPDATE `user` = '%s' WHERE agent_id = '%s' AND seq = %d"
                                    % (u, AGENT_ID, seq))
        delete = lambda: CH.mutate("ALTER TABLE events DELETE WHERE agent_id = '%s' AND seq = %d" % (AGENT_ID, seq))
    else:
        db = sqlite3.connect(COL.db, timeout=10)
        seq, user = db.execute("SELECT seq, user FROM events WHERE agent_id = ? AND kind = 'request' ORDER BY seq LIMIT 1",
                               (AGENT_ID,)).fetchone()

        def alter(u):
            db.execute("UPDATE events SET user = ? WHERE agent_id = ? AND seq = ?", (u, AGENT_ID, seq))
            db.commit()

        def delete():
            db.execute("DELETE FROM events WHERE agent_id = ? AND seq = ?", (AGENT_ID, seq))
            db.commit()
    alter("root")
    p = COL.vigil("verify")
    check(p.returncode == 1 and ("seq %d altered" % seq) in p.stdout and "column user" in p.stdout,
          "altered row: exit %d %s" % (p.returncode, p.stdout))
    alter(user)
    p = COL.vigil("verify")
    check(p.returncode == 0, "restored row still fails: %s" % p.stdout)
    delete()
    p = COL.vigil("verify")
    check(p.returncode == 1 and ("events %d..%d missing" % (seq, seq)) in p.stdout,
          "deleted row: exit %d %s" % (p.returncode, p.stdout))


@test
def collector_check_reports_file_and_line():
    bad = os.path.join(COL.dir, "bad.yaml")
    with open(bad, "w") as f:
        f.write("listen: 127.0.0.1:1\nstore: sqlite:/tmp/x.db\nbogus_key: 1\n")
    p = subprocess.run([COLLECTOR, "--config", bad, "--check"], capture_output=True, text=True)
    check(p.returncode == 2 and ("%s:3:" % bad) in p.stderr, "--check: exit %d %s" % (p.returncode, p.stderr))
    p = subprocess.run([COLLECTOR, "--config", COL.config, "--check"], capture_output=True, text=True)
    check(p.returncode == 0, "--check on the good config: %s" % p.stderr)


if __name__ == "__main__":
    lib.main()
