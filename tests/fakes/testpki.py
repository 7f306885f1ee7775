#!/usr/bin/env python3
"""Test PKI for Vigil's end-to-end tests: a stand-in for the public web.

Owns: a throw-away "public web" root CA (upstream-ca.crt/.key, what the
system store's roots are in production) and server certificates for the fake
provider, each with exactly one property under test:
  good.crt/.key        signed by the CA, SANs for every provider host we fake
  expired.crt/.key     same SANs, signed by the CA, validity entirely past
  wronghost.crt/.key   signed by the CA, SAN only wrong.example
  selfsigned.crt/.key  same SANs as good, but issued by itself
Must never: touch the real system trust store, or be used outside tests (the
CA key sits unencrypted in DIR).

Usage: tests/fakes/testpki.py DIR   (prints the JSON map of paths)
Module: make_pki(dir) -> dict of name -> path. Idempotent: an existing,
complete and still valid set is reused as is; anything else is rebuilt whole.
Only the openssl CLI is used (OpenSSL 3.0 has no `x509 -not_after`, so the
expired certificate goes through `openssl ca` with -startdate/-enddate).
"""
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile

# Bump when the set of names or files changes so old directories are rebuilt.
PKI_VERSION = 4

PROVIDER_DNS = [
    "api.openai.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
    "*.openai.azure.com",
    "bedrock-runtime.us-east-1.amazonaws.com",
    "api.mistral.ai",
    "localhost",
    "mcp.example.com",
    # the chat web apps' fakes (tests/fakes/fake_webapp.py) and a site that is not one
    "chatgpt.com",
    "claude.ai",
    "files.oaiusercontent.com",
    "unwatched.example",
]
PROVIDER_IPS = ["127.0.0.1", "::1"]
WRONG_DNS = ["wrong.example"]

FILES = ["upstream-ca.crt", "upstream-ca.key", "good.crt", "good.key",
         "expired.crt", "expired.key", "wronghost.crt", "wronghost.key",
         "selfsigned.crt", "selfsigned.key"]


def _openssl(*args, cwd=None):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (args[0], r.stderr.strip()))
    return r.stdout


def _san(dns, ips):
    return ",".join(["DNS:" + d for d in dns] + ["IP:" + i for i in ips])


LEAF_EXT = """[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = {san}
"""

CA_EXT = """[req]
distinguished_name = dn
prompt = no
[dn]
CN = Vigil Test Public Web Root CA
O = Vigil tests
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

# `openssl ca` needs a database; the policy copies the CSR subject as is.
CA_CONF = """[ca]
default_ca = testca
[testca]
dir = {dir}
database = {dir}/index.txt
serial = {dir}/serial
new_certs_dir = {dir}
certificate = {cacert}
private_key = {cakey}
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[anything]
commonName = supplied
organizationName = optional
"""


def _key(path):
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", path)
    os.chmod(path, 0o600)


def _csr(key, cn, out):
    _openssl("req", "-new", "-key", key, "-subj", "/CN=%s/O=Vigil tests" % cn,
             "-out", out)


def _sign(tmp, csr, ext_text, out, cacert, cakey, days=825):
    ext = os.path.join(tmp, os.path.basename(out) + ".ext")
    with open(ext, "w") as f:
        f.write(ext_text)
    _openssl("x509", "-req", "-in", csr, "-CA", cacert, "-CAkey", cakey,
             "-CAcreateserial", "-CAserial", os.path.join(tmp, "ca.srl"),
             "-days", str(days), "-sha256", "-extfile", ext, "-extensions", "leaf",
             "-out", out)


def _build(d):
    tmp = tempfile.mkdtemp(prefix=".pki-", dir=d)
    try:
        p = lambda n: os.path.join(tmp, n)  # noqa: E731
        san = _san(PROVIDER_DNS, PROVIDER_IPS)
        # Root CA.
        with open(p("ca.cnf"), "w") as f:
            f.write(CA_EXT)
        _key(p("upstream-ca.key"))
        _openssl("req", "-x509", "-new", "-key", p("upstream-ca.key"), "-config",
                 p("ca.cnf"), "-extensions", "ca", "-days", "3650", "-sha256",
                 "-out", p("upstream-ca.crt"))
        cacert, cakey = p("upstream-ca.crt"), p("upstream-ca.key")
        # good and wronghost: plain x509 -req.
        for name, cn, s in (("good", "api.openai.com", san),
                            ("wronghost", "wrong.example", _san(WRONG_DNS, []))):
            _key(p(name + ".key"))
            _csr(p(name + ".key"), cn, p(name + ".csr"))
            _sign(tmp, p(name + ".csr"), LEAF_EXT.format(san=s), p(name + ".crt"),
                  cacert, cakey)
        # expired: `openssl ca` lets us set both dates in the past.
        _key(p("expired.key"))
        _csr(p("expired.key"), "api.openai.com", p("expired.csr"))
        with open(p("index.txt"), "w"):
            pass
        with open(p("serial"), "w") as f:
            f.write("1000\n")
        with open(p("ca-db.cnf"), "w") as f:
            f.write(CA_CONF.format(dir=tmp, cacert=cacert, cakey=cakey) +
                    LEAF_EXT.format(san=san))
        _openssl("ca", "-batch", "-notext", "-config", p("ca-db.cnf"),
                 "-extensions", "leaf", "-startdate", "20200101000000Z",
                 "-enddate", "20200201000000Z", "-in", p("expired.csr"),
                 "-out", p("expired.crt"))
        # selfsigned: same names as good, issuer = itself.
        _key(p("selfsigned.key"))
        with open(p("ss.cnf"), "w") as f:
            f.write("[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n"
                    "CN = api.openai.com\nO = Vigil tests self-signed\n" +
                    LEAF_EXT.format(san=san).replace(
                        "authorityKeyIdentifier = keyid:always\n", ""))
        _openssl("req", "-x509", "-new", "-key", p("selfsigned.key"), "-config",
                 p("ss.cnf"), "-extensions", "leaf", "-days", "825", "-sha256",
                 "-out", p("selfsigned.crt"))
        for n in FILES:
            os.replace(p(n), os.path.join(d, n))
        with open(os.path.join(d, "pki.json"), "w") as f:
            json.dump({"version": PKI_VERSION}, f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _still_valid(d):
    try:
        with open(os.path.join(d, "pki.json")) as f:
            if json.load(f).get("version") != PKI_VERSION:
                return False
    except (OSError, ValueError):
        return False
    if not all(os.path.isfile(os.path.join(d, n)) for n in FILES):
        return False
    ca = os.path.join(d, "upstream-ca.crt")
    for n in ("upstream-ca.crt", "good.crt", "wronghost.crt"):
        # Still valid for at least a day, so a test never races expiry.
        r = subprocess.run(["openssl", "x509", "-noout", "-checkend", "86400", "-in",
                            os.path.join(d, n)], capture_output=True)
        if r.returncode != 0:
            return False
    r = subprocess.run(["openssl", "verify", "-CAfile", ca, os.path.join(d, "good.crt")],
                       capture_output=True)
    return r.returncode == 0


def make_pki(d):
    """Create (or reuse) the test PKI in directory d; return name -> path."""
    d = os.path.abspath(d)
    os.makedirs(d, exist_ok=True)
    # Parallel tests may share a directory: one builds, the others wait.
    with open(os.path.join(d, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _still_valid(d):
            _build(d)
    paths = {"dir": d, "ca_cert": os.path.join(d, "upstream-ca.crt"),
             "ca_key": os.path.join(d, "upstream-ca.key")}
    for n in ("good", "expired", "wronghost", "selfsigned"):
        paths[n + "_cert"] = os.path.join(d, n + ".crt")
        paths[n + "_key"] = os.path.join(d, n + ".key")
    return paths


def main(argv):
    if len(argv) != 2 or argv[1].startswith("-"):
        sys.stderr.write("usage: testpki.py DIR\n")
        return 2
    try:
        print(json.dumps(make_pki(argv[1]), indent=1))
    except RuntimeError as e:
        sys.stderr.write("testpki: %s\n" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
