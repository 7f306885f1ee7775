"""End-to-end: inspection and redaction through the real BPF redirect.

Without a policy file the agent applies its default table: credentials
block the request (it never reaches the provider), personal data leaves
redacted, and a request with no finding is forwarded byte for byte. The
official SDKs must surface a block as a readable error naming the rule.
"""
import json

import lib
from lib import check, test
import rig as rigmod

GOOD = "127.0.40.2"
METRICS_PORT = lib.free_port()
RIG = rigmod.Rig("redact", {"api.openai.com": GOOD, "api.anthropic.com": GOOD}, {"good": (GOOD, "good", 0)},
                 agent_extra="metrics: 127.0.0.1:%d\n" % METRICS_PORT)
RIG.agent.start()
AWS_KEY = "AKIA" + "Z7QW3RT5YU2IO4PL"   # split so this file itself is not a credential finding


def last_received():
    got = RIG.received()
    return got[-1] if got else None


@test
def clean_request_forwarded_byte_for_byte():
    body = '{"model":"gpt-4o-mini",  "messages":[{"role":"user","content":"plain \\u0041SCII text"}]}'
    code, out, p = RIG.curl("https://api.openai.com/v1/chat/completions", body)
    check(code == 200, "status %s %s" % (code, p.stderr))
    check(last_received()["body"] == body, "a request without findings was altered: %r" % last_received()["body"])


@test
def email_redacted_before_it_leaves():
    res, p = RIG.node("openai_chat.mjs", "--message", "mail the report to jane.doe@example.com today")
    check("error" not in res, "SDK call failed: %s" % res)
    got = last_received()
    check("jane.doe@example.com" not in got["body"], "the provider received the raw e-mail address")
    sent = json.loads(got["body"])["messages"][0]["content"]
    check(sent == "mail the report to [EMAIL_1] today", "redacted text %r" % sent)
    check(res["content"] == "echo: mail the report to [EMAIL_1] today", "answer %r" % res["content"])
    evs = RIG.request_events(lambda e: e["action"] == "redact")
    check(evs and evs[-1]["findings"] == [{"type": "EMAIL", "count": 1}] and evs[-1]["rule"] == "default:pii",
          "redaction not audited: %s" % evs[-1:])
    with open(RIG.agent.audit_log) as f:
        check("jane.doe@example.com" not in f.read(), "the raw value reached the audit log")


@test
def findings_in_the_answer_are_audited_streamed_or_not():
    """The model's answer is scanned as it passes (the client still gets it
    whole): what it contains is reported in output_findings, by type and
    count, never the values; the request's own findings stay separate."""
    answer = "Sure: write to bob.smith@example.org, key %s" % AWS_KEY
    for stream in (False, True):
        tag = "out-%s" % stream
        body = json.dumps({"model": "gpt-4o-mini", "stream": stream,
                           "messages": [{"role": "user", "content": "who do I contact? " + tag}]})
        # 3-character SSE pieces: the e-mail and the key are split across events.
        code, out, p = RIG.curl("https://api.openai.com/v1/chat/completions", body,
                                extra=["-H", lib.fake_answer(answer),
                                       "-H", "x-fake-split: 3"])
        check(code == 200, "status %s %s" % (code, p.stderr))
        if stream:
            chunks = [json.loads(l[6:]) for l in out.splitlines() if l.startswith("data: {")]
            got_text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        else:
            got_text = json.loads(out)["choices"][0]["message"]["content"]
        check(got_text == answer, "the answer did not reach the client intact (stream=%s): %r" % (stream, got_text))
        evs = RIG.request_events(lambda e: e.get("output_findings") and e.get("stream") == stream)
        check(evs, "no event with output findings (stream=%s): %s" % (stream, RIG.agent.events("request")[-1:]))
        ev = evs[-1]
        got = {f["type"]: f["count"] for f in ev["output_findings"]}
        check(got == {"EMAIL": 1, "AWS_ACCESS_KEY": 1}, "output findings %s (stream=%s)" % (got, stream))
        check(ev["findings"] == [] and ev["action"] == "allow", "the clean request got findings: %s" % ev)
    with open(RIG.agent.audit_log) as f:
        text = f.read()
    check("bob.smith@example.org" not in text and AWS_KEY not in text, "a value from the answer reached the audit log")


@test
def escaped_email_is_still_found():
    body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"write to john\\u0040example.com"}]}'
    code, out, p = RIG.curl("https://api.openai.com/v1/chat/completions", body)
    check(code == 200, "status %s" % code)
    got = json.loads(last_received()["body"])
    check(got["messages"][0]["content"] == "write to [EMAIL_1]", "escape evaded the detector: %r" % got)


@test
def secret_blocked_and_sdk_reports_rule():
    before = len(RIG.received())
    res, p = RIG.node("openai_chat.mjs", "--message", "my key is %s please debug" % AWS_KEY)
    check("error" in res, "a request with an AWS key was not blocked: %s" % res)
    check(res["error"]["status"] == 403, "status %s" % res["error"])
    check("default:secrets" in res["error"]["message"] and "AWS_ACCESS_KEY" in res["error"]["message"],
          "the SDK error does not name the rule and type: %s" % res["error"]["message"])
    check(AWS_KEY not in json.dumps(res), "the error echoes the secret")
    check(len(RIG.received()) == before, "the blocked request reached the provider")
    evs = RIG.request_events(lambda e: e["action"] == "block" and e["status"] == 403)
    check(evs and evs[-1]["findings"] == [{"type": "AWS_ACCESS_KEY", "count": 1}], "block not audited: %s" % evs[-1:])


@test
def anthropic_secret_blocked_in_anthropic_shape():
    res, p = RIG.node("anthropic_msg.mjs", "--message", "token ghp_" + "R7dK2mQ9xW4vL8nT3pZ6yB1cF5hJ0sA2gE7u")
    check("error" in res and res["error"]["status"] == 403, "not blocked: %s" % res)
    body = res["error"].get("body") or {}
    check(json.dumps(body).find("permission_error") >= 0, "error not in Anthropic's shape: %s" % res["error"])


@test
def streaming_request_with_pii_redacted():
    res, p = RIG.node("openai_chat.mjs", "--message", "call 4111 1111 1111 1111 now", "--stream")
    check("error" not in res, "stream failed: %s" % res)
    got = last_received()
    check("4111 1111 1111 1111" not in got["body"], "card number reached the provider")
    check(res["content"] == "echo: call [CREDIT_CARD_1] now", "streamed answer %r" % res["content"])


@test
def agent_metrics_count_requests_by_action():
    import urllib.request
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % METRICS_PORT, timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, v = line.rpartition(" ")
            values[name] = float(v)
    evs = RIG.agent.events("request")
    for action in ("allow", "redact", "block"):
        want = len([e for e in evs if e["action"] == action])
        got = values.get('vigil_agent_requests_total{action="%s"}' % action)
        check(got == want, "metrics say %s %s requests, the audit log %d" % (got, action, want))
    check(values.get('vigil_agent_connections_total{outcome="intercepted"}', 0) >= 1, "no intercepted connections")
    check("vigil_agent_spool_bytes" in values and "vigil_agent_ship_lag_events" in values, "spool metrics missing")


if __name__ == "__main__":
    lib.main()
