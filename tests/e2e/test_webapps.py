#!/usr/bin/env python3
"""End-to-end: the chat web apps in real browsers.

Debian's chromium, headless, driven by the pinned puppeteer-core, runs as
an ordinary user (nobody, with a HOME of its own whose NSS database trusts
the interception CA as `vigil ca trust` installs it) inside the watched
cgroup, through the real BPF redirect and agent. chatgpt.com, claude.ai,
files.oaiusercontent.com and unwatched.example resolve to a fake (tests/
fakes/fake_webapp.py): pages that post the typed prompt as the real apps
do and render the streamed answer; the backend records what it received.
The agent's config lists only api.openai.com: the web apps are watched
by its built-in catalog. Checks: an e-mail typed into ChatGPT and Claude
reaches the backend tokenized and the page shows it restored; a key is
blocked and the page shows the policy message as the answer (not a broken
page); a secret in an uploaded file (gzipped, multipart, or PUT raw) is
blocked before the upload host sees it; another site on the same address
passes byte for byte, undecrypted; events name the app and the
conversation; page load time with and without the agent (median).
Debian's firefox-esr, driven by the same puppeteer-core over WebDriver
BiDi, as nobody with a profile whose cert9.db trusts the CA as `vigil ca
trust` puts it into existing Firefox profiles: the e-mail round trip and the
block, events naming firefox-esr; the same profile without that CA refuses
the interception, audited as client_rejected_interception naming firefox.
"""
import base64
import gzip
import hashlib
import json
import os
import statistics
import subprocess

import lib
from lib import check, test
import rig as rigmod

ADDR = "127.85.0.2"
HOSTS = {"chatgpt.com": ADDR, "claude.ai": ADDR, "files.oaiusercontent.com": ADDR, "unwatched.example": ADDR}
POLICY = """version: 1
default: allow
redaction:
  EMAIL: tokenize
rules:
  - name: no-keys
    when: { finding: [AWS_ACCESS_KEY, OPENAI_API_KEY, GITHUB_TOKEN, PRIVATE_KEY] }
    action: block
    message: credentials must not be pasted into chat apps
  - name: ask-before-cards
    when: { provider: [claude_web], finding: [CREDIT_CARD] }
    action: warn
    message: card numbers need a reason
  - name: pii
    when: { finding: [EMAIL] }
    action: redact
"""
RIG = rigmod.Rig("webapps", HOSTS, {}, endpoints=["api.openai.com"], extra_targets=(ADDR,),
                 agent_extra="unwatched_sni: passthrough\n")
TMP = RIG.tmp
RIG.hosts_map = HOSTS
with open(RIG.agent.config, "a") as f:
    f.write("justify_socket: %s\n" % os.path.join(TMP, "justify.sock"))
POLICY_PATH = os.path.join(TMP, "policy.yaml")
with open(POLICY_PATH, "w") as f:
    f.write(POLICY)
with open(RIG.agent.config, "a") as f:
    f.write("policy: %s\n" % POLICY_PATH)
RIG.agent.start()

RECORD = os.path.join(TMP, "fake-webapp.jsonl")


def start_fake(addr, record, rig):
    p = lib.spawn([rigmod.PY, os.path.join(lib.ROOT, "tests/fakes/fake_webapp.py"), "--listen", addr + ":443",
                   "--cert", rig.pki["good_cert"], "--key", rig.pki["good_key"], "--record", record],
                  stdout=subprocess.PIPE, text=True)
    check("fake-webapp ready" in p.stdout.readline(), "fake web app did not start")


start_fake(ADDR, RECORD, RIG)

# nobody's HOME, with the NSS database Chromium reads (~/.pki/nssdb)
HOME = os.path.join(TMP, "home")
NSSDB = os.path.join(HOME, ".pki", "nssdb")
os.makedirs(NSSDB)
for d in (HOME, os.path.dirname(NSSDB), NSSDB):
    os.chown(d, lib.NOBODY, lib.NOBODY)


def as_nobody(argv):
    p = lib.run(argv, uid=lib.NOBODY, env={"HOME": HOME}, timeout=60)
    check(p.returncode == 0, "%s: %s" % (argv[:2], p.stderr[-400:]))


def nss_db(path, vigil_ca=True):
    """A fresh NSS database owned by nobody trusting the test PKI's root (the
    sites nobody intercepts: the unwatched one, and the run without agent)
    and, with vigil_ca, the interception CA added as `vigil ca trust` adds
    it (collector/cli/ca_browser.c: its nickname, trust "C,,")."""
    os.makedirs(path, exist_ok=True)
    os.chown(path, lib.NOBODY, lib.NOBODY)
    as_nobody(["certutil", "-N", "-d", "sql:" + path, "--empty-password"])
    if vigil_ca:
        as_nobody(["certutil", "-A", "-d", "sql:" + path, "-n", "Vigil Interception CA (vigil ca trust)",
                   "-t", "C,,", "-i", RIG.ca])
    as_nobody(["certutil", "-A", "-d", "sql:" + path, "-n", "test public web", "-t", "C,,", "-i", RIG.pki["ca_cert"]])


nss_db(NSSDB)
# Firefox profiles where `vigil ca trust` finds them (~/.mozilla/firefox/*):
# one it has run over, one it has not (the negative control)
FX_TRUSTED = os.path.join(HOME, ".mozilla", "firefox", "trusted.default")
FX_UNTRUSTED = os.path.join(HOME, ".mozilla", "firefox", "untrusted.default")
for d in (os.path.join(HOME, ".mozilla"), os.path.dirname(FX_TRUSTED)):
    os.makedirs(d)
    os.chown(d, lib.NOBODY, lib.NOBODY)
nss_db(FX_TRUSTED)
nss_db(FX_UNTRUSTED, vigil_ca=False)

CLIENT = os.path.join(rigmod.CLIENTS, "webapp_browser.mjs")
_n = [0]


def browser(steps, watched=True, rig=None, firefox=None, overlays=()):
    """Runs the steps in one chromium, or in firefox-esr with the profile
    firefox (overlays: see lib.wrap); returns its results."""
    rig = rig or RIG
    _n[0] += 1
    path = os.path.join(TMP, "steps-%d.json" % _n[0])
    with open(path, "w") as f:
        json.dump(steps, f)
    os.chmod(path, 0o644)
    hosts = rig.hosts_map
    env = {"HOME": HOME, "VIGIL_RESOLVER_RULES": ", ".join("MAP %s %s" % (h, a) for h, a in hosts.items())}
    if os.environ.get("VIGIL_CHROMIUM_NO_SANDBOX"):
        env["VIGIL_NO_SANDBOX"] = "1"
    if firefox:
        env.update(VIGIL_BROWSER="firefox", VIGIL_FIREFOX_PROFILE=firefox)
    p = lib.run(["node", CLIENT, path], cgroup=rig.cg.path if watched else None, uid=lib.NOBODY,
                hosts=rig.hosts, env=env, timeout=180, overlays=overlays)
    lines = p.stdout.strip().splitlines()
    check(p.returncode == 0 and lines, "browser failed (%d): %s" % (p.returncode, p.stderr[-800:]))
    res = json.loads(lines[-1])
    for i, r in enumerate(res):
        check("error" not in r, "browser step %d (%s) failed: %s (all: %s)" % (i, steps[i]["type"], r.get("error"),
                                                                            json.dumps(res)[:600]))
    return res


def received(pred):
    return [r for r in RIG.read_jsonl(RECORD) if pred(r)]


EMAIL = "dana.whitfield@corp-mail.example"
AWS_KEY = "AKIA" + "QWERTYUIOPASDFGH"
SECRET_LINE = "aws_access_key_id = %s\naws_secret_access_key = %s\n" % (AWS_KEY, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")


def chat_roundtrip(app, url, path_part, **browser_kw):
    before = len(received(lambda r: path_part in r["path"]))
    prompt = "please write to %s about the launch" % EMAIL
    (res,) = browser([{"type": "chat", "url": url, "prompt": prompt}], **browser_kw)
    got = received(lambda r: path_part in r["path"])
    check(len(got) == before + 1, "%s backend got %d new prompts" % (app, len(got) - before))
    body = got[-1]["body"]
    check(EMAIL not in body, "%s backend received the e-mail in clear" % app)
    check("[[VGL_EMAIL_" in body, "%s backend did not receive a token: %s" % (app, body[:300]))
    check(res["status"] == 200 and res["answer"] == "You wrote: " + prompt,
          "%s page shows %r, want the e-mail restored" % (app, res))
    evs = RIG.request_events(lambda e: e.get("app") == app and path_part in (e.get("path") or ""))
    check(evs and evs[-1]["action"] == "redact" and evs[-1]["provider"] == app + "_web",
          "%s event: %s" % (app, evs[-1:] if evs else "none"))
    return evs[-1]


@test
def chatgpt_email_is_tokenized_and_restored_in_the_page():
    ev = chat_roundtrip("chatgpt", "https://chatgpt.com/", "/backend-api/conversation")
    check(ev.get("conversation") == "67530e1a-1b2c-800d-9e0f-112233445566" and ev.get("model") == "gpt-4o",
          "event conversation/model: %s %s" % (ev.get("conversation"), ev.get("model")))
    check(EMAIL not in json.dumps(ev), "the e-mail is in the event")
    check(ev.get("exe", "").endswith("chromium") or "chrom" in ev.get("comm", ""),
          "the browser program is not named: %s %s" % (ev.get("exe"), ev.get("comm")))


@test
def chatgpt_new_chat_is_named_by_the_answer():
    (res,) = browser([{"type": "chat", "url": "https://chatgpt.com/?new=1", "prompt": "hello there"}])
    check(res["answer"] == "You wrote: hello there", "page shows %r" % res)
    evs = RIG.request_events(lambda e: e.get("app") == "chatgpt" and e.get("action") == "allow" and
                             "/backend-api/conversation" in (e.get("path") or ""))
    check(evs and evs[-1].get("conversation") == "6753f00d-0000-800d-9e0f-00000000beef",
          "a new chat's event: %s" % (evs[-1:] or "none"))


@test
def claude_email_is_tokenized_and_restored_in_the_page():
    ev = chat_roundtrip("claude", "https://claude.ai/", "/completion")
    check(ev.get("conversation") == "9a8b7c6d-1111-2222-3333-445566778899" and
          ev.get("model") == "claude-sonnet-4-20250514", "event: %s" % ev)


def blocked_in_page(app, url, path_part, firefox=None):
    before = len(received(lambda r: path_part in r["path"]))
    (res,) = browser([{"type": "chat", "url": url, "prompt": "deploy with key %s now" % AWS_KEY}], firefox=firefox)
    check(len(received(lambda r: path_part in r["path"])) == before, "%s backend received the key" % app)
    check(res["status"] == 200 and "credentials must not be pasted into chat apps" in res["answer"] and
          "Something went wrong" not in res["answer"], "%s page shows %r, not the policy message" % (app, res))
    evs = RIG.request_events(lambda e: e.get("app") == app and e.get("action") == "block")
    check(evs and evs[-1]["rule"] == "no-keys" and evs[-1]["status"] == 403,
          "%s block event: %s" % (app, evs[-1:] if evs else "none"))
    return evs[-1]


@test
def chatgpt_key_is_blocked_and_the_page_says_why():
    blocked_in_page("chatgpt", "https://chatgpt.com/", "/backend-api/conversation")


@test
def claude_key_is_blocked_and_the_page_says_why():
    blocked_in_page("claude", "https://claude.ai/", "/completion")


@test
def warn_rule_is_shown_in_the_page_with_the_way_on():
    before = len(received(lambda r: "/completion" in r["path"]))
    (res,) = browser([{"type": "chat", "url": "https://claude.ai/", "prompt": "charge 4111 1111 1111 1111 please"}])
    check(len(received(lambda r: "/completion" in r["path"])) == before, "the warned prompt reached the backend")
    check(res["status"] == 200 and "card numbers need a reason" in res["answer"] and "vigil justify" in res["answer"],
          "page shows %r" % res)
    evs = RIG.request_events(lambda e: e.get("app") == "claude" and e.get("action") == "warn")
    check(evs and evs[-1]["rule"] == "ask-before-cards", "warn event: %s" % evs[-1:])


@test
def secret_in_uploaded_files_is_blocked():
    gz = gzip.compress(SECRET_LINE.encode())
    before = len(received(lambda r: "upload" in r["path"] or r["path"].startswith("/file-")))
    res = browser([
        # Claude: multipart to /api/<org>/upload, the file gzipped
        {"type": "upload", "url": "https://claude.ai/", "name": "creds.gz", "mime": "application/gzip",
         "b64": base64.b64encode(gz).decode()},
        # Claude: multipart, plain text
        {"type": "upload", "url": "https://claude.ai/", "name": "creds.txt", "mime": "text/plain",
         "b64": base64.b64encode(SECRET_LINE.encode()).decode()},
        # ChatGPT: the raw file PUT to files.oaiusercontent.com
        {"type": "upload", "url": "https://chatgpt.com/", "name": "creds.txt", "mime": "text/plain",
         "b64": base64.b64encode(SECRET_LINE.encode()).decode()},
        # and a harmless file goes through
        {"type": "upload", "url": "https://claude.ai/", "name": "notes.txt", "mime": "text/plain",
         "b64": base64.b64encode(b"meeting notes, nothing secret\n").decode()},
    ])
    check([r["status"] for r in res] == [403, 403, 403, 200], "upload statuses %s" % [r["status"] for r in res])
    check("credentials must not be pasted" in res[0]["body"], "the app's error does not say why: %s" % res[0]["body"])
    got = received(lambda r: "upload" in r["path"] or r["path"].startswith("/file-"))[before:]
    check(len(got) == 1 and "meeting notes" in got[0]["body"], "upload host received %s" % [g["path"] for g in got])
    evs = RIG.request_events(lambda e: e.get("action") == "block" and "upload" in (e.get("path") or ""), n=2)
    check(len(evs) >= 2 and all(e.get("app") == "claude" for e in evs), "upload events %s" % evs)


@test
def unwatched_site_passes_byte_for_byte():
    (res,) = browser([{"type": "fetch", "page": "https://unwatched.example/", "url": "https://unwatched.example/blob"}])
    want = hashlib.sha256(hashlib.sha256(b"vigil").digest() * 2048).hexdigest()
    check(res["status"] == 200 and res["sha256"] == want, "unwatched blob: %s" % res)
    check(not RIG.request_events(lambda e: e.get("sni") == "unwatched.example", timeout=1),
          "the unwatched site was decrypted")
    conns = RIG.agent.wait_events(lambda e: e.get("sni") == "unwatched.example", kind="connection")
    check(conns, "the passthrough connection was not audited")


@test
def other_sites_on_an_app_only_address_are_not_decrypted():
    """An agent with the default unwatched_sni (intercept) whose only way to
    the app's address is the app's own name (the first-flight guard learns
    it; no static address): another site on that address (a CDN neighbour)
    is relayed undecrypted, while the app itself is intercepted."""
    addr = "127.85.0.3"
    hosts = {"chatgpt.com": addr, "unwatched.example": addr}
    rig2 = rigmod.Rig("webapps2", hosts, {}, endpoints=["api.openai.com"], extra_targets=("127.85.0.99",))
    rig2.hosts_map = hosts
    as_nobody(["certutil", "-A", "-d", "sql:" + NSSDB, "-n", "Vigil Interception CA 2", "-t", "C,,", "-i", rig2.ca])
    as_nobody(["certutil", "-A", "-d", "sql:" + NSSDB, "-n", "test public web 2", "-t", "C,,", "-i",
               rig2.pki["ca_cert"]])
    rig2.agent.start()
    record = os.path.join(rig2.tmp, "fake.jsonl")
    start_fake(addr, record, rig2)
    res = browser([{"type": "visit", "url": "https://chatgpt.com/", "tolerate": True},
                   {"type": "visit", "url": "https://chatgpt.com/", "tolerate": True},
                   {"type": "chat", "url": "https://chatgpt.com/", "prompt": "write to %s" % EMAIL},
                   {"type": "fetch", "page": "https://unwatched.example/", "url": "https://unwatched.example/blob"}],
                  rig=rig2)
    got = rig2.read_jsonl(record)
    check(got and "[[VGL_" not in got[-1]["body"] and "[EMAIL" in got[-1]["body"] and EMAIL not in got[-1]["body"],
          "the app was not intercepted once its address was learned: %s" % (got[-1:] or "nothing received"))
    want = hashlib.sha256(hashlib.sha256(b"vigil").digest() * 2048).hexdigest()
    check(res[3].get("sha256") == want, "unwatched blob: %s" % res[3])
    check(not [e for e in rig2.agent.events("request") if e.get("sni") == "unwatched.example"],
          "the CDN neighbour was decrypted")
    check(rig2.agent.wait_events(lambda e: e.get("sni") == "unwatched.example", kind="connection"),
          "the relayed connection was not audited")


FIREFOX_EXE = "/usr/lib/firefox-esr/firefox-esr"


def named_firefox(ev):
    check(ev.get("exe") == FIREFOX_EXE, "the event names %s (%s), not Firefox" % (ev.get("exe"), ev.get("comm")))


@test
def firefox_chatgpt_email_is_tokenized_and_restored_in_the_page():
    ev = chat_roundtrip("chatgpt", "https://chatgpt.com/", "/backend-api/conversation", firefox=FX_TRUSTED)
    check(ev.get("conversation") == "67530e1a-1b2c-800d-9e0f-112233445566", "event conversation: %s" % ev)
    check(EMAIL not in json.dumps(ev), "the e-mail is in the event")
    named_firefox(ev)


@test
def firefox_chatgpt_key_is_blocked_and_the_page_says_why():
    named_firefox(blocked_in_page("chatgpt", "https://chatgpt.com/", "/backend-api/conversation", firefox=FX_TRUSTED))


@test
def firefox_trusts_the_ca_through_the_installed_policy_file():
    """`vigil ca trust` over a staged root writes Firefox's enterprise policy
    (Certificates.Install) and the CA file it names; laid over /etc and
    /usr/local/share/ca-certificates in the browser's own mount namespace
    (this machine's stay untouched), a fresh profile whose cert9.db lacks
    the CA (as a user's first run after the install) loads the app."""
    stage = os.path.join(TMP, "stage")
    os.makedirs(os.path.join(stage, "etc"))
    os.chmod(stage, 0o755)
    with open(os.path.join(stage, "etc/passwd"), "w") as f:  # no people: only what is installed system-wide
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    r = subprocess.run([os.path.join(lib.BUILD, "vigil"), "ca", "trust", "--dir", RIG.ca_dir, "--root", stage],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "vigil ca trust --root: %s" % r.stderr[-400:])
    os.unlink(os.path.join(stage, "etc/passwd"))  # the overlay shows only what vigil installed
    with open(os.path.join(stage, "etc/firefox/policies/policies.json")) as f:
        installed = json.load(f)["policies"]["Certificates"]["Install"]
    profile = os.path.join(os.path.dirname(FX_TRUSTED), "policy.default")
    nss_db(profile, vigil_ca=False)
    ev = chat_roundtrip("chatgpt", "https://chatgpt.com/", "/backend-api/conversation", firefox=profile,
                        overlays=[("/etc", os.path.join(stage, "etc")),
                                  (os.path.dirname(installed[0]), stage + os.path.dirname(installed[0]))])
    named_firefox(ev)


@test
def firefox_profile_without_the_ca_refuses_the_interception():
    """The negative control: the same profile set-up without the CA `vigil
    ca trust` adds does not load the app (so the runs above owe their
    success to that CA), and the agent audits the refusal with the program."""
    before = len(received(lambda r: True))
    (res,) = browser([{"type": "visit", "url": "https://chatgpt.com/", "tolerate": True}], firefox=FX_UNTRUSTED)
    # refused for the issuer (not for a name or a network failure)
    check("SEC_ERROR_UNKNOWN_ISSUER" in res.get("failed", ""), "Firefox without the CA: %s" % res)
    check(len(received(lambda r: True)) == before, "the backend was reached without the CA")
    evs = RIG.agent.wait_events(lambda e: e.get("reason") == "client_rejected_interception" and
                                e.get("sni") == "chatgpt.com" and e.get("exe") == FIREFOX_EXE, kind="connection")
    check(evs, "the refusal is not audited naming firefox: %s" %
          [e for e in RIG.agent.events("connection") if e.get("reason")][-3:])


@test
def page_load_time_with_and_without_agent():
    n = 15 if not lib.SAN else 3
    steps = [{"type": "load", "url": "https://chatgpt.com/", "n": n}]
    direct = browser(steps, watched=False)[0]["times"]
    via = browser(steps, watched=True)[0]["times"]
    md, mv = statistics.median(direct), statistics.median(via)
    print("page load of the fake chat app (HTML + 100 KB script + CSS, fresh browser context each, after a "
          "warm-up; median of %d): direct %.1f ms (min %.1f), through the agent %.1f ms (min %.1f), %+.1f ms"
          % (n, md, min(direct), mv, min(via), mv - md), flush=True)
    check(mv < md + 1500, "page load through the agent %.0f ms vs %.0f direct" % (mv, md))


if __name__ == "__main__":
    lib.main()
