"""End-to-end, ClickHouse store: SIEM forwarding and the alert detectors page
on the commit order the collector assigns in ClickHouse (migration 4,
events.ingest_seq).

A real agent audits real curl clients (as nobody, in a scratch cgroup,
through the BPF redirect) calling a fake provider, and ships to a collector
whose store is a real ClickHouse server (Debian's clickhouse-server on
loopback). The collector forwards OTLP to a local receiver and runs the
detectors: every stored event must reach the receiver exactly once, also
across a collector restart (the durable cursor), and a burst of blocked
requests must raise an alert. Without forward_state the ClickHouse store is
refused with a reason. Cached prompt tokens (the fake provider reports them
in OpenAI's, Anthropic's and Gemini's own fields, streamed or not) reach the
event and are priced at cached_input.

Listens on 127.88.0.0/16 (ClickHouse itself on 127.0.0.1, as collector_tools
starts it).
"""
import json
import os
import subprocess
import time

import lib
from lib import check, test
import rig as rigmod
from collector_tools import COLLECTOR, ADMIN_T, Collector, ClickHouse
from colrig import enroll_rig
_ops_tests = len(lib._tests)
from test_collector_ops import Receiver, otlp_records, otlp_attrs, wait_for  # noqa: E402
del lib._tests[_ops_tests:]   # its helpers only, not its tests

HOST, GOOD, RX = "127.88.0.1", "127.88.0.2", "127.88.0.3"
AWS_KEY = "AKIA" + "Z7QW3RT5YU2IO4PL"   # split so this file itself is not a credential finding
AGENT_ID = "e2e-chfwd"

RIG = rigmod.Rig("chfwd", {"api.openai.com": GOOD, "api.anthropic.com": GOOD,
                          "generativelanguage.googleapis.com": GOOD}, {"good": (GOOD, "good", 0)})
CH = ClickHouse(RIG.tmp)
STORE = "clickhouse://127.0.0.1:%d/vigil" % CH.http
RXS = Receiver(RX)
STATE = os.path.join(RIG.tmp, "forward-state")
COL = Collector(RIG.tmp, store=STORE, host=HOST, name="chfwd", extra="""forward_state: %s
forward:
  - { name: otel, format: otlp, url: "http://%s:%d", batch: 4 }
alerts:
  burst_count: 3
pricing:
  - { provider: openai, model: "gpt-4o-mini*", input: 1.0, output: 2.0, cached_input: 0.1, currency: USD }
  - { provider: anthropic, model: "claude-*", input: 3.0, output: 15.0, cached_input: 0.3 }
  - { provider: gemini, model: "gemini-*", input: 2.0, output: 4.0 }
""" % (STATE, RX, RXS.port))
COL.start()
enroll_rig(COL, RIG, AGENT_ID)
RIG.agent.start()


def chat(text):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    return RIG.curl("https://api.openai.com/v1/chat/completions", json.dumps(body))[0]


def key(agent_id, seq, kind):
    """An event's name: the collector's own records (alerts) have no event_id."""
    return "%s/%s/%s" % (agent_id, seq, kind)


def forwarded():
    """keys of every OTLP log record received, repeats included."""
    out = []
    for _, b in RXS.bodies("/v1/logs"):
        for r in otlp_records(json.loads(b)):
            a = otlp_attrs(r)
            out.append(key(a["vigil.agent_id"], a["vigil.seq"], a["vigil.kind"]))
    return out


def stored():
    p = COL.vigil("query", "--json", "--since", "1d", "--limit", "10000", token=ADMIN_T)
    check(p.returncode == 0, "vigil query: %s" % p.stderr)
    rows = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    return {key(r["agent_id"], r["seq"], r["kind"]) for r in rows}


def requests_stored(n):
    return sum(1 for l in COL.vigil("query", "--json", "--kind", "request", "--since", "1d").stdout.splitlines()
               if l.strip()) >= n


def check_exactly_once(what):
    """Waits until every stored event was forwarded, then checks none twice."""
    wait_for(lambda: stored() <= set(forwarded()), "%s: stored events not forwarded: %s" %
             (what, sorted(stored() - set(forwarded()))[:5]), COL, timeout=60)
    time.sleep(3)   # more than the feed's settle window: a repeat would show up by now
    got = forwarded()
    dup = {e for e in got if got.count(e) > 1}
    check(not dup, "%s: forwarded twice: %s" % (what, sorted(dup)[:5]))
    check(set(got) == stored(), "%s: forwarded %d distinct, stored %d" % (what, len(set(got)), len(stored())))


@test
def clickhouse_forwards_every_event_once_and_alerts_on_a_burst():
    check(chat("plain question") == 200, "clean request")
    check(chat("mail jane.doe@example.com please") == 200, "email request")
    for i in range(3):
        check(chat("key %d: %s" % (i, AWS_KEY)) == 403, "credential request %d not blocked" % i)
    wait_for(lambda: requests_stored(5), "the collector did not store 5 requests", COL)
    wait_for(lambda: any(a["rule"] == "burst" for a in alerts()), "no burst alert on ClickHouse: %s" % alerts(), COL,
             timeout=60)
    burst = [a for a in alerts() if a["rule"] == "burst"]
    check(len(burst) == 1 and burst[0]["user"] == "nobody" and burst[0]["kind"] == "alert",
          "burst alerts %r" % burst)
    check_exactly_once("first run")
    kinds = {otlp_attrs(r)["vigil.kind"] for _, b in RXS.bodies("/v1/logs") for r in otlp_records(json.loads(b))}
    check({"request", "alert"} <= kinds, "forwarded kinds %s (the alert is an event too)" % kinds)
    check(os.path.exists(os.path.join(STATE, "otel.cursor")) and os.path.exists(os.path.join(STATE, "alerts.cursor")),
          "cursors not in forward_state: %s" % os.listdir(STATE))


def alerts():
    p = COL.vigil("alerts", "--json", "--since", "1d")
    check(p.returncode == 0, "vigil alerts: %s" % p.stderr)
    return [json.loads(l) for l in p.stdout.splitlines() if l.strip()]


@test
def clickhouse_forward_resumes_after_restart_without_repeats():
    """Requests audited while the collector is down reach the store after it
    comes back (the agent's spool); the forwarder resumes from its cursor:
    the new events arrive, the old ones not again. The burst alert is not
    raised a second time (the detectors' cursor)."""
    before = len(forwarded())
    COL.stop()
    check(chat("while the collector is down") == 200, "request while the collector is down")
    COL.start()
    check(chat("after the restart") == 200, "request after the restart")
    wait_for(lambda: requests_stored(7), "the collector did not store the 2 new requests", COL, timeout=60)
    check_exactly_once("after restart")
    check(len(forwarded()) > before, "nothing forwarded after the restart")
    check(sum(1 for a in alerts() if a["rule"] == "burst") == 1, "the burst was alerted again after the restart")


@test
def clickhouse_without_forward_state_is_refused():
    cases = [("forward:\n  - { name: x, format: otlp, url: \"http://%s:1\" }\n" % RX, "forward: the ClickHouse store"),
             ("alerts:\n  burst_count: 3\n", "alerts: the ClickHouse store")]
    for i, (extra, want) in enumerate(cases):
        c = Collector(RIG.tmp, store=STORE, host=HOST, name="nostate%d" % i, extra=extra)
        p = subprocess.run([COLLECTOR, "--config", c.config], capture_output=True, text=True, timeout=30)
        check(p.returncode != 0 and want + " needs forward_state" in p.stderr,
              "exit %d: %s" % (p.returncode, p.stderr[-400:]))


CACHED_CASES = [
    # (name, url, body, extra headers, model, price (input, output, cached_input))
    ("openai", "https://api.openai.com/v1/chat/completions",
     {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "cached question %s" % ("x" * 400)}]},
     [], "gpt-4o-mini", (1.0, 2.0, 0.1)),
    ("openai-stream", "https://api.openai.com/v1/chat/completions",
     {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
      "messages": [{"role": "user", "content": "streamed cached question %s" % ("y" * 400)}]},
     [], "gpt-4o-mini", (1.0, 2.0, 0.1)),
    ("anthropic-stream", "https://api.anthropic.com/v1/messages",
     {"model": "claude-3-5-haiku", "max_tokens": 64, "stream": True,
      "messages": [{"role": "user", "content": "anthropic cached %s" % ("z" * 400)}]},
     ["-H", "x-api-key: sk-ant-test", "-H", "anthropic-version: 2023-06-01"], "claude-3-5-haiku", (3.0, 15.0, 0.3)),
    ("gemini-stream", "https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-flash:streamGenerateContent?alt=sse",
     {"contents": [{"role": "user", "parts": [{"text": "gemini cached %s" % ("w" * 400)}]}]},
     [], "gemini-1.5-flash", (2.0, 4.0, None)),
]


@test
def cached_prompt_tokens_reach_the_event_and_are_priced():
    """Each provider reports 64 cached prompt tokens in its own field: the
    agent's event has cached_tokens 64 and prompt_tokens counting every
    prompt token (Anthropic's input_tokens leaves the cache out: the agent
    adds it back); the collector prices them at cached_input, or at the
    input price where the row has none (Gemini here)."""
    cached = 64
    for name, url, body, extra, model, _ in CACHED_CASES:
        raw = json.dumps(body)
        code, out, p = RIG.curl(url, raw, extra=extra + ["-H", "x-fake-cached: %d" % cached])
        check(code == 200, "%s: HTTP %d %s %s" % (name, code, out[:200], p.stderr[-200:]))
    for name, url, body, extra, model, (pin, pout, pcached) in CACHED_CASES:
        raw = json.dumps(body)
        evs = RIG.request_events(lambda e: e.get("model") == model and e.get("stream") == ("stream" in name), 1,
                                 timeout=10)
        check(evs, "%s: no audit event for %s" % (name, model))
        e = evs[-1]
        check(e["cached_tokens"] == cached and e["prompt_tokens"] == len(raw) // 4,
              "%s: prompt_tokens %s cached_tokens %s, want %d and %d" % (name, e["prompt_tokens"], e["cached_tokens"],
                                                                       len(raw) // 4, cached))
        wait_for(lambda: any(r["event_id"] == e["event_id"] for r in
                             COL.query_json("--model", model, "--since", "1h")), "%s: event not at the collector" % name,
                 COL)
        r = [r for r in COL.query_json("--model", model, "--since", "1h") if r["event_id"] == e["event_id"]][0]
        pc = pin if pcached is None else pcached
        want = ((e["prompt_tokens"] - cached) * pin + cached * pc + e["completion_tokens"] * pout) / 1e6
        check(r["cached_tokens"] == cached and abs(r["cost"] - want) < 1e-9,
              "%s: collector cached_tokens %s cost %r, want %d and %.9f" % (name, r.get("cached_tokens"),
                                                                           r.get("cost"), cached, want))


if __name__ == "__main__":
    lib.main()
