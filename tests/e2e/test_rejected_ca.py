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

The policy's rejected_ca: entries decide per program and host ahead of the
agent's setting (POLICY rig: the agent says passthrough for an hour, the
policy says passthrough for 5s for one program and block for another; a
third program, named by no entry, gets the agent's setting), and follow
the policy on SIGHUP.
"""
import os
import shutil
import signal
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

GOOD3 = "127.90.1.2"
POLICY = rigmod.Rig("rejca-pol", {"api.openai.com": GOOD3}, {"good": (GOOD3, "good", 0)},
                    endpoints=["api.openai.com"], agent_extra="on_rejected_ca: passthrough\nrejected_ca_ttl: 1h\n")


def program(rig, name):
    """A copy of curl under another name: another program to the agent."""
    path = os.path.join(rig.tmp, name)
    shutil.copy(shutil.which("curl"), path)
    os.chmod(path, 0o755)
    return path


PASSCURL, BLOCKCURL, OTHERCURL = (program(POLICY, n) for n in ("passcurl", "blockcurl", "othercurl"))
POLICY_PATH = os.path.join(POLICY.tmp, "policy.yaml")
POLICY_TEXT = """version: 1
rejected_ca:
  - name: legacy-openai-client
    when: { exe: [%s], host: [api.openai.com] }
    action: passthrough
    ttl: 5s
  - name: keep-refusing
    when: { exe: [%s] }
    action: %s
"""


def write_policy(block_action):
    with open(POLICY_PATH, "w") as f:
        f.write(POLICY_TEXT % (PASSCURL, BLOCKCURL, block_action))


write_policy("block")
with open(POLICY.agent.config, "a") as f:
    f.write("policy: %s\n" % POLICY_PATH)
POLICY.agent.start()


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


def refused(rig, exe):
    code, p = refusing_curl(rig, exe)
    return code == 0 and p.returncode != 0


def exe_is(e, exe):
    return e.get("exe") == exe


@test
def policy_passthrough_for_one_program_and_host_names_its_entry():
    check(refused(POLICY, PASSCURL), "the first attempt should fail (CA refused)")
    lib_wait(lambda: [e for e in rejections(POLICY) if exe_is(e, PASSCURL)])
    t_reject = time.time()
    n_received = len(POLICY.received())
    code, p = refusing_curl(POLICY, PASSCURL)
    check(code == 200, "the policy's passthrough did not relay the retry: %s %s" % (code, p.stderr[-300:]))
    check(len(POLICY.received()) > n_received, "the provider did not receive the relayed request")
    lib_wait(lambda: [e for e in exceptions(POLICY) if exe_is(e, PASSCURL)])
    ev = [e for e in exceptions(POLICY) if exe_is(e, PASSCURL)]
    check(ev and ev[-1]["action"] == "passthrough" and ev[-1].get("rule") == "legacy-openai-client"
          and ev[-1]["sni"] == "api.openai.com", "the exception does not name the policy entry: %s" % ev)
    check(not POLICY.request_events(lambda e: e["path"] == "/v1/models", timeout=0.5),
          "a relayed connection was decrypted")
    # The entry's ttl (5s), not the agent's rejected_ca_ttl (1h).
    time.sleep(max(0, t_reject + 5.5 - time.time()))
    check(refused(POLICY, PASSCURL), "the exception outlived the entry's ttl: passcurl was not intercepted again")


@test
def policy_block_for_another_program_overrides_the_agents_passthrough():
    for i in range(2):
        check(refused(POLICY, BLOCKCURL), "attempt %d of blockcurl went through" % i)
    lib_wait(lambda: len([e for e in rejections(POLICY) if exe_is(e, BLOCKCURL)]) >= 2)
    evs = [e for e in rejections(POLICY) if exe_is(e, BLOCKCURL)]
    check(len(evs) == 2, "expected two audited rejections of blockcurl: %s" % evs)
    check(all(e.get("rule") == "keep-refusing" for e in evs),
          "the rejections do not name the entry that keeps refusing: %s" % [e.get("rule") for e in evs])
    check(not [e for e in exceptions(POLICY) if exe_is(e, BLOCKCURL)], "blockcurl relayed by exception")


@test
def a_program_no_entry_names_gets_the_agents_setting():
    check(refused(POLICY, OTHERCURL), "othercurl's first attempt should fail")
    lib_wait(lambda: [e for e in rejections(POLICY) if exe_is(e, OTHERCURL)])
    rej = [e for e in rejections(POLICY) if exe_is(e, OTHERCURL)]
    check(rej[-1].get("rule") == "on_rejected_ca", "the rejection does not name the fallback: %s" % rej[-1:])
    code, p = refusing_curl(POLICY, OTHERCURL)
    check(code == 200, "on_rejected_ca: passthrough did not apply without a policy entry: %s" % code)
    lib_wait(lambda: [e for e in exceptions(POLICY) if exe_is(e, OTHERCURL)])
    ev = [e for e in exceptions(POLICY) if exe_is(e, OTHERCURL)]
    check(ev and ev[-1].get("rule") == "on_rejected_ca", "the fallback exception is not named: %s" % ev)


@test
def policy_reload_on_sighup_changes_the_choice():
    if not [e for e in rejections(POLICY) if exe_is(e, BLOCKCURL)]:
        check(refused(POLICY, BLOCKCURL), "blockcurl should be refused before the reload")
        lib_wait(lambda: [e for e in rejections(POLICY) if exe_is(e, BLOCKCURL)])
    write_policy("passthrough")
    n = len(POLICY.agent.events("policy_reload"))
    POLICY.agent.proc.send_signal(signal.SIGHUP)
    lib_wait(lambda: len(POLICY.agent.events("policy_reload")) > n, timeout=15)
    evs = POLICY.agent.events("policy_reload")
    check(len(evs) > n and evs[-1]["reason"] == "applied", "the policy reload was not applied: %s" % evs[-1:])
    code, p = refusing_curl(POLICY, BLOCKCURL)
    check(code == 200, "after the reload blockcurl's past refusal was not relayed: %s" % code)
    lib_wait(lambda: [e for e in exceptions(POLICY) if exe_is(e, BLOCKCURL)])
    ev = [e for e in exceptions(POLICY) if exe_is(e, BLOCKCURL)]
    check(ev and ev[-1].get("rule") == "keep-refusing", "the reloaded entry is not named: %s" % ev)


if __name__ == "__main__":
    lib.main()
