"""End-to-end: the streams of one HTTP/2 connection are served concurrently.

Through the real BPF redirect and agent, a raw h2 client (h2_client.py,
mode mux) opens several streams on ONE connection: a slow SSE answer no
longer holds back a quick request behind it (head-of-line blocking), 20
concurrent streams are each inspected, redacted and audited once, and a
client that resets one stream mid-answer cancels only that stream (its
upstream is closed, not pooled) while the connection goes on.
"""
import json
import os
import subprocess
import time

import lib
from lib import check, test
import rig as rigmod

GOOD = "127.97.0.2"
POLICY = """version: 1
default: allow
redaction:
  EMAIL: tokenize
rules:
  - name: pii
    when: { finding: [EMAIL] }
    action: redact
"""
RIG = rigmod.Rig("h2mux", {"api.openai.com": GOOD}, {"good": (GOOD, "good", 0)},
                 agent_extra="http2:\n  max_concurrent_streams: 32\n")
with open(os.path.join(RIG.tmp, "policy.yaml"), "w") as f:
    f.write(POLICY)
with open(RIG.agent.config, "a") as f:
    f.write("policy: %s\n" % os.path.join(RIG.tmp, "policy.yaml"))
RIG.agent.start(timeout=120 if lib.SAN else 30)
HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "h2_client.py")
PATH = "/v1/chat/completions"
AUTH = [["authorization", "Bearer sk-test"], ["content-type", "application/json"]]


def chat(text, stream=False):
    return json.dumps({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": text}]})


def mux(spec, timeout=90):
    p = lib.run(["/usr/bin/python3", HELPER, "--ca", RIG.ca, "mux", json.dumps(spec)], cgroup=RIG.cg.path,
                hosts=RIG.hosts, timeout=timeout)
    check(p.stdout.strip(), "h2_client printed nothing: %s" % p.stderr[-600:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def slow_sse(text, delay_ms=300, **kw):
    return dict(path=PATH, body=chat(text, stream=True), headers=AUTH + [["x-fake-delay-ms", str(delay_ms)]], **kw)


def alive(tag):
    check(RIG.agent.proc.poll() is None, "the agent died after %s: %s" % (tag, RIG.agent.log_tail()))


@test
def slow_sse_stream_does_not_block_a_quick_one():
    res = mux([slow_sse("one two three four five six seven eight"),
               dict(path=PATH, body=chat("quick one"), headers=AUTH)])
    st = res["streams"]
    s1, s3 = st.get("1", {}), st.get("3", {})
    check(s1.get("status") == 200 and s1.get("end") and s3.get("status") == 200 and s3.get("end"),
          "both streams answered whole: %s" % st)
    check("echo: quick one" in s3["body"], "the quick answer: %r" % s3["body"][:200])
    order = res["order"]
    check([o[0] for o in order] == [3, 1], "the quick stream did not end first: %s" % order)
    # the slow one sends 8 words 300 ms apart: the quick one ends well before
    check(order[1][1] - order[0][1] > 1.0, "the quick stream waited for the slow one: %s" % order)
    alive("a slow and a quick stream")


@test
def twenty_concurrent_streams_each_inspected_and_audited():
    before = len(RIG.received())
    n_ev = len(RIG.request_events(lambda e: True, n=0, timeout=0))
    spec = [dict(path=PATH, body=chat("stream %d: write to user%d@example.com" % (i, i)),
                 headers=AUTH + [["x-fake-header-delay-ms", "200"]]) for i in range(20)]
    res = mux(spec)
    st = res["streams"]
    ok = [k for k, s in st.items() if s["status"] == 200 and s["end"]]
    check(len(ok) == 20, "not all 20 streams were answered: %d (%s)" % (len(ok), [s for s in st.values()][:3]))
    for i in range(20):
        body = st[str(1 + 2 * i)]["body"]
        check("echo: stream %d: write to user%d@example.com" % (i, i) in body,
              "stream %d did not get its own answer, restored: %r" % (1 + 2 * i, body[:200]))
    got = RIG.received()[before:]
    check(len(got) == 20, "the provider got %d requests, not 20" % len(got))
    for g in got:
        check("@example.com" not in g["body"] and "[[VGL_EMAIL_" in g["body"],
              "an address reached the provider: %r" % g["body"][:200])
    # concurrent: 20 answers each delayed 200 ms took far less than 20 x 200 ms
    last = max(o[1] for o in res["order"])
    check(last < 3.0, "20 streams of 200 ms each took %.2f s: not served concurrently" % last)
    evs = RIG.request_events(lambda e: True, n=n_ev + 20, timeout=10)[n_ev:]
    check(len(evs) == 20, "%d request events for 20 streams" % len(evs))
    check(all(e["action"] == "redact" and e["findings"] == [{"type": "EMAIL", "count": 1}] for e in evs),
          "events without the EMAIL finding: %s" % [(e["action"], e.get("findings")) for e in evs][:5])
    alive("20 streams")


@test
def reset_mid_answer_cancels_only_that_stream():
    before = len(RIG.received())
    n_ev = len(RIG.request_events(lambda e: True, n=0, timeout=0))
    res = mux([slow_sse("alpha beta gamma delta epsilon zeta eta theta iota kappa", rst_on_data=True),
               slow_sse("one two three four", delay_ms=100),
               dict(path=PATH, body=chat("after the reset"), headers=AUTH, after=1)])
    st = res["streams"]
    check(st.get("1", {}).get("rst") == "client", "stream 1 was not reset by the client: %s" % st.get("1"))
    check(not st["1"]["end"], "stream 1 ended cleanly after its reset: %s" % st["1"])
    for sid in ("3", "5"):
        s = st.get(sid, {})
        check(s.get("status") == 200 and s.get("end") and s.get("rst") is None,
              "stream %s did not go on after stream 1's reset: %s" % (sid, s))
    check("echo: after the reset" in st["5"]["body"], "stream 5's answer %r" % st["5"]["body"][:200])
    check(res["goaway"] is None and not res["closed"], "the connection was ended: %s" % res)
    check(len(RIG.received()) - before == 3, "the provider got %d requests" % (len(RIG.received()) - before))
    # every stream audited once, the reset one too (its answer cut short)
    evs = RIG.request_events(lambda e: True, n=n_ev + 3, timeout=10)[n_ev:]
    check(len(evs) == 3, "%d request events for 3 streams" % len(evs))
    cut = [e for e in evs if e.get("error")]
    check([e["error"] for e in cut] == ["client reset the stream"],
          "the reset stream's event should say so: %s" % [(e.get("status"), e.get("error")) for e in evs])
    alive("a reset mid-answer")


@test
def reset_while_the_provider_thinks_ends_that_exchange_at_once():
    """A stream cancelled before its answer has begun (the provider takes
    6 s to answer): the agent drops that upstream exchange at the reset
    and audits it then, instead of waiting out the provider's answer (and
    its meter); the connection serves the next stream meanwhile."""
    n_ev = len(RIG.request_events(lambda e: True, n=0, timeout=0))
    t0 = time.time()
    res = mux([dict(path=PATH, body=chat("think it over"), headers=AUTH + [["x-fake-header-delay-ms", "6000"]],
                    rst_after=0.5),
               dict(path=PATH, body=chat("next one"), headers=AUTH, after=1)])
    st = res["streams"]
    check(st.get("1", {}).get("rst") == "client", "stream 1 was not reset by the client: %s" % st.get("1"))
    check(st.get("3", {}).get("status") == 200 and "echo: next one" in st["3"]["body"],
          "the stream after the reset: %s" % st.get("3"))
    evs = RIG.request_events(lambda e: True, n=n_ev + 2, timeout=10)[n_ev:]
    took = time.time() - t0
    check(len(evs) == 2, "%d request events for 2 streams" % len(evs))
    check([e.get("error") for e in evs if e.get("error")] == ["client reset the stream"],
          "the reset stream's event should say so: %s" % [(e.get("status"), e.get("error")) for e in evs])
    check(took < 3.0, "the reset exchange was audited %.1f s after it began: the agent waited for the "
          "provider's answer (6 s) instead of ending it at the reset (0.5 s)" % took)
    alive("a reset before the answer")


@test
def a_client_that_never_opens_its_window_holds_only_its_own_streams():
    """16 streams whose client never sends WINDOW_UPDATE (initial window
    0): their workers block on their own queues; a stream on another
    connection is answered at once meanwhile, and when the staller goes,
    its streams are audited and the agent goes on."""
    n_ev = len(RIG.request_events(lambda e: True, n=0, timeout=0))
    # a small request (the client keeps within the agent's receive window),
    # a long answer: 1,500 events of one character each
    words = "x" * 1500
    staller = lib.spawn(["/usr/bin/python3", HELPER, "--ca", RIG.ca, "stall", "16", "4", chat(words, stream=True),
                         "x-fake-split: 1"],
                        cgroup=RIG.cg.path, hosts=RIG.hosts, stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    res = mux([dict(path=PATH, body=chat("meanwhile"), headers=AUTH)])
    s1 = res["streams"].get("1", {})
    check(s1.get("status") == 200 and s1.get("end") and res["order"][0][1] < 3.0,
          "another connection was not served while a client stalled 16 streams: %s" % res)
    out, _ = staller.communicate(timeout=60)
    rep = json.loads(out.strip().splitlines()[-1])
    st = rep["streams"]
    check(len(st) == 16 and all(v["status"] == 200 and not v["end"] for v in st.values()),
          "the stalled streams: %s" % json.dumps(rep)[:600])
    evs = RIG.request_events(lambda e: True, n=n_ev + 17, timeout=20)[n_ev:]
    check(len(evs) == 17, "%d request events for 17 streams" % len(evs))
    alive("a client that never reads")


@test
def agent_stops_cleanly_without_a_sanitizer_report():
    """Last: every case above ran in this agent (run with SAN=1 too)."""
    status = RIG.agent.stop()
    check(status == 0, "agent exit status %s on SIGTERM" % status)
    with open(RIG.agent.stderr_path) as f:
        log = f.read()
    for sign in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer", "ThreadSanitizer"):
        check(sign not in log, "sanitizer report in the agent's stderr: %s" % log[log.find(sign):][:800])


if __name__ == "__main__":
    lib.main()
