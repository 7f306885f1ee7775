"""End-to-end: gRPC through the real BPF redirect.

A grpc-js client (tests/clients/grpc_call.mjs) calls a fake Gemini gRPC
service (tests/fakes/fake_grpc.mjs, grpc-js over TLS from the test PKI) in
the watched cgroup. The agent must take the h2-only gRPC connection, read
each protobuf message, redact an e-mail in the prompt (the server gets a
vault token, the client the address back in the answer), block a secret
with PERMISSION_DENIED before it leaves, stream StreamGenerateContent
message by message, inspect the strings of a method it has no schema for,
audit every call with its method path and usage, and survive a hostile
length prefix with only that stream failing.
"""
import base64
import json
import os
import re
import subprocess

import lib
from lib import check, test
import rig as rigmod

ADDR = "127.95.0.2"
HOST = "generativelanguage.googleapis.com"
GEN = "/google.ai.generativelanguage.v1beta.GenerativeService/GenerateContent"
STREAM = "/google.ai.generativelanguage.v1beta.GenerativeService/StreamGenerateContent"
NOTES = "/vigil.test.Notes/Save"
POLICY = """version: 1
default: allow
redaction:
  EMAIL: tokenize
rules:
  - name: answers-phones
    when: { output_finding: [PHONE], finding: [PHONE] }
    action: redact
  - name: no-secrets
    when: { finding: ['@all_secrets'] }
    action: block
  - name: pii
    when: { finding: [EMAIL] }
    action: redact
"""
AWS_KEY = "AKIA" + "Z7QW3RT5YU2IO4PL"   # split so this file itself is not a credential finding
EMAIL = "jane.doe@example.com"
TOKEN_RE = re.compile(r"\[\[VGL_EMAIL_[0-9a-f]{6}\]\]")

H1_ADDR = "127.95.0.3"
H1_HOST = "api.openai.com"
RIG = rigmod.Rig("grpc", {HOST: ADDR, H1_HOST: H1_ADDR}, {"good": (H1_ADDR, "good", 0)}, extra_targets=[ADDR],
                 agent_extra="limits:\n  max_body_bytes: 256k\n")
with open(os.path.join(RIG.tmp, "policy.yaml"), "w") as f:
    f.write(POLICY)
with open(RIG.agent.config, "a") as f:
    f.write("policy: %s\n" % os.path.join(RIG.tmp, "policy.yaml"))
RECORD = os.path.join(RIG.tmp, "fake-grpc.jsonl")
_fake = lib.spawn(["node", os.path.join(lib.ROOT, "tests", "fakes", "fake_grpc.mjs"), "--listen", "%s:443" % ADDR,
                   "--cert", RIG.pki["good_cert"], "--key", RIG.pki["good_key"], "--record", RECORD,
                   "--idle-ms", "1500"],
                  stdout=subprocess.PIPE, text=True)
check("fake-grpc ready" in _fake.stdout.readline(), "the fake gRPC server did not start")
RIG.agent.start(timeout=120 if lib.SAN else 30)


def received():
    return RIG.read_jsonl(RECORD)


def call(mode, text, *extra, host=HOST):
    argv = ["node", os.path.join(rigmod.CLIENTS, "grpc_call.mjs"), "--mode", mode, "--host", host, "--ca", RIG.ca,
            "--text", text] + list(extra)
    p = lib.run(argv, cgroup=RIG.cg.path, uid=lib.NOBODY, hosts=RIG.hosts, timeout=60)
    check(p.stdout.strip(), "grpc_call printed nothing: %s" % p.stderr[-600:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def event_for(path, pred=lambda e: True):
    evs = RIG.agent.wait_events(lambda e: e.get("path") == path and pred(e), kind="request")
    check(evs, "no request event for %s: %s" % (path, RIG.agent.events("request")[-2:]))
    return evs[-1]


def prompt_of(rec):
    return " ".join(p["text"] for c in rec["request"]["contents"] for p in c["parts"])


@test
def generate_content_email_redacted_at_server_and_restored_in_answer():
    before = len(received())
    res = call("generate", "mail the report to %s today" % EMAIL, "--system", "you answer for %s" % EMAIL)
    check(res["ok"], "the call failed through the agent: %s" % res)
    got = received()[before:]
    check(len(got) == 1, "the server got %d calls" % len(got))
    req = got[0]["request"]
    check(EMAIL not in json.dumps(req), "the address reached the server: %s" % json.dumps(req)[:400])
    check(TOKEN_RE.search(prompt_of(got[0])) and TOKEN_RE.search(req["system_instruction"]["parts"][0]["text"]),
          "the server did not get vault tokens in prompt and system instruction: %s" % json.dumps(req)[:400])
    check(req["model"] == "models/gemini-2.0-flash", "model changed on the way: %r" % req["model"])
    check(res["texts"] == ["echo: mail the report to %s today" % EMAIL], "the answer was not restored: %s" % res)
    ev = event_for(GEN, lambda e: e["action"] == "redact")
    check(ev["provider"] == "gemini" and ev["model"] == "gemini-2.0-flash", "provider/model %s" % ev)
    check({"type": "EMAIL", "count": 2} in ev["findings"], "findings %s" % ev["findings"])
    check(ev["prompt_tokens"] == 11 and ev["completion_tokens"] == 7, "usage not in the event: %s" % ev)
    check(EMAIL not in json.dumps(ev), "the address is in the audit event")
    check(ev["error"] is None and ev["status"] == 200, "a complete call audited as failed: %s" % ev)


@test
def gzip_compressed_call_is_inspected_too():
    before = len(received())
    res = call("generate", "compressed note to %s" % EMAIL, "--compress", "gzip")
    check(res["ok"] and res["texts"] == ["echo: compressed note to %s" % EMAIL], "gzip call: %s" % res)
    got = received()[before:]
    check(got and EMAIL not in json.dumps(got[0]) and TOKEN_RE.search(prompt_of(got[0])),
          "a gzip-compressed message passed unread: %s" % got)


@test
def secret_is_blocked_with_permission_denied():
    before = len(received())
    res = call("generate", "deploy with key %s now" % AWS_KEY)
    check(not res["ok"] and res["code"] == 7, "expected PERMISSION_DENIED (7), got %s" % res)
    check("no-secrets" in res["details"], "grpc-message does not name the rule: %s" % res)
    check(AWS_KEY not in res["details"], "grpc-message carries the secret")
    check(len(received()) == before, "the blocked call reached the server")
    ev = event_for(GEN, lambda e: e["action"] == "block")
    check(ev["rule"] == "no-secrets" and {"type": "AWS_ACCESS_KEY", "count": 1} in ev["findings"],
          "block event %s" % ev)


@test
def text_hidden_in_a_bytes_field_is_read():
    # inline_data is bytes (images, audio): it passes unread unless a
    # detector finds text in it. A key after a few bytes of real audio is
    # found and blocked (a bytes field cannot be redacted in place, so an
    # address there blocks too); clean audio beside a prompt passes as sent.
    pcm = b"\x00\x00\x10\xff\xf0\x00" * 300
    before = len(received())
    res = call("generate", "transcribe this", "--blob-b64", base64.b64encode(pcm + b"key " + AWS_KEY.encode()).decode())
    check(not res["ok"] and res["code"] == 7 and "no-secrets" in res["details"],
          "a key inside a bytes field was not blocked: %s" % res)
    check(len(received()) == before, "the call with the hidden key reached the server")
    ev = event_for(GEN, lambda e: e["action"] == "block" and {"type": "AWS_ACCESS_KEY", "count": 1} in e["findings"])
    check(ev["rule"] == "no-secrets", "block event %s" % ev)
    res = call("generate", "transcribe this", "--blob-b64", base64.b64encode(pcm + b" to " + EMAIL.encode()).decode())
    check(not res["ok"] and res["code"] == 7 and "redacted" in res["details"],
          "an address inside a bytes field was not refused as unredactable: %s" % res)
    check(len(received()) == before, "the call with the hidden address reached the server")
    # the same key in fullwidth letters: the detectors fold it, and so must
    # the text the policy judges (it once read every non-ASCII byte as a space)
    wide = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in AWS_KEY)
    res = call("generate", "transcribe this", "--blob-b64", base64.b64encode(pcm + b"key " + wide.encode()).decode())
    check(not res["ok"] and res["code"] == 7 and "no-secrets" in res["details"],
          "a fullwidth key inside a bytes field was not blocked: %s" % res)
    check(len(received()) == before, "the call with the fullwidth key reached the server")
    # text in UTF-16 (a reader decodes it; its NULs once hid the key),
    # mostly ASCII, then mostly Chinese with no byte order mark
    cjk = "\u5229\u7528\u8005\u306e\u8a2d\u5b9a\u3092\u66f4\u65b0" * 5
    for name, text in [("utf-16", "notes: key %s" % AWS_KEY), ("utf-16 cjk", cjk + AWS_KEY + cjk)]:
        res = call("generate", "read this", "--blob-b64", base64.b64encode(text.encode("utf-16-le")).decode())
        check(not res["ok"] and res["code"] == 7 and "no-secrets" in res["details"],
              "a %s key inside a bytes field was not blocked: %s" % (name, res))
        check(len(received()) == before, "the call with the %s key reached the server" % name)
    res = call("generate", "transcribe this", "--blob-b64", base64.b64encode(pcm).decode())
    check(res["ok"], "a clean bytes field was refused: %s" % res)
    got = received()[before:]
    blob = got and got[0]["request"]["contents"][0]["parts"][1]["inline_data"]["data"]
    check(len(got) == 1 and blob and bytes(blob["data"] if isinstance(blob, dict) else base64.b64decode(blob)) == pcm,
          "the clean audio did not arrive as sent: %s" % json.dumps(got)[:300])


@test
def stream_generate_content_streams_messages():
    res = call("stream", "count one two three for %s" % EMAIL)
    check(res["ok"], "streaming call failed: %s" % res)
    check(res["messages"] == 3, "expected 3 streamed messages, got %s" % res)
    check("".join(res["texts"]) == "echo: count one two three for %s" % EMAIL, "streamed answer %s" % res)
    # the fake spaces its messages 150 ms apart: held whole, they would arrive together
    check(res["times"][-1] - res["times"][0] >= 200, "messages arrived together (buffered): %s" % res["times"])
    ev = event_for(STREAM)
    check(ev["stream"] and ev["completion_tokens"] == 7, "stream event %s" % ev)


@test
def stream_ending_in_a_token_prefix_keeps_it():
    """Text held back as a possible token ("[[VG") at the end of the stream
    is sent in a last message, never lost."""
    res = call("stream", "tail [[VG")
    check(res["ok"] and "".join(res["texts"]) == "echo: tail [[VG", "held-back tail lost: %s" % res)


@test
def vertex_ai_prediction_service_with_its_own_field_numbers():
    before = len(received())
    res = call("vertex", "vertex mail to %s" % EMAIL, "--system", "sys %s" % EMAIL)
    check(res["ok"] and res["texts"] == ["echo: vertex mail to %s" % EMAIL], "Vertex call: %s" % res)
    got = received()[before:]
    check(got and got[0]["method"] == "Vertex/GenerateContent" and EMAIL not in json.dumps(got[0]) and
          TOKEN_RE.search(prompt_of(got[0])), "Vertex prompt not redacted: %s" % got)
    ev = event_for("/google.cloud.aiplatform.v1.PredictionService/GenerateContent")
    check(ev["model"] == "gemini-2.0-flash" and ev["prompt_tokens"] == 11 and ev["completion_tokens"] == 7 and
          {"type": "EMAIL", "count": 2} in ev["findings"], "Vertex event %s" % ev)
    res = call("vertex-stream", "split %s" % EMAIL)
    check(res["ok"] and "".join(res["texts"]) == "echo: split %s" % EMAIL and res["messages"] == 3,
          "Vertex stream: %s" % res)


@test
def answer_rule_redacts_the_answer_unary_and_streamed():
    phone = "(415) 555-0132"
    res = call("generate", "ring %s today" % phone)
    check(res["ok"] and phone not in res["texts"][0] and "[PHONE" in res["texts"][0],
          "the answer rule did not redact the unary answer: %s" % res)
    ev = event_for(GEN, lambda e: "answer redacted" in (e.get("reason") or ""))
    check("answers-phones" in ev["reason"] and {"type": "PHONE", "count": 1} in ev["output_redacted"],
          "answer redaction not audited: %s" % ev)
    res = call("stream", "ring %s later today please" % phone)
    text = "".join(res.get("texts", []))
    check(res["ok"] and phone not in text and "[PHONE" in text and text.startswith("echo: ring ")
          and text.endswith(" later today please"), "the streamed answer was not redacted whole: %s" % res)


@test
def unknown_method_strings_inspected_and_audited_with_method_name():
    before = len(received())
    res = call("notes", "call %s back" % EMAIL, "--system", "tag-for-%s" % EMAIL)
    check(res["ok"], "Notes/Save failed: %s" % res)
    got = received()[before:]
    check(got and EMAIL not in json.dumps(got[0]), "a string of an unknown method passed unread: %s" % got)
    note = got[0]["request"]
    check(TOKEN_RE.search(note["title"]) and TOKEN_RE.search(note["attachment"]["title"]) and
          TOKEN_RE.search(note["tags"][1]), "nested strings not tokenized: %s" % note)
    check(note["id"] == "42" and note["attachment"]["blob"] == "AAEC//4=", "non-text fields changed: %s" % note)
    check(res["texts"][0] == "call %s back" % EMAIL, "tokens not restored in the echo: %s" % res)
    ev = event_for(NOTES)
    check(ev["action"] == "redact" and {"type": "EMAIL", "count": 3} in ev["findings"], "notes event %s" % ev)
    res = call("notes", "key %s" % AWS_KEY)
    check(not res["ok"] and res["code"] == 7, "a secret in an unknown method was not blocked: %s" % res)


@test
def hostile_length_prefix_fails_only_its_stream():
    before = len(received())
    res = call("hostile", "hello after the hostile stream", "--prefix", str(0xfffffff0))
    bad, good = res["bad"], res["good"]
    status = (bad["headers"] or {}).get("grpc-status") or (bad["trailers"] or {}).get("grpc-status")
    check(status == "8", "the hostile stream did not get RESOURCE_EXHAUSTED: %s" % bad)
    check((good["trailers"] or {}).get("grpc-status") == "0" and good["data"] > 0,
          "the next stream on the same connection failed: %s" % good)
    check(len(received()) == before + 1, "the hostile message reached the server")
    deep = res["deep"]
    check((deep["headers"] or {}).get("grpc-status") == "7",
          "a message nested past the depth limit was not refused: %s" % deep)
    ev = event_for(GEN, lambda e: e.get("reason") == "inspection_limit")
    check(ev["action"] == "block" and {"type": "INSPECTION_LIMIT", "count": 1} in ev["findings"],
          "the too-deep message was not audited as INSPECTION_LIMIT: %s" % ev)
    check(RIG.agent.proc.poll() is None, "the agent died")
    ev = event_for(GEN, lambda e: e.get("reason") == "bad_request")
    check(ev["action"] == "block" and ev["status"] == 413, "hostile stream event %s" % ev)
    ev = event_for(GEN, lambda e: e["action"] == "allow")
    check(ev["error"] is None and ev["status"] == 200, "the good call after it audited as %s" % ev)


@test
def calls_of_one_connection_share_one_upstream_connection():
    """A gRPC client's calls ride one upstream HTTP/2 connection (no TLS
    handshake upstream per call); after the server's idle GOAWAY the next
    call opens a new one and succeeds."""
    before = len(received())
    res = call("bench", "plain prompt", "--n", "20")
    check(res.get("calls") == 20, "bench run failed: %s" % res)
    peers = {r["peer"] for r in received()[before:]}
    check(len(received()) - before == 21 and len(peers) == 1,
          "21 calls used %d upstream connections: %s" % (len(peers), sorted(peers)))
    before = len(received())
    res = call("bench", "plain prompt", "--n", "2", "--pause-ms", "2500")
    check(res.get("calls") == 2, "calls after the server's idle GOAWAY failed: %s" % res)
    peers = [r["peer"] for r in received()[before:]]
    check(len(peers) == 3 and len(set(peers)) == 3, "expected a fresh upstream after each idle GOAWAY: %s" % peers)


@test
def metadata_is_inspected_like_request_headers():
    before = len(received())
    res = call("generate", "plain prompt", "--meta", "x-user-note: reply to %s" % EMAIL)
    check(res["ok"], "call with metadata failed: %s" % res)
    got = received()[before:]
    note = got[0]["metadata"].get("x-user-note", "") if got else ""
    # header values are redacted as the HTTP path redacts them (a placeholder)
    check(EMAIL not in note and ("[EMAIL]" in note or TOKEN_RE.search(note)),
          "metadata value not redacted at the server: %r" % note)
    res = call("generate", "plain prompt", "--meta", "x-deploy-key: %s" % AWS_KEY)
    check(not res["ok"] and res["code"] == 7, "a secret in metadata was not blocked: %s" % res)
    check(len(received()) == before + 1, "the call with a secret in metadata reached the server")


@test
def upstream_without_http2_gives_unavailable():
    """An HTTP/1.1-only origin cannot carry gRPC: UNAVAILABLE, audited."""
    res = call("generate", "hello", host=H1_HOST)
    check(not res["ok"] and res["code"] == 14, "expected UNAVAILABLE (14), got %s" % res)
    ev = RIG.agent.wait_events(lambda e: e.get("sni") == H1_HOST and e.get("path") == GEN, kind="request")
    check(ev and ev[-1]["status"] == 502 and ev[-1]["reason"] in ("upstream_no_h2", "upstream_tls_failed"),
          "the refused upstream was not audited: %s" % ev[-1:])


COLLECT = "/vigil.test.Notes/Collect"
CHAT = "/vigil.test.Notes/Chat"


@test
def client_streaming_call_forwarded_as_it_arrives_and_email_redacted():
    """grpc-js Notes/Collect (client-streaming), three notes 600 ms apart:
    each reaches the server before the client sends the next (forwarded as
    it arrives, not held to the end), the e-mail in the second arrives as
    a vault token, and the call is audited once with its EMAIL finding."""
    before = len(received())
    res = call("collect", "first plain note|second, mail %s please|third note" % EMAIL, "--pause-ms", "600",
               "--meta", "x-user-note: reply to %s" % EMAIL)
    check(res["ok"], "the client-streaming call failed through the agent: %s" % res)
    got = [r for r in received()[before:] if r["method"] == "Notes/Collect"]
    check(len(got) == 3, "the server got %d of 3 messages: %s" % (len(got), got))
    check(got[0]["request"]["title"] == "first plain note", "first message %s" % got[0])
    second = got[1]["request"]["title"]
    check(EMAIL not in second and TOKEN_RE.search(second), "the second message reached the server as %r" % second)
    for i in (0, 1):
        check(got[i]["at"] < res["sent_at"][i + 1],
              "message %d reached the server only after the client sent message %d: held, not streamed (%s vs %s)"
              % (i + 1, i + 2, got[i]["at"], res["sent_at"][i + 1]))
    check(EMAIL in res["texts"][0], "the joined answer was not restored: %s" % res["texts"])
    ev = event_for(COLLECT)
    # one address in a note, one in the call's metadata: the metadata is
    # counted once for the call, not again with every later batch
    check(ev["action"] == "redact" and {"type": "EMAIL", "count": 2} in ev["findings"],
          "the call was not audited as redacted with its 2 EMAIL findings: %s" % ev)
    note = got[0].get("metadata", {}).get("x-user-note", "")
    check(EMAIL not in note and ("[EMAIL]" in note or TOKEN_RE.search(note)),
          "the call's metadata reached the server as %r" % note)
    check(ev["status"] == 200 and ev["error"] is None, "a complete call audited as failed: %s" % ev)
    check(EMAIL not in json.dumps(ev), "the address is in the audit event")


@test
def bidi_call_echoes_as_it_goes_and_a_secret_later_ends_it_permission_denied():
    """grpc-js Notes/Chat (bidirectional): the first note is echoed before
    the second is sent; a key in the third ends the call with
    PERMISSION_DENIED, the server never sees it, the event says block."""
    before = len(received())
    ok = call("chat", "hello there|mail %s now|deploy with %s" % (EMAIL, AWS_KEY), "--pause-ms", "200")
    check(not ok["ok"] and ok["code"] == 7, "the secret did not end the call with PERMISSION_DENIED: %s" % ok)
    check(ok["texts"][:2] == ["echo: hello there", "echo: mail %s now" % EMAIL],
          "the echoes before the refusal (restored): %s" % ok["texts"])
    check("no-secrets" in ok["details"] and AWS_KEY not in ok["details"], "grpc-message %r" % ok["details"])
    got = [r["request"]["title"] for r in received()[before:] if r["method"] == "Notes/Chat"]
    check(len(got) == 2 and AWS_KEY not in json.dumps(got), "the server got %s" % got)
    check(EMAIL not in got[1] and TOKEN_RE.search(got[1]), "the second note reached the server as %r" % got[1])
    ev = event_for(CHAT)
    check(ev["action"] == "block" and ev["status"] == 403, "the ended call audited as %s" % ev)
    check(any(f["type"] == "AWS_ACCESS_KEY" or "AWS" in f["type"] for f in ev["findings"]) and
          {"type": "EMAIL", "count": 1} in ev["findings"], "findings of the call: %s" % ev["findings"])
    check(RIG.agent.proc.poll() is None, "the agent died")


@test
def agent_stops_cleanly_without_a_sanitizer_report():
    """Last: every call above ran in this agent (run with SAN=1 too)."""
    status = RIG.agent.stop()
    check(status == 0, "agent exit status %s on SIGTERM" % status)
    with open(RIG.agent.stderr_path) as f:
        log = f.read()
    for sign in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer"):
        check(sign not in log, "sanitizer report in the agent's stderr: %s" % log[log.find(sign):][:800])
    check(EMAIL not in log and AWS_KEY not in log, "a prompt value reached the agent's log")


if __name__ == "__main__":
    lib.main()
