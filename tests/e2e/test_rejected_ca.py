#!/usr/bin/env python3
"""End-to-end: what happens after a client refuses the interception CA.

The client is curl trusting only the provider's real CA (as a program that
ignores the system store, or pins, would): through the agent its TLS
handshake fails. With on_rejected_ca: block (the default) it keeps failing,
audited each time. With on_rejected_ca: passthrough that program and host
are relayed undecrypted for rejected_ca_ttl (the retry reaches the provider
with the provider's own certificate), audited as rejected_ca_exception; a
different program to the same host is still intercepted, and after the
ttl the program is intercepted again.
"""
import os
import shutil
import time

import lib
from lib import check, test
import rig as rigmod

GOOD, GOOD2 = "127.51.1.2", "127.51.1.3"
PASS = rigmod.Rig("rejca-pass", {"api.openai.com": GOOD}, {"good": (GOOD, "good", 0)},
                  endpoints=["api.openai.com"], agent_extra="on_rejected_ca: passthrough\nrejected_ca_ttl: 6s\n")
PASS.agent.start()
BLOCK = rigmod.Rig("rejca-block", {"api.openai.com": GOOD2}, {"good": (GOOD2, "good", 0)},
                   endpoints=["api.openai.com"])
BLOCK.agent.start()


def refusing_curl(rig, exe="curl"):
    """curl trusting the provider's CA only, not the interception CA.
    exe: a copy of curl under another name is another program."""
    argv = [exe, "-sS", "--max-time", "10", "--cacert", rig.pki["ca_cert"], "-o", "-", "-w", "\n%{http_code}",
            "-H", "Authorization: Bearer sk-test", "https://api.openai.com/v1/models"]
    p = lib.run(argv, cgroup=rig.cg.path, hosts=rig.hosts, uid=lib.NOBODY, timeout=30)
    return int(p.stdout.rpartition("\n")[2] or 0), p


def rejections(rig):
    return [e for e in rig.agent.events("connection") if e.get("reason") == "client_rejected_interception"]


def exceptions(rig):
    return [e for e in rig.agent.events("connection") if e.get("reason") == "rejected_ca_exception"]


@test
def block_keeps_refusing_and_audits_each_time():
    for i in range(2):
        code, p = refusing_curl(BLOCK)
        check(code == 0 and p.returncode != 0, "attempt %d went through: %s %s" % (i, code, p.stderr[-200:]))
    lib_wait(lambda: len(rejections(BLOCK)) >= 2)
    evs = rejections(BLOCK)
    check(len(evs) == 2 and all((e.get("exe") or "").endswith("curl") and e["sni"] == "api.openai.com" for e in evs),
          "expected two audited rejections naming curl: %s" % evs)
    check(not exceptions(BLOCK), "block relayed by exception: %s" % exceptions(BLOCK))
    check(not BLOCK.received(), "the provider received something under block")


def lib_wait(pred, timeout=5.0):
    deadline = time.time() + timeout
    while not pred() and time.time() < deadline:
        time.sleep(0.05)


@test
def passthrough_relays_the_retry_for_a_while():
    code, p = refusing_curl(PASS)
    check(code == 0 and p.returncode != 0, "the first attempt should fail (CA refused): %s" % code)
    lib_wait(lambda: rejections(PASS))
    check(rejections(PASS), "the rejection is not audited")
    t_reject = time.time()
    code, p = refusing_curl(PASS)
    check(code == 200, "the retry was not relayed: %s %s" % (code, p.stderr[-300:]))
    got = [r for r in PASS.received() if r["path"] == "/v1/models"]
    check(got, "the provider did not receive the relayed request")
    lib_wait(lambda: exceptions(PASS))
    ev = exceptions(PASS)
    check(ev and ev[-1]["action"] == "passthrough" and (ev[-1].get("exe") or "").endswith("curl")
          and ev[-1]["sni"] == "api.openai.com" and ev[-1]["uid"] == lib.NOBODY,
          "the exception is not audited as passthrough with program and host: %s" % ev)
    check(not PASS.request_events(lambda e: e["path"] == "/v1/models", timeout=0.5),
          "a relayed connection was decrypted")
    # Another program to the same host is still intercepted (and refuses).
    other = os.path.join(PASS.tmp, "othercurl")
    shutil.copy(shutil.which("curl"), other)
    os.chmod(other, 0o755)
    n = len(rejections(PASS))
    code, p = refusing_curl(PASS, other)
    check(code == 0, "another program was relayed by curl's exception: %s" % code)
    lib_wait(lambda: len(rejections(PASS)) > n)
    check((rejections(PASS)[-1].get("exe") or "").endswith("othercurl"), "other program's rejection not audited")
    # After the ttl, curl is intercepted again.
    time.sleep(max(0, t_reject + 6.5 - time.time()))
    code, p = refusing_curl(PASS)
    check(code == 0 and p.returncode != 0, "the exception outlived rejected_ca_ttl: %s" % code)


if __name__ == "__main__":
    lib.main()
