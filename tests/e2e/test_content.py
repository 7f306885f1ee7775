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
RIG = rigmod.Rig("content", {"api.openai.com": GOOD, "api.anthropic.com": GOOD}, {"good": (GOOD, "good", 0)})
RIG.agent.start()
AWS_KEY = "AKIA" + "Z7QW3RT5YU2IO4PL"   # split so this file itself is not a credential finding
EMAIL = "jane.doe" + "@example.com"
URL = "https://api.openai.com/v1/chat/completions"
CODINGS = ("gzip", "deflate", "deflate-raw", "br", "zstd")


def chat(text, model="gpt-4o-mini"):
    return json.dumps({"model": model, "messages": [{"role": "user", "content": text}]})


_requests = [0]


def post_file(data, extra=(), url=URL):
    _requests[0] += 1
    path = os.path.join(RIG.tmp, "body.bin")
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)
    return RIG.curl(url, "@" + path, extra=list(extra))


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


if __name__ == "__main__":
    lib.main()
