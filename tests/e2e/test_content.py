"""End-to-end: the agent inspects what the model will read, or refuses it.

Through the real BPF redirect with the default table (secrets block, PII
is redacted): compressed bodies (gzip, deflate as zlib and raw, br, zstd)
are decoded for inspection, a secret inside is blocked and an e-mail is
redacted with the body forwarded decoded (Content-Encoding dropped,
Content-Length fixed: the fake provider decodes what it gets and checks);
a decompression bomb is refused with 413 and INSPECTION_LIMIT, an unknown
coding with 415; limits reached are INSPECTION_LIMIT blocks whose event
tells the truth.
"""
import json
import os
import sys

import lib
from lib import check, test
import rig as rigmod

sys.path.insert(0, os.path.join(lib.ROOT, "tests", "fakes"))
import content_codings  # noqa: E402

GOOD = "127.21.0.2"
RIG = rigmod.Rig("content", {"api.openai.com": GOOD, "api.anthropic.com": GOOD,
                             "generativelanguage.googleapis.com": GOOD}, {"good": (GOOD, "good", 0)})
RIG.agent.start()
AWS_KEY = "AKIA" + "Z7QW3RT5YU2IO4PL"   # split so this file itself is not a credential finding
EMAIL = "jane.doe" + "@example.com"
URL = "https://api.openai.com/v1/chat/completions"
CODINGS = ("gzip", "deflate", "deflate-raw", "br", "zstd")


def chat(text, model="gpt-4o-mini"):
    return json.dumps({"model": model, "messages": [{"role": "user", "content": text}]})


_requests = [0]


def post_file(data, extra=(), url=URL, ctype="application/json"):
    _requests[0] += 1
    path = os.path.join(RIG.tmp, "body.bin")
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)
    return RIG.curl(url, "@" + path, extra=list(extra), ctype=ctype)


def post_coded(coding, text):
    hdr = "deflate" if coding == "deflate-raw" else coding
    return post_file(content_codings.compress(coding, text.encode()), ["-H", "Content-Encoding: " + hdr])


def last_received():
    got = RIG.received()
    return got[-1] if got else None


def last_event():
    """The event of the request just made (waits for it: events are written
    after the answer). Every request of this file goes through post_file."""
    evs = RIG.request_events(lambda e: True, n=_requests[0])
    check(len(evs) >= _requests[0], "no event for request %d" % _requests[0])
    return evs[_requests[0] - 1]


def seen_by_provider():
    return [r.get("body_decoded", r["body"]) for r in RIG.received()]


def audit_text():
    with open(RIG.agent.audit_log) as f:
        return f.read()


@test
def compressed_secret_is_blocked_for_every_coding():
    for c in CODINGS:
        tag = "secret-%s" % c
        code, out, p = post_coded(c, chat("%s deploy with %s" % (tag, AWS_KEY)))
        check(code == 403, "%s: status %s (%s)" % (c, code, out[:200]))
        check(not any(tag in b for b in seen_by_provider()), "%s: the provider received the request" % c)
        ev = last_event()
        check(ev["action"] == "block" and {"type": "AWS_ACCESS_KEY", "count": 1} in ev["findings"],
              "%s: event %s" % (c, ev))
    check(AWS_KEY not in audit_text(), "the key reached the audit log")


@test
def compressed_email_is_redacted_and_arrives_decodable():
    for c in CODINGS:
        tag = "mail-%s" % c
        code, out, p = post_coded(c, chat("%s write to %s today" % (tag, EMAIL)))
        check(code == 200, "%s: status %s (%s)" % (c, code, out[:200]))
        got = last_received()
        check(tag in got.get("body_decoded", got["body"]), "%s: not the last request: %s" % (c, got))
        check("decode_error" not in got, "%s: the provider could not decode the body: %s" % (c, got))
        text = got.get("body_decoded", got["body"])
        check(EMAIL not in text and "[EMAIL_1]" in text, "%s: provider read %r" % (c, text[:200]))
        check(json.loads(text)["messages"][0]["content"] == "%s write to [EMAIL_1] today" % tag,
              "%s: redacted text %r" % (c, text))
        check(got["body_len"] == len(got["body"].encode()), "%s: body length" % c)
        ev = last_event()
        check(ev["action"] == "redact" and ev["findings"] == [{"type": "EMAIL", "count": 1}],
              "%s: event %s" % (c, ev))
    check(EMAIL not in audit_text(), "the e-mail reached the audit log")


@test
def clean_compressed_body_forwarded_byte_for_byte():
    raw = content_codings.compress("gzip", chat("nothing sensitive here").encode())
    code, out, p = post_file(raw, ["-H", "Content-Encoding: gzip"])
    check(code == 200, "status %s %s" % (code, out[:200]))
    got = last_received()
    check(got["headers"].get("content-encoding") == "gzip" and got["body_len"] == len(raw),
          "a clean compressed body was altered: %s" % {k: got[k] for k in ("headers", "body_len")})


@test
def decompression_bomb_is_refused_not_inflated():
    # 64 MiB of zeros inside a JSON string: over the agent's 16 MiB default
    bomb = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"' + b"0" * (64 << 20) + b'"}]}'
    before = len(RIG.received())
    code, out, p = post_file(content_codings.compress("gzip", bomb), ["-H", "Content-Encoding: gzip"])
    check(code == 413, "status %s %s" % (code, out[:200]))
    check("error" in json.loads(out), "not a provider-shaped error: %s" % out[:200])
    check(len(RIG.received()) == before, "the bomb reached the provider")
    ev = last_event()
    check(ev["action"] == "block" and {"type": "INSPECTION_LIMIT", "count": 1} in ev["findings"],
          "event %s" % ev)


@test
def unknown_coding_is_415_and_corrupt_data_400():
    before = len(RIG.received())
    code, out, p = post_file(b"\x00\x01compress-me", ["-H", "Content-Encoding: compress"])
    check(code == 415 and "error" in json.loads(out), "unknown coding: %s %s" % (code, out[:200]))
    raw = content_codings.compress("gzip", chat("truncated " + EMAIL).encode())
    code, out, p = post_file(raw[:len(raw) // 2], ["-H", "Content-Encoding: gzip"])
    check(code == 400, "truncated gzip: %s %s" % (code, out[:200]))
    check(len(RIG.received()) == before, "an unreadable body reached the provider")


@test
def two_content_encodings_are_refused():
    """identity first for the agent, gzip second for the provider: the
    provider would decode what the agent never read"""
    before = len(RIG.received())
    raw = content_codings.compress("gzip", chat("hidden " + AWS_KEY).encode())
    code, out, p = post_file(raw, ["-H", "Content-Encoding: identity", "-H", "Content-Encoding: gzip"])
    check(code == 400 and "ambiguous_request" in out, "status %s %s" % (code, out[:200]))
    code, out, p = post_file(chat("typed twice").encode(), ["-H", "Content-Type: text/plain"])
    check(code == 400, "two Content-Type lines: %s %s" % (code, out[:200]))
    check(len(RIG.received()) == before, "an ambiguous request reached the provider")


@test
def span_limit_blocks_with_inspection_limit():
    text = "a@b.io " * 4100 + " and " + EMAIL
    code, out, p = post_file(chat(text).encode())
    check(code == 403, "status %s %s" % (code, out[:200]))
    check(not any(EMAIL in b for b in seen_by_provider()), "the body over the limit reached the provider")
    ev = last_event()
    got = {f["type"]: f["count"] for f in ev["findings"]}
    check(ev["action"] == "block" and got.get("INSPECTION_LIMIT") == 1 and got.get("EMAIL", 0) >= 4096,
          "the event does not tell the truth: %s" % {k: ev[k] for k in ("action", "rule", "findings")})


@test
def example_keys_do_not_hide_a_real_key():
    text = "AKIAIOSFODNN7EXAMPLE " * 8200 + " real " + AWS_KEY
    code, out, p = post_file(chat(text).encode())
    check(code == 403, "status %s %s" % (code, out[:200]))
    ev = last_event()
    check({"type": "AWS_ACCESS_KEY", "count": 1} in ev["findings"], "event %s" % ev["findings"])


@test
def many_cards_then_a_real_one_all_redacted():
    card = "4556 7375 8689 9855"
    text = "4111 1111 1111 1111; " * 600 + " mine " + card
    code, out, p = post_file(chat(text).encode())
    check(code in (200, 403), "status %s %s" % (code, out[:200]))
    ev = last_event()
    got = {f["type"]: f["count"] for f in ev["findings"]}
    if code == 200:
        sent = last_received()["body"]
        check(card not in sent and "4111 1111 1111 1111" not in sent, "a card went raw")
        check(ev["action"] == "redact" and "INSPECTION_LIMIT" not in got, "event %s" % ev)
    else:
        check(got.get("INSPECTION_LIMIT") == 1, "blocked without saying why: %s" % ev)


def chat_parts(parts, model="gpt-4o"):
    return json.dumps({"model": model, "messages": [{"role": "user", "content": parts}]})


def b64(text):
    import base64
    return base64.b64encode(text.encode()).decode()


@test
def base64_text_data_uri_is_read():
    tag = "b64uri"
    for secret, want in ((AWS_KEY, "AWS_ACCESS_KEY"), (EMAIL, "EMAIL")):
        body = chat_parts([{"type": "text", "text": tag},
                           {"type": "image_url", "image_url": {"url": "data:text/plain;base64," + b64("use " + secret)}}])
        code, out, p = post_file(body.encode())
        check(code == 403, "%s in a base64 text data URI: status %s %s" % (want, code, out[:200]))
        ev = last_event()
        check(ev["action"] == "block" and {"type": want, "count": 1} in ev["findings"], "event %s" % ev)
    # the e-mail cannot be rewritten inside base64: the reason says so
    check("redaction_impossible" in out or "base64" in out, "the block does not say why: %s" % out[:300])
    check(not any(tag in b for b in seen_by_provider()), "a base64 data URI with a finding reached the provider")


@test
def anthropic_document_block_is_read():
    body = json.dumps({"model": "claude-3-5-sonnet-latest", "max_tokens": 50, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "text/plain",
                                        "data": b64("config: key " + AWS_KEY)}},
        {"type": "text", "text": "summarise docblock"}]}]})
    code, out, p = post_file(body.encode(), ["-H", "anthropic-version: 2023-06-01"],
                             url="https://api.anthropic.com/v1/messages")
    check(code == 403, "status %s %s" % (code, out[:200]))
    check(json.loads(out).get("type") == "error", "not in Anthropic's error shape: %s" % out[:200])
    check(not any("docblock" in b for b in seen_by_provider()), "the document reached the provider")
    ev = last_event()
    check({"type": "AWS_ACCESS_KEY", "count": 1} in ev["findings"], "event %s" % ev)


@test
def opaque_image_is_allowed_with_a_finding():
    png = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
    body = chat_parts([{"type": "text", "text": "what is in this picture opaque1"},
                       {"type": "image_url", "image_url": {"url": "data:image/png;base64," + png}}])
    code, out, p = post_file(body.encode())
    check(code == 200, "status %s %s" % (code, out[:200]))
    check(last_received()["body"] == body, "an image request without findings was altered")
    ev = last_event()
    check(ev["action"] == "alert" and ev["findings"] == [{"type": "OPAQUE_CONTENT", "count": 1}],
          "event %s" % {k: ev.get(k) for k in ("action", "rule", "findings")})
    check("image/png" in (ev.get("reason") or "") and "70 bytes" in ev["reason"],
          "the event does not name the media type and size: %r" % ev.get("reason"))
    check(png not in audit_text(), "image bytes in the audit log")


@test
def jsonl_batch_file_with_unicode_escapes():
    line1 = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello jsonl"}]}})
    line2 = ('{"custom_id": "b", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o-mini", '
             '"messages": [{"role": "user", "content": "key \\u0041KIA%s"}]}}' % AWS_KEY[4:])
    code, out, p = post_file((line1 + "\n" + line2 + "\n").encode(), ctype="application/jsonl",
                             url="https://api.openai.com/v1/files")
    check(code == 403, "status %s %s" % (code, out[:200]))
    check(not any("hello jsonl" in b for b in seen_by_provider()), "the batch file reached the provider")
    ev = last_event()
    check({"type": "AWS_ACCESS_KEY", "count": 1} in ev["findings"], "event %s" % ev)


@test
def tool_call_arguments_redacted_inside_nested_json():
    args = json.dumps({"to": EMAIL, "note": "line one\nline two"})
    body = json.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "send it nested1"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                              "function": {"name": "send_mail", "arguments": args}}]},
        {"role": "tool", "tool_call_id": "c1", "content": json.dumps({"sent_to": EMAIL})}]})
    code, out, p = post_file(body.encode())
    check(code == 200, "status %s %s" % (code, out[:200]))
    sent = json.loads(last_received()["body"])
    inner = json.loads(sent["messages"][1]["tool_calls"][0]["function"]["arguments"])
    check(inner == {"to": "[EMAIL_1]", "note": "line one\nline two"}, "arguments after redaction: %r" % inner)
    check(json.loads(sent["messages"][2]["content"]) == {"sent_to": "[EMAIL_1]"}, "tool result %r" % sent["messages"][2])
    ev = last_event()
    check(ev["action"] == "redact" and ev["findings"] == [{"type": "EMAIL", "count": 2}], "event %s" % ev)


@test
def unicode_tricks_are_normalised():
    cases = [
        ("zwsp-mail", "write to jane.doe\u200b@example.com", "redact", "EMAIL"),
        ("zwsp-key", "key AKIA\u200bZ7QW3RT5YU2IO4PL", "block", "AWS_ACCESS_KEY"),
        ("fullwidth", "write to jane.doe\uff20example.com or card "
         "\uff14\uff15\uff15\uff16 \uff17\uff13\uff17\uff15 \uff18\uff16\uff18\uff19 "
         "\uff19\uff18\uff15\uff15", "redact", "CREDIT_CARD"),
        ("nbsp-card", "card 4556\u00a07375\u00a08689\u00a09855 thanks", "redact", "CREDIT_CARD"),
        # control characters between the letters (JSON escapes): a reader
        # passes over them, so the detectors do
        ("nul-key", "key " + "\\u0000".join("AKIAZ7QW3RT5YU2IO4PL"), "block", "AWS_ACCESS_KEY"),
        ("ctl-mail", "write to jane.doe\\u0001@example\\u007f.com", "redact", "EMAIL"),
        # Unicode tags ("ASCII smuggling"): invisible, read by models
        ("tag-key", "key " + "".join(chr(0xE0000 + ord(c)) for c in "AKIAZ7QW3RT5YU2IO4PL"), "block",
         "AWS_ACCESS_KEY"),
    ]
    for tag, text, action, ftype in cases:
        body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"%s %s"}]}' % (tag, text)
        code, out, p = post_file(body.encode())
        ev = last_event()
        check(ev["action"] == action and any(f["type"] == ftype for f in ev["findings"]),
              "%s: event %s" % (tag, {k: ev.get(k) for k in ("action", "findings")}))
        if action == "block":
            check(code == 403 and not any(tag in b for b in seen_by_provider()), "%s reached the provider" % tag)
        else:
            check(code == 200, "%s: status %s" % (tag, code))
            got = json.loads(last_received()["body"])["messages"][0]["content"]
            check(tag in got and "@" not in got.replace("[", "") and "7375" not in got and "\uff17" not in got,
                  "%s: the provider read %r" % (tag, got))


def multipart(parts, boundary="vigil-e2e-boundary"):
    """parts: (name, filename or None, headers dict, bytes)"""
    out = b""
    for name, fname, hdrs, data in parts:
        disp = 'form-data; name="%s"' % name + ('; filename="%s"' % fname if fname else "")
        out += b"--" + boundary.encode() + b"\r\nContent-Disposition: " + disp.encode() + b"\r\n"
        for k, v in hdrs.items():
            out += ("%s: %s\r\n" % (k, v)).encode()
        out += b"\r\n" + data + b"\r\n"
    return out + b"--" + boundary.encode() + b"--\r\n", "multipart/form-data; boundary=" + boundary


@test
def multipart_upload_with_a_gzipped_file_part():
    line = json.dumps({"custom_id": "1", "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "mpgz " + AWS_KEY}]}})
    body, ctype = multipart([("purpose", None, {}, b"batch"),
                             ("file", "batch.jsonl.gz", {"Content-Type": "application/jsonl", "Content-Encoding": "gzip"},
                              content_codings.compress("gzip", (line + "\n").encode()))])
    code, out, p = post_file(body, ctype=ctype, url="https://api.openai.com/v1/files")
    check(code == 403, "status %s %s" % (code, out[:200]))
    check(len([r for r in RIG.received() if r["path"] == "/v1/files"]) == 0, "the upload reached the provider")
    ev = last_event()
    check({"type": "AWS_ACCESS_KEY", "count": 1} in ev["findings"], "event %s" % ev)
    # an e-mail in a compressed part cannot be rewritten there: refused, not skipped
    line = line.replace(AWS_KEY, EMAIL)
    body, ctype = multipart([("file", "b.jsonl.gz", {"Content-Encoding": "gzip"},
                              content_codings.compress("gzip", (line + "\n").encode()))])
    code, out, p = post_file(body, ctype=ctype, url="https://api.openai.com/v1/files")
    check(code == 403 and "redaction_impossible" in out, "e-mail in a gzipped part: %s %s" % (code, out[:300]))
    ev = last_event()
    check(ev["action"] == "block" and {"type": "EMAIL", "count": 1} in ev["findings"], "event %s" % ev)


@test
def multipart_plain_part_redacted_in_place():
    body, ctype = multipart([("purpose", None, {}, b"assistants"),
                             ("file", "notes.txt", {"Content-Type": "text/plain"}, ("mpplain call " + EMAIL).encode())])
    code, out, p = post_file(body, ctype=ctype, url="https://api.openai.com/v1/files")
    check(code == 200, "status %s %s" % (code, out[:200]))
    got = last_received()
    check("mpplain call [EMAIL_1]" in got["body"] and EMAIL not in got["body"], "provider got %r" % got["body"][-200:])
    check(got["body"].endswith("--vigil-e2e-boundary--\r\n"), "multipart framing broken: %r" % got["body"][-60:])
    ev = last_event()
    check(ev["action"] == "redact" and ev["findings"] == [{"type": "EMAIL", "count": 1}], "event %s" % ev)


@test
def utf16_text_is_read_not_waved_through_as_binary():
    """OpenAI's file search takes text files in UTF-16 (Notepad's
    "Unicode", `iconv -t UTF-16`): its NUL bytes once made the file an
    opaque binary, allowed with an alert, and the key went up unread.
    UTF-16 with or without a byte order mark, as a file part, a base64 data
    URI or the raw body, is read; it cannot be rewritten in place, so an
    address there is refused like one in base64."""
    text = "utf16 notes: deploy with key %s today\n" % AWS_KEY
    variants = [("utf-16", "le+bom"), ("utf-16-be", "be"), ("utf-16-le", "le")]
    for enc, name in variants:
        body, ctype = multipart([("purpose", None, {}, b"assistants"),
                                 ("file", "notes.txt", {"Content-Type": "text/plain"}, text.encode(enc))])
        code, out, p = post_file(body, ctype=ctype, url="https://api.openai.com/v1/files")
        check(code == 403, "%s file part with a key: status %s %s" % (name, code, out[:200]))
        ev = last_event()
        check(ev["action"] == "block" and {"type": "AWS_ACCESS_KEY", "count": 1} in ev["findings"],
              "%s: event %s" % (name, ev))
    # mostly Chinese (under half the units ASCII), no mark: the ASCII
    # count once missed it; the key in ASCII, then in fullwidth letters
    cjk = "\u5229\u7528\u8005\u306e\u8a2d\u5b9a\u3092\u66f4\u65b0\u3057\u307e\u3059" * 4
    fullwidth = "".join(chr(ord(c) + 0xfee0) for c in AWS_KEY)
    for enc, name, key in [("utf-16-le", "le cjk", AWS_KEY), ("utf-16-be", "be cjk", AWS_KEY),
                           ("utf-16-le", "le cjk fullwidth", fullwidth)]:
        body, ctype = multipart([("purpose", None, {}, b"assistants"),
                                 ("file", "notes.txt", {"Content-Type": "text/plain"},
                                  ("utf16 notes " + cjk + key + cjk).encode(enc))])
        code, out, p = post_file(body, ctype=ctype, url="https://api.openai.com/v1/files")
        check(code == 403, "%s file part with a key: status %s %s" % (name, code, out[:200]))
        ev = last_event()
        check(ev["action"] == "block" and {"type": "AWS_ACCESS_KEY", "count": 1} in ev["findings"],
              "%s: event %s" % (name, ev))
    body = chat_parts([{"type": "text", "text": "u16uri"},
                       {"type": "image_url", "image_url": {"url": "data:text/plain;base64," +
                        __import__("base64").b64encode(("mail " + EMAIL).encode("utf-16")).decode()}}])
    code, out, p = post_file(body.encode())
    check(code == 403 and "redaction_impossible" in out, "an address in UTF-16 base64: %s %s" % (code, out[:200]))
    code, out, p = post_file(text.encode("utf-16"), ctype="text/plain", url="https://api.openai.com/v1/files")
    check(code == 403, "a raw UTF-16 body with a key: status %s %s" % (code, out[:200]))
    check(not any("utf16 notes" in b.replace("\x00", "") or "u16uri" in b for b in seen_by_provider()),
          "a UTF-16 text with a finding reached the provider")
    # a clean UTF-16 file still goes up as it was sent, named as text
    clean = "utf16 clean notes, nothing to find\n".encode("utf-16")
    body, ctype = multipart([("purpose", None, {}, b"assistants"),
                             ("file", "clean.txt", {"Content-Type": "text/plain"}, clean)])
    code, out, p = post_file(body, ctype=ctype, url="https://api.openai.com/v1/files")
    check(code == 200, "a clean UTF-16 file: status %s %s" % (code, out[:200]))
    ev = last_event()
    check("utf-16" in (ev.get("reason") or ""), "the clean UTF-16 file is not named as such: %s" % ev)


@test
def base64_of_text_in_a_prompt_is_read():
    """A model decodes base64 and hexadecimal at sight: "decode this:
    QUtJQV..." in a plain prompt, or a Kubernetes Secret pasted whole, once
    took a key up unseen. Runs of either in any text that decode to text
    are read; a key there is blocked, an address refused (base64 cannot be
    redacted in place), and base64 of bytes (a hash, an image) passes as
    sent."""
    import base64
    k8s = ("kind: Secret\ndata:\n  credentials: %s\n" %
           b64("[default]\naws_access_key_id = %s\n" % AWS_KEY))
    for tag, text in [("b64plain", "decode this and use it: " + b64("deploy key " + AWS_KEY)),
                      ("b64k8s", "why does this fail?\n" + k8s),
                      ("b64twice", "twice: " + b64(b64("deploy key " + AWS_KEY))),
                      ("hexkey", "from hex: " + ("deploy key " + AWS_KEY).encode().hex())]:
        code, out, p = post_file(chat(tag + " " + text).encode())
        ev = last_event()
        check(code == 403 and ev["action"] == "block" and {"type": "AWS_ACCESS_KEY", "count": 1} in ev["findings"],
              "%s: status %s, event %s" % (tag, code, {k: ev.get(k) for k in ("action", "findings")}))
    code, out, p = post_file(chat("b64mail write to " + b64("jane.doe@example.com please")).encode())
    check(code == 403 and "redaction_impossible" in out, "an address in base64: %s %s" % (code, out[:200]))
    check(not any(t in b for b in seen_by_provider() for t in ("b64plain", "b64k8s", "b64twice", "hexkey", "b64mail")),
          "base64 of a finding reached the provider")
    blob = "b64bytes sha512-" + base64.b64encode(bytes(range(7, 250, 3))).decode() + " fine"
    code, out, p = post_file(chat(blob).encode())
    check(code == 200 and json.loads(last_received()["body"])["messages"][0]["content"] == blob,
          "base64 of bytes was not passed as sent: %s %s" % (code, out[:200]))


@test
def member_names_are_inspected():
    """Member names leave the machine too: metadata keys are stored with
    the completion, a tool schema's property names are read by the model.
    They were never inspected: a key as a metadata name went up, and so
    did an address as a property name."""
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "keyname"}],
                       "metadata": {AWS_KEY: "x"}})
    code, out, p = post_file(body.encode())
    ev = last_event()
    check(code == 403 and {"type": "AWS_ACCESS_KEY", "count": 1} in ev["findings"],
          "a key as a member name: status %s, event %s" % (code, {k: ev.get(k) for k in ("action", "findings")}))
    tools = [{"type": "function", "function": {"name": "notify", "description": "notify someone",
              "parameters": {"type": "object", "properties": {EMAIL: {"type": "string"}}}}}]
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "propname"}],
                       "tools": tools})
    code, out, p = post_file(body.encode())
    check(code == 200, "an address as a property name: status %s %s" % (code, out[:200]))
    sent = json.loads(last_received()["body"])
    props = sent["tools"][0]["function"]["parameters"]["properties"]
    check(EMAIL not in json.dumps(sent) and len(props) == 1, "the property name went up as %s" % list(props))
    check(not any("keyname" in b for b in seen_by_provider()), "the key as a member name reached the provider")


@test
def invalid_json_is_read_through_its_escapes_and_never_half_redacted():
    """A body that is not valid JSON (a trailing comma, NaN: lenient
    parsers take both) was scanned as raw text, so a key written with \\u
    escapes went unseen; and an address in it was found but could not be
    redacted, and was forwarded as sent while the event said redact. Such
    a body is now read through its escapes, and refused: 400
    invalid_json."""
    esc = "".join("\\u%04x" % ord(c) for c in AWS_KEY[:4]) + AWS_KEY[4:]
    for bad in ('{"model": "gpt-4o-mini", "temperature": NaN, "messages": [{"role": "user", "content": "ijk %s"}]}',
                '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ijk %s"},],}',
                # a UTF-8 byte order mark: Python's json.loads(bytes) skips it
                '\ufeff{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ijk %s"}]}'):
        code, out, p = post_file((bad % esc).encode())
        check(code == 403, "an escaped key in invalid JSON: status %s %s" % (code, out[:200]))
        ev = last_event()
        check(ev["action"] == "block" and {"type": "AWS_ACCESS_KEY", "count": 1} in ev["findings"], "event %s" % ev)
        code, out, p = post_file((bad % ("mail " + EMAIL)).encode())
        check(code == 400 and "not valid JSON" in out, "an address in invalid JSON: status %s %s" % (code, out[:200]))
        ev = last_event()
        check(ev["action"] == "block" and ev["rule"] == "default:invalid_json" and
              {"type": "EMAIL", "count": 1} in ev["findings"], "event %s" % ev)
    # valid JSON, in UTF-16 or UTF-32 (a mark, big-endian, little-endian):
    # Python's json.loads(bytes) reads all six, so the model rule and the
    # escapes matter; it was an opaque text (the mark, big-endian), its
    # escaped key unseen and the request forwarded
    good = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ijk %s"}]}'
    for enc in ("utf-16", "utf-16-be", "utf-16-le", "utf-32", "utf-32-be", "utf-32-le"):
        code, out, p = post_file((good % esc).encode(enc))
        check(code == 403 and {"type": "AWS_ACCESS_KEY", "count": 1} in last_event()["findings"],
              "an escaped key in %s JSON: status %s %s %s" % (enc, code, out[:200], last_event()["findings"]))
        code, out, p = post_file((good % "fine").encode(enc))
        ev = last_event()
        check(code == 400 and ev["rule"] == "default:invalid_json" and "OPAQUE_CONTENT" not in json.dumps(ev),
              "%s JSON: status %s %s, event %s" % (enc, code, out[:200], ev))
    # the same in a Batch API file: a line with NaN is not JSON lines, and
    # its strings are still read through their escapes
    line = ('{"custom_id": "1", "body": {"temperature": NaN, "messages": [{"role": "user", "content": "ijk %s"}]}}\n'
            % esc)
    body, ctype = multipart([("purpose", None, {}, b"batch"),
                             ("file", "batch.jsonl", {"Content-Type": "application/jsonl"}, line.encode())])
    code, out, p = post_file(body, ctype=ctype, url="https://api.openai.com/v1/files")
    check(code == 403 and {"type": "AWS_ACCESS_KEY", "count": 1} in last_event()["findings"],
          "an escaped key in a file part that is not JSON lines: status %s %s" % (code, out[:200]))
    check(not any("ijk" in b for b in seen_by_provider()), "invalid JSON with a finding reached the provider")
    # invalid JSON with nothing in it is refused too: which model it asks
    # for cannot be read (a lenient provider would serve it), in the
    # provider's error shape
    code, out, p = post_file(b'{"model": "gpt-4o-mini", "temperature": NaN, "messages": [{"role": "user", "content": "ok"}]}')
    check(code == 400 and json.loads(out).get("error", {}).get("code") == "invalid_json" and
          last_event()["rule"] == "default:invalid_json", "clean invalid JSON: %s %s" % (code, out[:200]))


@test
def json_labelled_as_a_form_or_multipart_is_read_as_json():
    """A parser that ignores Content-Type reads JSON whatever the label: a
    key written with \\u escapes in JSON sent as a form, or as multipart
    with no part in it, was read as form pairs or raw text, and missed."""
    esc = "".join("\\u%04x" % ord(c) for c in AWS_KEY[:4]) + AWS_KEY[4:]
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "mislabel %s"}]})
    body = body.replace("%s", esc)
    for ctype, pre in (("application/x-www-form-urlencoded", ""), ("application/x-www-form-urlencoded", " \n"),
                       ("multipart/form-data; boundary=nothing-here", "")):
        code, out, p = post_file((pre + body).encode(), ctype=ctype)
        check(code == 403, "JSON labelled %s with an escaped key: status %s %s" % (ctype, code, out[:200]))
        check({"type": "AWS_ACCESS_KEY", "count": 1} in last_event()["findings"], "event %s" % last_event())
    check(not any("mislabel" in b for b in seen_by_provider()), "mislabelled JSON with a key reached the provider")


@test
def form_body_redacted_and_still_a_form():
    import urllib.parse
    body = urllib.parse.urlencode({"prompt": "formtag write to " + EMAIL, "n": "1"})
    code, out, p = post_file(body.encode(), ctype="application/x-www-form-urlencoded",
                             url="https://api.openai.com/v1/files")
    check(code == 200, "status %s %s" % (code, out[:200]))
    sent = urllib.parse.parse_qs(last_received()["body"])
    check(sent == {"prompt": ["formtag write to [EMAIL_1]"], "n": ["1"]}, "provider decoded %r" % sent)


def get(url, extra=()):
    _requests[0] += 1
    return RIG.curl(url, None, extra=list(extra))


def spool_bytes():
    out = b""
    for root, _, files in os.walk(os.path.join(RIG.agent.dir, "spool")):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                out += fh.read()
    return out


@test
def key_in_a_path_segment_is_blocked_and_never_logged():
    code, out, p = get("https://api.openai.com/v1/models/" + AWS_KEY)
    check(code == 403, "status %s %s" % (code, out[:200]))
    check(not any(AWS_KEY in r["path"] for r in RIG.received()), "the key reached the provider")
    ev = last_event()
    check(ev["action"] == "block" and {"type": "AWS_ACCESS_KEY", "count": 1} in ev["findings"], "event %s" % ev)
    check(ev["path"] == "/v1/models/[AWS_ACCESS_KEY]", "event path %r" % ev["path"])
    check(AWS_KEY not in audit_text(), "the key is in the audit log")
    check(AWS_KEY.encode() not in spool_bytes(), "the key is in the spool")
    # percent-encoded, it is the same key
    code, out, p = get("https://api.openai.com/v1/models/%41KIA" + AWS_KEY[4:])
    check(code == 403, "percent-encoded key in the path: %s" % code)


@test
def email_in_path_query_and_header_is_redacted():
    code, out, p = get("https://api.openai.com/v1/models/" + EMAIL.replace("@", "%40") + "?user=" + EMAIL +
                       "&limit=2", ["-H", "X-Note: from " + EMAIL])
    check(code == 200, "status %s %s" % (code, out[:200]))
    got = last_received()
    check(EMAIL not in json.dumps(got) and EMAIL.replace("@", "%40") not in got["path"],
          "the e-mail reached the provider: %s %s" % (got["path"], got["headers"].get("x-note")))
    check(got["path"] == "/v1/models/%5BEMAIL%5D?user=%5BEMAIL%5D&limit=2", "path %r" % got["path"])
    check(got["headers"].get("x-note") == "from [EMAIL]", "header %r" % got["headers"].get("x-note"))
    ev = last_event()
    check(ev["action"] == "redact" and ev["findings"] == [{"type": "EMAIL", "count": 3}], "event %s" % ev)
    check(ev["path"] == "/v1/models/[EMAIL]", "event path %r" % ev["path"])
    check(EMAIL not in audit_text() and EMAIL.encode() not in spool_bytes(), "the e-mail was logged")


@test
def secret_in_a_header_value_is_blocked():
    code, out, p = post_file(chat("hdrtag").encode(), ["-H", "X-Debug: aws " + AWS_KEY])
    check(code == 403, "status %s %s" % (code, out[:200]))
    check(not any("hdrtag" in b for b in seen_by_provider()), "the request reached the provider")


@test
def provider_credentials_in_their_place_are_not_findings():
    gkey = "AIza" + "SyB7xQ2mN5pL8vR3tW6yZ9aC1dE4fG7hJ0k"
    body = json.dumps({"contents": [{"parts": [{"text": "hello gemini"}]}]})
    code, out, p = post_file(body.encode(), url="https://generativelanguage.googleapis.com/v1beta/models/"
                             "gemini-1.5-flash:generateContent?key=" + gkey)
    check(code == 200, "gemini ?key=: status %s %s" % (code, out[:200]))
    ev = last_event()
    check(ev["findings"] == [] and ev["action"] == "allow", "gemini key counted: %s" % ev)
    check(gkey not in audit_text(), "the Gemini key is in the audit log")
    code, out, p = post_file(chat("own key").encode(), ["-H", "x-goog-api-key: " + gkey, "-H", "api-key: " + "0" * 32])
    ev = last_event()
    check(code == 200 and ev["findings"] == [], "credential headers counted: %s %s" % (code, ev))


if __name__ == "__main__":
    lib.main()
