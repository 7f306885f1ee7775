"""End-to-end: the model's answer, redacted and restored, through the real
BPF redirect.

A policy answer rule (`when: { output_finding: [...] }`, `action: redact`)
redacts what the model writes before the client sees it: whole JSON
answers are rewritten in place (valid JSON, new framing), SSE streams are
redacted even when the value is split across events at any byte, and the
audit event says what was redacted (types and counts, never the values). A
value too long to hold back cuts the stream with an error event instead of
leaking. Reversible tokens live in a vault per user and program: a new
connection (a new process) of the same user and program gets its values
back, another user or another program never does, and values expire after
vault_ttl.
"""
import json
import os
import re
import time

import lib
from lib import check, test
import rig as rigmod

GOOD = "127.23.0.2"
VAULT_TTL_S = 6
POLICY = """version: 1
default: allow
redaction:
  EMAIL: tokenize
rules:
  - name: answers-watch
    when: { output_finding: [EMAIL], user: ['60120'] }
    action: redact
    mode: monitor
  - name: answers-pii
    when: { output_finding: [EMAIL, PHONE, PRIVATE_KEY] }
    action: redact
  - name: pii
    when: { finding: [EMAIL] }
    action: redact
"""

RIG = rigmod.Rig("answers", {"api.openai.com": GOOD, "api.anthropic.com": GOOD,
                             "generativelanguage.googleapis.com": GOOD}, {"good": (GOOD, "good", 0)},
                 agent_extra="vault_ttl: %ds\n" % VAULT_TTL_S)
POLICY_PATH = os.path.join(RIG.tmp, "policy.yaml")
with open(POLICY_PATH, "w") as f:
    f.write(POLICY)
with open(RIG.agent.config, "a") as f:
    f.write("policy: %s\n" % POLICY_PATH)
RIG.agent.start()

OPENAI = "https://api.openai.com/v1/chat/completions"
ANTHROPIC = "https://api.anthropic.com/v1/messages"
EMAIL = "ann.lee@corp-mail.example"
ANSWER = "Contact %s for access." % EMAIL
WANT = "Contact [EMAIL_1] for access."
TOKEN_RE = re.compile(r"\[\[VGL_EMAIL_[0-9a-f]{6}\]\]")


def chat(text, stream=False):
    return json.dumps({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": text}]})


def sse_events(out):
    """(event, data) pairs of an SSE body; every data payload must be JSON or [DONE]."""
    events, ev, data = [], None, []
    for line in out.split("\n"):
        line = line.rstrip("\r")
        if not line:
            if data:
                events.append((ev, "\n".join(data)))
            ev, data = None, []
        elif line.startswith("event:"):
            ev = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
    for e, d in events:
        check(d == "[DONE]" or json.loads(d) is not None, "an event is not valid JSON: %r" % d[:200])
    return events


def openai_stream_text(out):
    text = ""
    for _, d in sse_events(out):
        if d != "[DONE]":
            for c in json.loads(d).get("choices") or []:
                text += c.get("delta", {}).get("content") or ""
    return text


def responses_stream_text(out):
    return "".join(json.loads(d)["delta"] for e, d in sse_events(out) if e == "response.output_text.delta")


def gemini_stream_text(out):
    return "".join(p.get("text", "") for _, d in sse_events(out)
                   for c in json.loads(d).get("candidates") or [] for p in c["content"]["parts"])


def anthropic_stream_text(out):
    return "".join(json.loads(d)["delta"].get("text", "") for e, d in sse_events(out)
                   if e == "content_block_delta")


def audit_text():
    with open(RIG.agent.audit_log) as f:
        return f.read()


def last_event():
    evs = RIG.request_events(n=1)
    return evs[-1] if evs else {}


@test
def answer_email_redacted_in_json():
    for url, body, extra in ((OPENAI, chat("who do I ask?"), []),
                             (ANTHROPIC, json.dumps({"model": "claude-haiku-4-5", "max_tokens": 50,
                                                     "messages": [{"role": "user", "content": "who?"}]}),
                              ["-H", "x-api-key: k", "-H", "anthropic-version: 2023-06-01"])):
        code, out, p = RIG.curl(url, body, extra=["-H", lib.fake_answer(ANSWER)] + extra)
        check(code == 200, "status %s %s" % (code, p.stderr))
        doc = json.loads(out)   # valid JSON, whole
        text = doc["choices"][0]["message"]["content"] if url == OPENAI else doc["content"][0]["text"]
        check(text == WANT, "answer %r" % text)
        check(EMAIL not in out, "the raw e-mail reached the client")
        if url == OPENAI:
            check(doc["usage"]["completion_tokens"] > 0 and doc["id"].startswith("chatcmpl-"),
                  "the rest of the document changed: %s" % out[:300])
    ev = last_event()
    check("answer redacted by rule 'answers-pii': EMAIL 1" in (ev.get("reason") or ""),
          "the event does not say what was redacted: %s" % ev.get("reason"))
    check({"type": "EMAIL", "count": 1} in ev.get("output_findings", []), "output_findings %s" % ev)
    check(ev.get("output_redacted") == [{"type": "EMAIL", "count": 1}], "output_redacted %s" % ev.get("output_redacted"))
    check(EMAIL not in audit_text(), "the raw value reached the audit log")


@test
def monitor_answer_rule_only_reports():
    code, out, p = RIG.curl(OPENAI, chat("who? (monitored)"), uid=60120, extra=["-H", lib.fake_answer(ANSWER)])
    check(code == 200, "status %s" % code)
    check(json.loads(out)["choices"][0]["message"]["content"] == ANSWER, "a monitor rule altered the answer")
    ev = last_event()
    check("monitor: answer rule 'answers-watch' would redact" in (ev.get("reason") or "") and
          not ev.get("output_redacted"), "monitor decision not reported: %s" % ev.get("reason"))


@test
def sdk_gets_redacted_answer_streamed_or_not():
    for extra in ([], ["--stream", "--header", "x-fake-split: 2"]):
        res, p = RIG.node("openai_chat.mjs", "--message", "who?", "--header", lib.fake_answer(ANSWER), *extra)
        check("error" not in res, "SDK call failed: %s" % res)
        check(res["content"] == WANT, "SDK answer %r (%s)" % (res["content"], extra))


@test
def answer_email_redacted_in_sse_split_at_every_byte():
    # every event one byte
    for url, body, extra, text_of in (
            (OPENAI, chat("who?", True), [], openai_stream_text),
            (ANTHROPIC, json.dumps({"model": "claude-haiku-4-5", "max_tokens": 50, "stream": True,
                                    "messages": [{"role": "user", "content": "who?"}]}),
             ["-H", "x-api-key: k", "-H", "anthropic-version: 2023-06-01"], anthropic_stream_text),
            ("https://api.openai.com/v1/responses", json.dumps({"model": "gpt-4o-mini", "stream": True, "input": "who?"}),
             [], responses_stream_text),
            ("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
             json.dumps({"contents": [{"role": "user", "parts": [{"text": "who?"}]}]}),
             ["-H", "x-goog-api-key: k"], gemini_stream_text)):
        code, out, p = RIG.curl(url, body, extra=["-H", lib.fake_answer(ANSWER), "-H", "x-fake-split: 1"] + extra)
        check(code == 200, "status %s %s" % (code, p.stderr))
        check(EMAIL not in out and "ann.lee" not in text_of(out), "raw value in the stream")
        check(text_of(out) == WANT, "1-byte pieces (%s): %r" % (url, text_of(out)))
        if url == OPENAI:
            check(out.rstrip().endswith("data: [DONE]"), "stream does not end with [DONE]: %r" % out[-80:])
    # the value cut in two at each of its positions
    start = ANSWER.index(EMAIL)
    for k in range(start, start + len(EMAIL) + 1):
        code, out, p = RIG.curl(OPENAI, chat("who? %d" % k, True),
                                extra=["-H", lib.fake_answer(ANSWER), "-H", "x-fake-split-at: %d" % k])
        check(code == 200, "status %s" % code)
        check(openai_stream_text(out) == WANT, "split at %d: %r" % (k, openai_stream_text(out)))
        check(EMAIL not in out, "raw value in the stream split at %d" % k)
    evs = RIG.request_events(lambda e: e.get("stream") and "EMAIL 1" in (e.get("reason") or ""),
                             n=len(EMAIL) + 3)
    check(len(evs) >= len(EMAIL) + 3, "streamed redactions not all audited: %d" % len(evs))
    check(EMAIL not in audit_text(), "the raw value reached the audit log")


def tool_args_of(out, stream):
    if not stream:
        return json.loads(out)["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    args = ""
    for _, d in sse_events(out):
        if d != "[DONE]":
            for c in json.loads(d).get("choices") or []:
                for tc in c.get("delta", {}).get("tool_calls") or []:
                    args += tc.get("function", {}).get("arguments") or ""
    return args


@test
def tool_call_arguments_redacted_streamed_or_not():
    for stream in (False, True):
        code, out, p = RIG.curl(OPENAI, chat("send it", stream),
                                extra=["-H", lib.fake_answer(ANSWER), "-H", "x-fake-tool-call: send_mail",
                                       "-H", "x-fake-split: 1"])
        check(code == 200, "status %s %s" % (code, p.stderr))
        args = tool_args_of(out, stream)
        check(json.loads(args) == {"text": WANT}, "tool arguments (stream=%s): %r" % (stream, args))
        check(EMAIL not in out, "the raw value reached the client in the tool call (stream=%s)" % stream)


@test
def answer_value_too_long_to_hold_cuts_the_stream():
    key = "-----BEGIN RSA PRIVATE KEY-----\\n" + "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi8dKMDvs3QyZh\\n" * 180 + \
          "-----END RSA PRIVATE KEY-----"
    code, out, p = RIG.curl(OPENAI, chat("give me a key", True),
                            extra=["-H", lib.fake_answer("here it is " + key), "-H", "x-fake-split: 40"])
    check("MIIEpAIBAAKCAQEA" not in out and "BEGIN RSA" not in out, "part of the key reached the client")
    evs = sse_events(out)
    errs = [d for e, d in evs if e == "error"]
    check(errs and "answer_redaction_limit" in errs[0], "no error event in the cut stream: %r" % out[-300:])
    ev = RIG.request_events(lambda e: "answer_redaction_limit" in (e.get("error") or ""))
    check(ev, "the cut is not audited")


def tokenize_as(uid, email, tag):
    """A request with email through uid's curl; returns the token the provider got."""
    code, out, p = RIG.curl(OPENAI, chat("write to %s (%s)" % (email, tag)), uid=uid)
    check(code == 200, "status %s %s" % (code, p.stderr))
    got = RIG.received()[-1]["body"]
    check(email not in got, "the provider received the raw address")
    m = TOKEN_RE.search(got)
    check(m, "no token in what the provider received: %r" % got[:300])
    return m.group(0)


@test
def token_restored_on_a_second_connection_same_user_and_program():
    email = "dana.r@example.com"
    tok = tokenize_as(60101, email, "first")
    # a new curl process: a new connection, same user, same program
    for stream in (False, True):
        code, out, p = RIG.curl(OPENAI, chat("what was it?", stream), uid=60101,
                                extra=["-H", lib.fake_answer("Your address is %s." % tok), "-H", "x-fake-split: 3"])
        check(code == 200, "status %s" % code)
        text = openai_stream_text(out) if stream else json.loads(out)["choices"][0]["message"]["content"]
        check(text == "Your address is %s." % email, "not restored on a new connection (stream=%s): %r" % (stream, text))
    # a Responses stream: the deltas and the events repeating the whole text
    code, out, p = RIG.curl("https://api.openai.com/v1/responses",
                            json.dumps({"model": "gpt-4o-mini", "stream": True, "input": "what was it?"}), uid=60101,
                            extra=["-H", lib.fake_answer("Your address is %s." % tok), "-H", "x-fake-split: 4"])
    check(responses_stream_text(out) == "Your address is %s." % email, "Responses deltas: %r" % responses_stream_text(out))
    done = [json.loads(d) for e, d in sse_events(out) if e == "response.completed"]
    check(done and done[0]["response"]["output"][0]["content"][0]["text"] == "Your address is %s." % email,
          "response.completed not restored: %r" % out[-400:])
    # and in a streamed tool call's arguments (JSON text: the value is restored JSON-escaped)
    code, out, p = RIG.curl(OPENAI, chat("mail it", True), uid=60101,
                            extra=["-H", lib.fake_answer("to %s" % tok), "-H", "x-fake-tool-call: send_mail",
                                   "-H", "x-fake-split: 5"])
    args = tool_args_of(out, True)
    check(json.loads(args) == {"text": "to %s" % email}, "tool arguments not restored: %r" % args)


@test
def token_not_restored_for_another_user_or_program():
    email = "erin.q@example.com"
    tok = tokenize_as(60102, email, "owner")
    code, out, p = RIG.curl(OPENAI, chat("what was it?"), uid=60103,
                            extra=["-H", "x-fake-answer: It is %s." % tok])
    check(code == 200, "status %s" % code)
    check(email not in out and tok in out, "another user got the value back: %r" % out[:300])
    # same user, another program: the stdlib Python client
    p = lib.run([rigmod.PY, os.path.join(rigmod.CLIENTS, "py_client.py"), "--url", OPENAI, "--json", chat("again"),
                 "--cafile", RIG.ca, "--header", "x-fake-answer: It is %s." % tok,
                 "--header", "Authorization: Bearer sk-test"],
                cgroup=RIG.cg.path, uid=60102, hosts=RIG.hosts, timeout=40)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    content = res["body"]["choices"][0]["message"]["content"]
    check(content == "It is %s." % tok, "another program of the same user got the value back: %r" % content)


@test
def vault_values_expire():
    email = "fay.t@example.com"
    tok = tokenize_as(60104, email, "expiring")
    time.sleep(VAULT_TTL_S + 2)
    code, out, p = RIG.curl(OPENAI, chat("what was it?"), uid=60104, extra=["-H", "x-fake-answer: It is %s." % tok])
    check(code == 200, "status %s" % code)
    check(email not in out and tok in out, "a value past vault_ttl was restored: %r" % out[:300])


@test
def agent_exits_cleanly():
    """SIGTERM frees the vault store (values wiped); under ASan/UBSan a
    leak or a sanitizer report makes this fail."""
    rc = RIG.agent.stop()
    log = RIG.agent.log_tail(400)
    check(rc == 0, "agent exit status %s: %s" % (rc, log[-1500:]))
    check("runtime error" not in log and "AddressSanitizer" not in log and "LeakSanitizer" not in log,
          "sanitizer report: %s" % log[-1500:])


if __name__ == "__main__":
    lib.main()
