#!/usr/bin/env python3
"""End-to-end: `vigil ca trust|untrust` and the browsers' trust stores.

A staging root (--root, never this machine's /etc) with its own
/etc/passwd and homes of test users (uids 4242..4245, homes owned by them)
holding NSS databases made by certutil -N --empty-password, as Chromium
and Firefox make them. Checks: the CA lands in each user's databases with
trust C,, (certutil -L), a pre-existing certificate stays, databases the
user does not own are left alone, untrust removes exactly the nickname; an
NSS TLS client (tstclnt, the library Chromium and Firefox verify with)
using the user's database goes through the intercepting agent after trust
and is refused after untrust; Firefox's policies.json is written, merged
with other policies and restored; the login hook gives a new user the CA.
"""
import json
import os
import shutil
import subprocess

import lib
from lib import check, test
import rig as rigmod

GOOD = "127.51.0.3"
RIG = rigmod.Rig("cabrowser", {"api.openai.com": GOOD}, {"good": (GOOD, "good", 0)},
                 endpoints=["api.openai.com"])
AGENT, TMP = RIG.agent, RIG.tmp
AGENT.start()
VIGIL = os.path.join(lib.BUILD, "vigil")
NICK = "Vigil Interception CA (vigil ca trust)"
USERS = {"alice": 4242, "bob": 4243, "carol": 4244, "dave": 4245}
POLICY = "etc/firefox/policies/policies.json"


def vigil(*args):
    return subprocess.run([VIGIL, *args], capture_output=True, text=True, timeout=60)


def as_user(uid, argv, **kw):
    return subprocess.run(["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups", "--"] + argv,
                          capture_output=True, text=True, timeout=60, **kw)


def new_db(path, uid):
    os.makedirs(path, exist_ok=True)
    os.chown(path, uid, uid)
    p = as_user(uid, ["certutil", "-N", "-d", "sql:" + path, "--empty-password"])
    check(p.returncode == 0, "certutil -N %s: %s" % (path, p.stderr))


def listing(db):
    """nickname -> trust flags, as certutil -L prints them."""
    p = subprocess.run(["certutil", "-L", "-d", "sql:" + db], capture_output=True, text=True, timeout=30)
    check(p.returncode == 0, "certutil -L %s: %s" % (db, p.stderr))
    out = {}
    for line in p.stdout.splitlines()[4:]:
        name, _, flags = line.rstrip().rpartition(" ")
        if name.strip():
            out[name.strip()] = flags
    return out


def make_stage(name):
    stage = os.path.join(TMP, name)
    os.makedirs(os.path.join(stage, "etc"))
    os.chmod(stage, 0o755)
    with open(os.path.join(stage, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
        for u, uid in USERS.items():
            f.write("%s:x:%d:%d::/home/%s:/bin/sh\n" % (u, uid, uid, u))
    for u, uid in USERS.items():
        home = os.path.join(stage, "home", u)
        os.makedirs(home)
        os.chown(home, uid, uid)
    return stage


STAGE = make_stage("stage")
HOME = {u: os.path.join(STAGE, "home", u) for u in USERS}
CHROMIUM_DB = os.path.join(HOME["alice"], ".pki/nssdb")
FIREFOX_DB = os.path.join(HOME["alice"], ".mozilla/firefox/x1y2z3.default-esr")
OTHER_PEM = os.path.join(TMP, "other-ca.pem")


def setup_homes():
    for d in (os.path.join(HOME["alice"], ".pki"), os.path.join(HOME["alice"], ".mozilla"),
              os.path.join(HOME["alice"], ".mozilla/firefox")):
        os.makedirs(d, exist_ok=True)
        os.chown(d, USERS["alice"], USERS["alice"])
    new_db(CHROMIUM_DB, USERS["alice"])
    new_db(FIREFOX_DB, USERS["alice"])
    # A certificate the user had before: trust must leave it as it is.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", os.path.join(TMP, "other.key"), "-subj", "/CN=Other Corp CA", "-days", "2",
                    "-out", OTHER_PEM], check=True, capture_output=True)
    p = as_user(USERS["alice"], ["certutil", "-A", "-d", "sql:" + CHROMIUM_DB, "-n", "Other Corp CA",
                                 "-t", "CT,C,C", "-i", OTHER_PEM])
    check(p.returncode == 0, "adding the other cert: %s" % p.stderr)
    # bob's database lives in a home that is not his (an attacker's setup:
    # root must not write there on his behalf): left alone.
    bob_db = os.path.join(HOME["bob"], ".pki/nssdb")
    new_db(bob_db, USERS["bob"])
    os.chown(HOME["bob"], USERS["carol"], USERS["carol"])
    # carol's cert9.db is a symlink to another user's database: skipped.
    carol_pki = os.path.join(HOME["carol"], ".pki")
    os.makedirs(os.path.join(carol_pki, "nssdb"))
    for d in (carol_pki, os.path.join(carol_pki, "nssdb")):
        os.chown(d, USERS["carol"], USERS["carol"])
    os.symlink(os.path.join(CHROMIUM_DB, "cert9.db"), os.path.join(carol_pki, "nssdb/cert9.db"))


setup_homes()


def tstclnt(db, uid):
    """An NSS TLS client through the agent, trusting db (as Chromium does)."""
    # tstclnt keeps reading stdin after the answer: timeout ends it, the
    # output so far is what counts.
    return lib.run(["timeout", "5", "tstclnt", "-h", "api.openai.com", "-p", "443", "-d", "sql:" + db,
                    "-V", "tls1.2:tls1.3"],
                   cgroup=RIG.cg.path, hosts=RIG.hosts, uid=uid, timeout=30,
                   input="GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\nAuthorization: Bearer sk-test\r\n"
                         "Connection: close\r\n\r\n")


@test
def nss_client_refuses_before_trust():
    p = tstclnt(CHROMIUM_DB, USERS["alice"])
    check(p.returncode != 0 and "HTTP/1.1 200" not in p.stdout,
          "an NSS client without the CA completed a request through the agent: %s" % p.stdout[:300])
    evs = AGENT.wait_events(lambda e: e.get("reason") == "client_rejected_interception", kind="connection")
    check(evs and (evs[-1].get("exe") or "").endswith("tstclnt"),
          "the refusal is not audited as client_rejected_interception with the program: %s" % AGENT.events()[-3:])


@test
def nss_trust_adds_to_every_user_database():
    r = vigil("ca", "trust", "--dir", RIG.ca_dir, "--root", STAGE)
    check(r.returncode == 0, "trust rc=%d %s" % (r.returncode, r.stderr))
    for db in (CHROMIUM_DB, FIREFOX_DB):
        got = listing(db)
        check(got.get(NICK) == "C,,", "%s: the CA is not there with trust C,,: %s" % (db, got))
    check(listing(CHROMIUM_DB).get("Other Corp CA") == "CT,C,C", "the pre-existing cert changed: %s"
          % listing(CHROMIUM_DB))
    check(NICK not in listing(os.path.join(HOME["bob"], ".pki/nssdb")), "wrote into a home its user does not own")
    check(os.path.islink(os.path.join(HOME["carol"], ".pki/nssdb/cert9.db")), "carol's link was replaced")
    for dirpath, _, files in os.walk(HOME["alice"]):
        for n in files:
            st = os.lstat(os.path.join(dirpath, n))
            check(st.st_uid == USERS["alice"], "%s owned by uid %d, not the user" % (n, st.st_uid))
    with open(os.path.join(STAGE, "etc/vigil/ca-trust.manifest")) as f:
        manifest = f.read()
    for db in (CHROMIUM_DB, FIREFOX_DB):
        check("nssdb " + db[len(STAGE):] + "\n" in manifest, "manifest lacks %s: %s" % (db, manifest))
    check("/home/bob" not in manifest and "/home/carol" not in manifest,
          "a database its user does not own was touched: %s" % manifest)


@test
def nss_client_goes_through_after_trust():
    p = tstclnt(CHROMIUM_DB, USERS["alice"])
    check("HTTP/1.1 200" in p.stdout, "the NSS client with the user's database failed: rc=%d %s %s"
          % (p.returncode, p.stdout[:200], p.stderr[-300:]))
    evs = RIG.request_events(lambda e: e["path"] == "/v1/models" and (e["exe"] or "").endswith("tstclnt"))
    check(evs and evs[-1]["uid"] == USERS["alice"], "the request was not intercepted and audited: %s" % evs[-1:])


@test
def login_hook_gives_a_new_user_the_ca():
    hook = os.path.join(STAGE, "etc/profile.d/vigil-ca-nss.sh")
    home = HOME["dave"]
    # The hook names the installed anchor's real path: the user's login
    # shell sees the staged one there (private mount namespace).
    script = ('mount --bind "$1" /usr/local/share/ca-certificates && exec setpriv --reuid=%d --regid=%d '
              '--clear-groups -- env -i HOME="$2" PATH=/usr/bin:/bin sh -c ". \\"$3\\""'
              % (USERS["dave"], USERS["dave"]))
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                        os.path.join(STAGE, "usr/local/share/ca-certificates"), home, hook],
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "the hook failed: %s" % p.stderr)
    db = os.path.join(home, ".pki/nssdb")
    check(listing(db).get(NICK) == "C,,", "the new user's database lacks the CA: %s" % listing(db))
    check(os.stat(db).st_uid == USERS["dave"], "the hook's database is not the user's")


@test
def nss_untrust_removes_exactly_the_ca():
    r = vigil("ca", "untrust", "--root", STAGE)
    check(r.returncode == 0, "untrust rc=%d %s" % (r.returncode, r.stderr))
    for db in (CHROMIUM_DB, FIREFOX_DB, os.path.join(HOME["dave"], ".pki/nssdb")):
        check(NICK not in listing(db), "%s still has the CA" % db)
    check(listing(CHROMIUM_DB).get("Other Corp CA") == "CT,C,C", "untrust touched the other cert: %s"
          % listing(CHROMIUM_DB))
    p = tstclnt(CHROMIUM_DB, USERS["alice"])
    check("HTTP/1.1 200" not in p.stdout, "the NSS client still trusts the agent after untrust")


@test
def firefox_policy_written_and_removed():
    stage = make_stage("stage-ff1")
    r = vigil("ca", "trust", "--dir", RIG.ca_dir, "--root", stage)
    check(r.returncode == 0, "trust rc=%d %s" % (r.returncode, r.stderr))
    with open(os.path.join(stage, POLICY)) as f:
        doc = json.load(f)
    check(doc == {"policies": {"Certificates": {"Install": ["/usr/local/share/ca-certificates/vigil-intercept.crt"]}}},
          "policy %s" % doc)
    r = vigil("ca", "trust", "--dir", RIG.ca_dir, "--root", stage)  # twice: still one entry
    with open(os.path.join(stage, POLICY)) as f:
        check(json.load(f) == doc, "a second trust changed the policy")
    r = vigil("ca", "untrust", "--root", stage)
    check(r.returncode == 0, "untrust rc=%d %s" % (r.returncode, r.stderr))
    check(not os.path.exists(os.path.join(stage, "etc/firefox")), "the policy file or its directories remain")


@test
def firefox_policy_merged_with_existing_policies():
    stage = make_stage("stage-ff2")
    os.makedirs(os.path.join(stage, "etc/firefox/policies"))
    before = {"policies": {"DisableTelemetry": True, "Homepage": {"URL": "https://intranet.example/", "Locked": True},
                           "Certificates": {"ImportEnterpriseRoots": True, "Install": ["/etc/corp/root.pem"]},
                           "Preferences": {"n": 1.5, "s": "quote \" and \u00e9"}}}
    with open(os.path.join(stage, POLICY), "w") as f:
        json.dump(before, f, indent=2)
    r = vigil("ca", "trust", "--dir", RIG.ca_dir, "--root", stage)
    check(r.returncode == 0, "trust rc=%d %s" % (r.returncode, r.stderr))
    with open(os.path.join(stage, POLICY)) as f:
        doc = json.load(f)
    want = json.loads(json.dumps(before))
    want["policies"]["Certificates"]["Install"].append("/usr/local/share/ca-certificates/vigil-intercept.crt")
    check(doc == want, "merged policy %s" % doc)
    r = vigil("ca", "untrust", "--root", stage)
    check(r.returncode == 0, "untrust rc=%d %s" % (r.returncode, r.stderr))
    with open(os.path.join(stage, POLICY)) as f:
        check(json.load(f) == before, "the other policies were not kept as they were")


@test
def firefox_policy_unparsable_left_alone():
    stage = make_stage("stage-ff3")
    os.makedirs(os.path.join(stage, "etc/firefox/policies"))
    bad = '{"policies": {"DisableTelemetry": true,}}\n'  # trailing comma: Firefox refuses it too
    with open(os.path.join(stage, POLICY), "w") as f:
        f.write(bad)
    r = vigil("ca", "trust", "--dir", RIG.ca_dir, "--root", stage)
    check(r.returncode == 1 and "not valid JSON" in r.stderr, "rc=%d %s" % (r.returncode, r.stderr))
    with open(os.path.join(stage, POLICY)) as f:
        check(f.read() == bad, "an unparsable policy file was rewritten")
    check(os.path.exists(os.path.join(stage, "usr/local/share/ca-certificates/vigil-intercept.crt")),
          "the system store part was not installed")


if __name__ == "__main__":
    lib.main()
