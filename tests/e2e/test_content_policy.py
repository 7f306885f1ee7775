"""End-to-end: a policy names what the agent could not read.

OPAQUE_CONTENT and INSPECTION_LIMIT are finding types like the others: a
rule can block opaque content or let it through, and a rule that decides
to redact a request whose findings are incomplete (a limit was reached)
is refused instead of forwarding the values past the limit raw.
"""
import json
import os

import lib
from lib import check, test
import rig as rigmod

GOOD = "127.21.0.3"
POLICY = """default: allow
rules:
  - name: no-opaque-to-gpt-4o
    when: { finding: [OPAQUE_CONTENT], path: ['/v1/chat/completions'], model: [gpt-4o] }
    action: block
  - name: opaque-ok
    when: { finding: [OPAQUE_CONTENT] }
    action: allow
  - name: pii
    when: { finding: ['@all_pii'] }
    action: redact
"""
RIG = rigmod.Rig("contentpol", {"api.openai.com": GOOD}, {"good": (GOOD, "good", 0)})
POLICY_PATH = os.path.join(RIG.tmp, "policy.yaml")
with open(POLICY_PATH, "w") as f:
    f.write(POLICY)
with open(RIG.agent.config, "a") as f:
    f.write("policy: %s\n" % POLICY_PATH)
RIG.agent.start()
URL = "https://api.openai.com/v1/chat/completions"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
_requests = [0]


def post(body):
    _requests[0] += 1
    path = os.path.join(RIG.tmp, "body.json")
    with open(path, "w") as f:
        f.write(body)
    os.chmod(path, 0o644)
    return RIG.curl(URL, "@" + path)


def last_event():
    evs = RIG.request_events(lambda e: True, n=_requests[0])
    check(len(evs) >= _requests[0], "no event for request %d" % _requests[0])
    return evs[_requests[0] - 1]


def image_chat(model):
    return json.dumps({"model": model, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}}]}]})


@test
def policy_blocks_or_allows_opaque_content():
    code, out, p = post(image_chat("gpt-4o"))
    check(code == 403 and "no-opaque-to-gpt-4o" in out, "gpt-4o with an image: %s %s" % (code, out[:200]))
    ev = last_event()
    check(ev["rule"] == "no-opaque-to-gpt-4o" and ev["findings"] == [{"type": "OPAQUE_CONTENT", "count": 1}], "event %s" % ev)
    code, out, p = post(image_chat("gpt-4o-mini"))
    check(code == 200, "gpt-4o-mini with an image: %s %s" % (code, out[:200]))
    ev = last_event()
    check(ev["rule"] == "opaque-ok" and ev["action"] == "allow", "event %s" % ev)


@test
def redact_over_a_limit_is_refused_not_partial():
    email = "jane.doe" + "@example.com"
    code, out, p = post(json.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "a@b.io " * 4100 + email}]}))
    check(code == 403 and "inspection_limit" in out, "status %s %s" % (code, out[:300]))
    check(not any(email in r["body"] for r in RIG.received()), "the value past the limit reached the provider")
    ev = last_event()
    got = {f["type"]: f["count"] for f in ev["findings"]}
    check(ev["action"] == "block" and got.get("INSPECTION_LIMIT") == 1, "event %s" % {
        k: ev[k] for k in ("action", "rule", "findings")})


if __name__ == "__main__":
    lib.main()
