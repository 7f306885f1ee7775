"""End-to-end: the OpenAI Realtime API (WebSocket) through the real BPF
redirect, the real agent and a fake Realtime server that records what it
received.

The upgrade passes (permessage-deflate removed from the offer), then every
frame is parsed both ways: a client event is inspected, redacted, or
blocked (the client gets a Realtime error event naming the rule, the
session goes on), the answer's text deltas get their vault tokens
restored, audio passes byte for byte, and the session is one audit event
with the usage of each response. The attacker's moves: an unmasked frame,
an oversized frame, a secret split across fragments or carried in a
ping, and an upgrade to a path that is not a Realtime endpoint.
"""
import base64
import json
import os
import re
import struct
import time

import lib
from lib import check, test
import rig as rigmod

ADDR = "127.82.0.2"
HOST = "api.openai.com"
AZURE = "vigil-test.openai.azure.com"
PATH = "/v1/realtime?model=gpt-4o-realtime-preview"
POLICY = """version: 1
default: allow
redaction:
  EMAIL: tokenize
rules:
  - name: no-credentials
    when: { finding: [AWS_ACCESS_KEY, OPENAI_API_KEY, GITHUB_TOKEN] }
    action: block
  - name: pii
    when: { finding: [EMAIL] }
    action: redact
"""
AWS_KEY = "AKIA" + "Z7QW3RT5YU2IO4PL"   # split so this file itself is not a finding
EMAIL = "ann.lee@corp-mail.example"
TOKEN_RE = re.compile(r"\[\[VGL_EMAIL_[0-9a-f]{6}\]\]")

RIG = rigmod.Rig("ws", {HOST: ADDR, AZURE: ADDR}, {}, extra_targets=[ADDR],
                 agent_extra="limits:\n  ws_max_frame: 64k\n  ws_max_message: 256k\n  header_timeout: 2s\n"
                 "  idle_timeout: 3s\n  ws_idle_timeout: 30s\n")
POLICY_PATH = os.path.join(RIG.tmp, "policy.yaml")
with open(POLICY_PATH, "w") as f:
    f.write(POLICY)
with open(RIG.agent.config, "a") as f:
    f.write("policy: %s\n" % POLICY_PATH)
RECORD = os.path.join(RIG.tmp, "fake-realtime.jsonl")
_fake = lib.spawn([rigmod.PY, os.path.join(lib.ROOT, "tests", "fakes", "fake_realtime.py"), "--listen",
                   "%s:443" % ADDR, "--cert", RIG.pki["good_cert"], "--key", RIG.pki["good_key"], "--record",
                   RECORD], stdout=__import__("subprocess").PIPE, text=True)
check("fake-realtime ready" in _fake.stdout.readline(), "the fake Realtime server did not start")
RIG.agent.start()


def received():
    return RIG.read_jsonl(RECORD)


def session(steps, path=PATH, deflate=False, uid=lib.NOBODY, host=HOST):
    """Runs the client in the scratch cgroup; returns (its output, what the
    server received in this session)."""
    before = len(received())
    argv = [rigmod.PY, os.path.join(rigmod.CLIENTS, "ws_realtime.py"), "--host", host, "--path", path,
            "--cafile", RIG.ca, "--steps", json.dumps(steps)]
    if deflate:
        argv.append("--deflate")
    p = lib.run(argv, cgroup=RIG.cg.path, hosts=RIG.hosts, uid=uid, timeout=40)
    check(p.stdout.strip(), "client printed nothing: %s" % p.stderr[-800:])
    time.sleep(0.2)   # the fake records after it answers
    return json.loads(p.stdout.strip().splitlines()[-1]), received()[before:]


def texts(got):
    return [json.loads(r["data"]) for r in got if r["kind"] == "text"]


def user_item(text):
    return {"event": {"type": "conversation.item.create", "event_id": "evt_c1", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}}


def ws_events(pred=lambda e: True, kind="websocket", n=1, timeout=5):
    deadline = time.time() + timeout
    while True:
        evs = [e for e in RIG.agent.events(kind) if pred(e)]
        if len(evs) >= n or time.time() > deadline:
            return evs
        time.sleep(0.05)


@test
def email_redacted_upstream_and_restored_in_deltas():
    n_before = len(ws_events(timeout=0))
    out, got = session([
        {"event": {"type": "session.update", "session": {"instructions": "Be brief.", "modalities": ["text"]}}},
        {"wait": "session.updated"},
        user_item("mail the report to %s today" % EMAIL),
        {"wait": "conversation.item.created"},
        {"event": {"type": "response.create", "response": {"modalities": ["text"]}}},
        {"wait": "response.done"},
        {"close": 1000},
    ])
    check(out["status"] == 101, "upgrade failed: %s" % out)
    hs = [r for r in got if r["kind"] == "handshake"]
    check(hs and hs[0]["headers"].get("upgrade", "").lower() == "websocket" and
          hs[0]["path"] == PATH, "the server did not see the upgrade: %s" % hs)
    sent = [t for t in texts(got) if t["type"] == "conversation.item.create"]
    check(sent, "the event did not reach the server: %s" % got)
    text = sent[0]["item"]["content"][0]["text"]
    check(EMAIL not in json.dumps(got), "the server received the raw e-mail address")
    check(TOKEN_RE.search(text), "not tokenized: %r" % text)
    deltas = "".join(e["delta"] for e in out["events"] if e["type"] == "response.text.delta")
    check(deltas == "echo: mail the report to %s today" % EMAIL, "deltas not restored: %r" % deltas)
    tr = "".join(e["delta"] for e in out["events"] if e["type"] == "response.audio_transcript.delta")
    check(tr == deltas, "transcript deltas not restored: %r" % tr)
    evs = ws_events(lambda e: True, n=n_before + 1)
    check(len(evs) == n_before + 1, "no session event: %s" % RIG.agent.events()[-3:])
    ev = evs[-1]
    check(ev["action"] == "redact" and ev["rule"] == "pii" and ev["status"] == 101,
          "session event: %s" % {k: ev.get(k) for k in ("action", "rule", "status")})
    check({"type": "EMAIL", "count": 1} in ev["findings"], "findings %s" % ev["findings"])
    check(ev["prompt_tokens"] == 11 and ev["completion_tokens"] == 7 and ev.get("ws_usage") == "11/7",
          "usage: %s %s %s" % (ev["prompt_tokens"], ev["completion_tokens"], ev.get("ws_usage")))
    check(ev["path"] == "/v1/realtime" and ev["provider"] == "openai", "path/provider %s %s" % (
        ev["path"], ev["provider"]))
    with open(RIG.agent.audit_log) as f:
        check(EMAIL not in f.read(), "the raw value reached the audit log")


@test
def transcript_restored():
    out, got = session([
        user_item("call %s" % EMAIL), {"wait": "conversation.item.created"},
        {"event": {"type": "input_audio_buffer.commit"}},
        {"wait": "conversation.item.input_audio_transcription.completed"},
        {"close": 1000},
    ])
    tr = [e for e in out["events"] if e["type"] == "conversation.item.input_audio_transcription.completed"]
    check(tr and tr[0]["transcript"] == "transcript: call %s" % EMAIL, "transcript %s" % tr)


@test
def secret_blocked_and_session_continues():
    out, got = session([
        user_item("my key is %s" % AWS_KEY),
        {"wait": "error"},
        user_item("hello again"), {"wait": "conversation.item.created"},
        {"close": 1000},
    ])
    check(AWS_KEY not in json.dumps(got), "the server received the credential")
    errs = [e for e in out["events"] if e["type"] == "error"]
    check(errs and errs[0]["error"]["code"] == "policy_blocked" and "no-credentials" in errs[0]["error"]["message"]
          and errs[0]["error"]["event_id"] == "evt_c1", "error event %s" % errs)
    items = [t for t in texts(got) if t["type"] == "conversation.item.create"]
    check(len(items) == 1 and items[0]["item"]["content"][0]["text"] == "hello again",
          "the session did not go on: %s" % items)
    blk = ws_events(lambda e: e["action"] == "block", kind="websocket_message")
    check(blk and blk[-1]["rule"] == "no-credentials" and
          {"type": "AWS_ACCESS_KEY", "count": 1} in blk[-1]["findings"], "blocked message not audited: %s" % blk)


@test
def audio_passes_byte_for_byte():
    pcm = bytes(range(256)) * 40 + b"\x00\xff" * 7
    b64 = base64.b64encode(pcm).decode()
    out, got = session([
        {"event": {"type": "input_audio_buffer.append", "audio": b64}},
        {"binary_b64": b64},
        {"wait_binary": 1},
        {"close": 1000},
    ])
    app = [t for t in texts(got) if t["type"] == "input_audio_buffer.append"]
    check(app and app[0]["audio"] == b64, "audio event altered")
    bins = [r["b64"] for r in got if r["kind"] == "binary"]
    check(bins == [b64], "binary frame altered upstream")
    check(out["binary_b64"] == [b64], "binary frame altered downstream")


@test
def audio_append_is_no_side_channel():
    """An audio append that carries another member is read whole: a
    credential next to the audio does not ride along uninspected."""
    out, got = session([
        {"event": {"type": "input_audio_buffer.append", "audio": "AAAA", "note": "key %s" % AWS_KEY}},
        {"wait": "error"}, {"close": 1000},
    ])
    check(AWS_KEY not in json.dumps(got), "the credential beside the audio reached the server")
    check(any(e["type"] == "error" for e in out["events"]), "no error event: %s" % out)


@test
def text_disguised_as_audio_or_binary_is_read():
    """Audio and binary frames pass unread only while nothing is found in
    them: a key written as "audio" (base64 of text, text after real audio,
    or not base64 at all), in an audio item, or in a binary frame is
    blocked like any message, and real audio still passes untouched."""
    pcm = (b"\x00\x00\x10\xff\xf0\x00" * 400)
    key = ("deploy with key %s" % AWS_KEY).encode()
    wide = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in AWS_KEY)
    smuggled = [
        {"event": {"type": "input_audio_buffer.append", "event_id": "evt_a1",
                   "audio": base64.b64encode(key).decode()}},
        {"event": {"type": "input_audio_buffer.append", "event_id": "evt_a2",
                   "audio": base64.b64encode(pcm + key + pcm).decode()}},
        {"event": {"type": "input_audio_buffer.append", "event_id": "evt_a3", "audio": key.decode()}},
        {"event": {"type": "conversation.item.create", "event_id": "evt_a4", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_audio", "audio": base64.b64encode(pcm + key).decode()}]}}},
        # fullwidth letters after real audio: folded by the detectors
        {"event": {"type": "input_audio_buffer.append", "event_id": "evt_a5",
                   "audio": base64.b64encode(pcm + ("key " + wide).encode() + pcm).decode()}},
    ]
    steps = []
    for st in smuggled:
        steps += [st, {"wait": "error"}]
    steps += [{"binary_b64": base64.b64encode(pcm + key).decode()}, {"wait": "error"},
              {"binary_b64": base64.b64encode(pcm + ("key " + wide).encode()).decode()}, {"wait": "error"},
              # UTF-16 with no mark, mostly Chinese, the key in fullwidth
              # letters: no byte of it is the key's ASCII
              {"binary_b64": base64.b64encode(("\u5099\u8003\u3092\u53c2\u7167" * 12 + " key " + wide +
                                               "\u3002" * 20).encode("utf-16-le")).decode()}, {"wait": "error"},
              {"event": {"type": "input_audio_buffer.append", "event_id": "evt_ok",
                         "audio": base64.b64encode(pcm).decode()}},
              {"binary_b64": base64.b64encode(pcm).decode()}, {"wait_binary": 1}, {"close": 1000}]
    n0 = len(ws_events(lambda e: e["action"] == "block", kind="websocket_message", timeout=0))
    out, got = session(steps)
    raw = json.dumps(got)
    check(AWS_KEY not in raw and wide.encode() not in b"".join(
              base64.b64decode(r.get("b64", "")) for r in got if r["kind"] == "binary") and base64.b64encode(key).decode()[:20] not in raw and
          not any(AWS_KEY.encode() in base64.b64decode(r.get("b64", "")) for r in got if r["kind"] == "binary") and
          not any(AWS_KEY.encode() in base64.b64decode(t.get("audio", "") + "==") for t in texts(got)
                  if t["type"] == "input_audio_buffer.append"),
          "the key reached the server: %s" % raw[:600])
    errs = [e for e in out["events"] if e["type"] == "error"]
    check(len(errs) == 8 and all(e["error"]["code"] == "policy_blocked" for e in errs),
          "each smuggled message should get a policy error: %s" % errs)
    app = [t for t in texts(got) if t["type"] == "input_audio_buffer.append"]
    check([t["event_id"] for t in app] == ["evt_ok"] and app[0]["audio"] == base64.b64encode(pcm).decode(),
          "real audio did not pass untouched: %s" % [t.get("event_id") for t in app])
    bins = [r["b64"] for r in got if r["kind"] == "binary"]
    check(bins == [base64.b64encode(pcm).decode()], "binary frames upstream: %d" % len(bins))
    blk = ws_events(lambda e: e["action"] == "block", kind="websocket_message", n=n0 + 8)
    check(len(blk) >= n0 + 8 and all({"type": "AWS_ACCESS_KEY", "count": 1} in e["findings"] for e in blk[n0:]),
          "the blocked messages were not audited with the key's finding: %s" % blk[n0:])


@test
def deflate_offer_is_stripped():
    out, got = session([user_item("hi"), {"wait": "conversation.item.created"}, {"close": 1000}], deflate=True)
    check(out["status"] == 101, "a client offering permessage-deflate failed: %s" % out)
    check("sec-websocket-extensions" not in out["headers"], "an extension was negotiated: %s" % out["headers"])
    hs = [r for r in got if r["kind"] == "handshake"]
    check(hs and "sec-websocket-extensions" not in hs[0]["headers"], "the offer reached the server")
    check(any(e["type"] == "conversation.item.created" for e in out["events"]), "no answer: %s" % out)


@test
def unmasked_client_frame_closes_1002():
    body = json.dumps({"type": "conversation.item.create", "item": {"content": [{"text": "x"}]}}).encode()
    raw = bytes([0x81, len(body)]) + body
    out, got = session([{"raw_b64": base64.b64encode(raw).decode()}, {"wait": "never"}])
    check(out["close_code"] == 1002, "close %s" % out)
    check(not texts(got), "the unmasked frame was relayed: %s" % got)
    ev = ws_events(lambda e: "unmasked" in (e.get("error") or ""))
    check(ev, "not audited")


@test
def oversized_frame_closes_1009():
    out, got = session([{"big": 70000}, {"wait": "never"}])
    check(out["close_code"] == 1009, "close %s" % out)
    check(not texts(got), "the oversized frame was relayed")
    ev = ws_events(lambda e: e.get("reason") == "websocket_limit" and "ws_max_frame" in (e.get("error") or ""))
    check(ev, "the 1009 was not audited")


@test
def secret_split_across_fragments_is_found():
    ev = json.dumps({"type": "conversation.item.create", "event_id": "evt_frag", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "key %s ok" % AWS_KEY}]}})
    cut = ev.index(AWS_KEY) + 8
    out, got = session([{"fragments": [ev[:cut], {"ping": ""}, ev[cut:]]}, {"wait": "error"},
                        {"close": 1000}])
    check(AWS_KEY[8:] not in json.dumps(got) and AWS_KEY[:8] not in json.dumps(got),
          "a piece of the credential reached the server: %s" % got)
    errs = [e for e in out["events"] if e["type"] == "error"]
    check(errs and errs[0]["error"]["event_id"] == "evt_frag", "no error event: %s" % out)


@test
def secret_in_ping_payload_is_dropped():
    out, got = session([{"ping": "k=%s" % AWS_KEY}, {"ping": "hb"}, {"wait_pong": 1}, {"close": 1000}])
    check(AWS_KEY not in json.dumps(got), "the credential in a ping reached the server")
    pings = [r["data"] for r in got if r["kind"] == "ping"]
    check(pings == ["hb"], "pings the server saw: %s" % pings)
    check(ws_events(lambda e: e.get("method") == "ping", kind="websocket_message"), "the ping was not audited")


@test
def upgrade_to_unknown_path_refused():
    out, got = session([], path="/v1/chat/completions")
    check(out["status"] == 403, "status %s" % out.get("status"))
    check("not a known Realtime endpoint" in out.get("body", ""), "body %s" % out.get("body"))
    check(not got, "the server saw the upgrade: %s" % got)
    ev = ws_events(lambda e: e["action"] == "block" and e.get("reason") == "websocket_unknown_endpoint")
    check(ev and ev[-1]["path"] == "/v1/chat/completions", "not audited: %s" % ev)


@test
def official_sdk_realtime_with_deflate_offer():
    """The official openai package's OpenAIRealtimeWS (over `ws`), offering
    permessage-deflate: the e-mail leaves tokenized, the text deltas bring
    it back, and a credential comes back as the SDK's error event."""
    res, _ = RIG.node("openai_realtime.mjs", "--message", "write to %s please" % EMAIL, "--deflate")
    check(not res.get("error"), "SDK session failed: %s" % res)
    check(res["text"] == "echo: write to %s please" % EMAIL, "SDK text %r" % res["text"])
    check(res["usage"] and res["usage"]["output_tokens"] == 7, "usage %s" % res["usage"])
    got = received()
    check(EMAIL not in json.dumps(got), "the server received the raw e-mail address")
    hs = [r for r in got if r["kind"] == "handshake"]
    check(hs and "sec-websocket-extensions" not in hs[-1]["headers"], "the deflate offer reached the server")
    res, _ = RIG.node("openai_realtime.mjs", "--message", "key %s" % AWS_KEY)
    check(res["errors"] and res["errors"][0].get("code") == "policy_blocked", "SDK error %s" % res)
    check(AWS_KEY not in json.dumps(received()), "the server received the credential")


@test
def instructions_are_inspected():
    out, got = session([
        {"event": {"type": "session.update", "event_id": "evt_s", "session": {"instructions": "use key %s" % AWS_KEY}}},
        {"wait": "error"},
        {"event": {"type": "response.create", "response": {"instructions": "cc %s on replies" % EMAIL}}},
        {"wait": "response.done"},
        {"close": 1000},
    ])
    check(AWS_KEY not in json.dumps(got), "session.update instructions with a credential reached the server")
    check(not [t for t in texts(got) if t["type"] == "session.update"], "the blocked session.update was forwarded")
    rc = [t for t in texts(got) if t["type"] == "response.create"]
    check(rc and EMAIL not in rc[0]["response"]["instructions"] and
          TOKEN_RE.search(rc[0]["response"]["instructions"]), "response.create instructions: %s" % rc)


@test
def answer_findings_are_reported():
    phone = "+1 415 555 0132"
    n = len(ws_events(timeout=0))
    out, got = session([user_item("call me at %s" % phone), {"wait": "conversation.item.created"},
                        {"event": {"type": "response.create"}}, {"wait": "response.done"}, {"close": 1000}])
    evs = ws_events(n=n + 1)
    check(len(evs) > n, "no session event")
    check(any(f["type"] == "PHONE" for f in evs[-1].get("output_findings") or []),
          "the phone number in the answer is not in output_findings: %s" % evs[-1].get("output_findings"))


@test
def azure_realtime_path_allowed_others_refused():
    out, got = session([user_item("to %s" % EMAIL), {"wait": "conversation.item.created"}, {"close": 1000}],
                       host=AZURE, path="/openai/v1/realtime?model=gpt-realtime")
    check(out["status"] == 101, "Azure GA Realtime path refused: %s" % out)
    check(EMAIL not in json.dumps(got) and texts(got), "Azure session not inspected: %s" % got)
    ev = ws_events(lambda e: e.get("provider") == "azure_openai" and e["status"] == 101)
    check(ev, "no Azure session event")
    out, got = session([], host=AZURE, path="/openai/deployments/gpt4/chat/completions?api-version=2024-10-21")
    check(out["status"] == 403 and not got, "a WebSocket to an Azure chat path was not refused: %s" % out)


@test
def silent_session_outlives_idle_timeout():
    # A voice session is often silent for longer than an HTTP exchange may
    # idle: ws_idle_timeout (30 s here), not idle_timeout (3 s), ends it.
    out, got = session([user_item("still there?"), {"wait": "conversation.item.created"}, {"sleep": 5},
                        user_item("after the pause"), {"wait": "conversation.item.created"}])
    check(out.get("status") == 101, "upgrade: %s" % out.get("status"))
    sent = [t for t in texts(got) if t.get("type") == "conversation.item.create"]
    check(len(sent) == 2, "the server got %d of the 2 items; the session was cut in the pause" % len(sent))


@test
def agent_survived():
    out, got = session([user_item("still there?"), {"wait": "conversation.item.created"}, {"close": 1000}])
    check(out["status"] == 101 and out["close_code"] == 1000, "after the attacks: %s" % out)


@test
def agent_exits_cleanly():
    """Under ASan/UBSan a leak of a session or a sanitizer report fails this."""
    rc = RIG.agent.stop()
    log = RIG.agent.log_tail(400)
    check(rc == 0, "agent exit status %s: %s" % (rc, log[-1500:]))
    check("runtime error" not in log and "AddressSanitizer" not in log and "LeakSanitizer" not in log,
          "sanitizer report: %s" % log[-1500:])


if __name__ == "__main__":
    lib.main()
