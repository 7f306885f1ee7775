#!/usr/bin/env python3
"""End-to-end test of `vigil ca init|trust|untrust` against temporary
directories (never the real system store: trust/untrust run with --root).

Prints one "PASS name" / "FAIL name: why" line per check and exits non-zero
on any failure. Uses $BUILD/vigil (BUILD defaults to "build") and the
openssl command-line tool for independent verification."""
import os
import shutil
import stat
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VIGIL = os.path.join(ROOT, os.environ.get("BUILD", "build"), "vigil")
failed = 0


def result(name, ok, why=""):
    global failed
    if ok:
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name}: {why}")
    sys.stdout.flush()


def vigil(*args):
    return subprocess.run([VIGIL, *args], capture_output=True, text=True, timeout=60)


def openssl(*args, stdin=None):
    return subprocess.run(["openssl", *args], capture_output=True, text=True, input=stdin,
                          timeout=60)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def tree(root):
    out = []
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            out.append(os.path.relpath(os.path.join(d, n), root))
    return sorted(out)


def make_leaf(tmp, ca_crt, ca_key, host):
    """A leaf for host signed by ca (with the openssl CLI, independent of Vigil)."""
    key = os.path.join(tmp, f"{host}.key")
    csr = os.path.join(tmp, f"{host}.csr")
    crt = os.path.join(tmp, f"{host}.crt")
    ext = os.path.join(tmp, f"{host}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName=DNS:{host}\nextendedKeyUsage=serverAuth\n")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    openssl("req", "-new", "-key", key, "-subj", f"/CN={host}", "-out", csr)
    r = openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
                "-days", "1", "-extfile", ext, "-out", crt)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return crt


def main():
    if not os.access(VIGIL, os.X_OK):
        result("vigil_binary", False, f"{VIGIL} not built")
        return
    tmp = tempfile.mkdtemp(prefix="vigil-e2e-ca-")
    try:
        run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp):
    # --- help and usage errors ---
    r = vigil("--help")
    result("help_lists_ca", r.returncode == 0 and "ca" in r.stdout, f"rc={r.returncode} {r.stdout!r}")
    for sub in ("init", "trust", "untrust"):
        r = vigil("ca", sub, "--help")
        result(f"help_{sub}", r.returncode == 0 and "usage: vigil ca " + sub in r.stdout,
               f"rc={r.returncode}")
    r = vigil("nosuchcommand")
    result("unknown_command_exit_2", r.returncode == 2 and r.stderr, f"rc={r.returncode}")
    r = vigil("ca", "init", "--bogus")
    result("unknown_option_exit_2", r.returncode == 2, f"rc={r.returncode}")
    r = vigil("ca", "init", "--dir", os.path.join(tmp, "x"), "--parent-cert", "/dev/null")
    result("parent_cert_without_key_exit_2", r.returncode == 2, f"rc={r.returncode}")
    r = vigil("ca", "init", "--dir", os.path.join(tmp, "x"), "--days", "-3")
    result("bad_days_exit_2", r.returncode == 2, f"rc={r.returncode}")

    # --- init: self-signed root ---
    root_dir = os.path.join(tmp, "root")
    r = vigil("ca", "init", "--dir", root_dir, "--name", "E2E Root CA")
    result("init_root", r.returncode == 0, f"rc={r.returncode} {r.stderr}")
    crt, key = os.path.join(root_dir, "intercept.crt"), os.path.join(root_dir, "intercept.key")
    result("init_dir_0700", mode(root_dir) == 0o700, oct(mode(root_dir)))
    result("init_key_0600", mode(key) == 0o600, oct(mode(key)))
    text = openssl("x509", "-in", crt, "-noout", "-text").stdout
    result("root_is_ca_pathlen0", "CA:TRUE, pathlen:0" in text, "basicConstraints missing")
    result("root_key_usage", "Certificate Sign, CRL Sign" in text, "keyUsage missing")
    result("root_p256", "prime256v1" in text or "P-256" in text, "not P-256")
    result("root_subject", "E2E Root CA" in text, "--name not used")
    result("root_unconstrained", "Name Constraints" not in text, "unexpected nameConstraints")

    before = open(key).read()
    r = vigil("ca", "init", "--dir", root_dir)
    result("init_refuses_overwrite", r.returncode == 1 and "--force" in r.stderr
           and open(key).read() == before, f"rc={r.returncode} {r.stderr}")
    # --force replaces (a fresh root; the intermediate below uses it)
    r = vigil("ca", "init", "--dir", root_dir, "--name", "E2E Root CA", "--force")
    result("init_force_replaces", r.returncode == 0 and open(key).read() != before
           and mode(key) == 0o600, f"rc={r.returncode} {r.stderr}")

    # --- init: name-constrained intermediate ---
    # A vigil root has pathlen:0, so it cannot be a parent: refused.
    r = vigil("ca", "init", "--dir", os.path.join(tmp, "bad"), "--parent-cert", crt,
              "--parent-key", key)
    result("init_refuses_pathlen0_parent", r.returncode == 1 and "pathlen" in r.stderr,
           f"rc={r.returncode} {r.stderr}")
    # The parent is an "enterprise root" made with the openssl CLI.
    crt, key = os.path.join(tmp, "corp.crt"), os.path.join(tmp, "corp.key")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    r = openssl("req", "-x509", "-new", "-key", key, "-subj", "/O=Corp/CN=Corp Root", "-days", "30",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
                "keyUsage=critical,keyCertSign,cRLSign", "-out", crt)
    result("corp_root_made", r.returncode == 0, r.stderr)
    sub_dir = os.path.join(tmp, "sub")
    r = vigil("ca", "init", "--dir", sub_dir, "--parent-cert", crt, "--parent-key", key)
    result("init_intermediate", r.returncode == 0, f"rc={r.returncode} {r.stderr}")
    sub_crt = os.path.join(sub_dir, "intercept.crt")
    sub_key = os.path.join(sub_dir, "intercept.key")
    pem = open(sub_crt).read()
    result("intermediate_chain_file", pem.count("BEGIN CERTIFICATE") == 2,
           f"{pem.count('BEGIN CERTIFICATE')} certificates in intercept.crt")
    text = openssl("x509", "-in", sub_crt, "-noout", "-text").stdout
    result("intermediate_name_constraints",
           "Name Constraints: critical" in text and "DNS:api.openai.com" in text
           and "DNS:api.anthropic.com" in text, "nameConstraints missing")
    v = openssl("verify", "-CAfile", crt, sub_crt)
    result("intermediate_verifies", v.returncode == 0, v.stdout + v.stderr)

    good = make_leaf(tmp, sub_crt, sub_key, "api.openai.com")
    evil = make_leaf(tmp, sub_crt, sub_key, "evil.com")
    v = openssl("verify", "-CAfile", crt, "-untrusted", sub_crt, good)
    result("constrained_accepts_openai", v.returncode == 0, v.stdout + v.stderr)
    v = openssl("verify", "-CAfile", crt, "-untrusted", sub_crt, evil)
    result("constrained_refuses_evil", v.returncode != 0 and "permitted subtree violation" in (v.stdout + v.stderr),
           v.stdout + v.stderr)

    # --- trust / untrust under a staging root ---
    stage = os.path.join(tmp, "stage")
    os.makedirs(os.path.join(stage, "etc"))
    with open(os.path.join(stage, "etc", "keep.conf"), "w") as f:
        f.write("not ours\n")
    before_tree = tree(stage)
    r = vigil("ca", "trust", "--dir", sub_dir, "--root", stage)
    result("trust_ok", r.returncode == 0, f"rc={r.returncode} {r.stderr}")
    result("trust_reports_skip", "skipped update-ca-certificates" in r.stdout, r.stdout)
    inst = os.path.join(stage, "usr/local/share/ca-certificates/vigil-intercept.crt")
    ok = os.path.exists(inst)
    result("trust_installs_cert", ok, "certificate not installed")
    if ok:
        # the installed anchor is the top of the chain: the parent root
        fp = lambda p: openssl("x509", "-in", p, "-noout", "-fingerprint", "-sha256").stdout
        result("trust_installs_anchor", fp(inst) == fp(crt), "installed cert is not the root")
    env_sh = os.path.join(stage, "etc/vigil/ca-env.sh")
    env_d = os.path.join(stage, "etc/environment.d/90-vigil.conf")
    body = open(env_sh).read() if os.path.exists(env_sh) else ""
    result("trust_env_sh",
           "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in body
           and "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt" in body
           and "NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/vigil-intercept.crt" in body,
           repr(body))
    body = open(env_d).read() if os.path.exists(env_d) else ""
    result("trust_environment_d", "NODE_EXTRA_CA_CERTS=" in body and "export" not in body,
           repr(body))
    sh = subprocess.run(["sh", "-c", f". {env_sh} && echo $NODE_EXTRA_CA_CERTS"],
                        capture_output=True, text=True)
    result("trust_env_sh_sources",
           sh.stdout.strip() == "/usr/local/share/ca-certificates/vigil-intercept.crt", sh.stdout)

    r = vigil("ca", "trust", "--dir", sub_dir, "--root", stage)
    result("trust_twice_ok", r.returncode == 0, f"rc={r.returncode} {r.stderr}")
    r = vigil("ca", "untrust", "--root", stage)
    result("untrust_ok", r.returncode == 0, f"rc={r.returncode} {r.stderr}")
    result("untrust_restores_tree", tree(stage) == before_tree,
           f"left behind: {sorted(set(tree(stage)) - set(before_tree))}, "
           f"removed: {sorted(set(before_tree) - set(tree(stage)))}")
    r = vigil("ca", "untrust", "--root", stage)
    result("untrust_idempotent", r.returncode == 0, f"rc={r.returncode} {r.stderr}")
    r = vigil("ca", "trust", "--dir", os.path.join(tmp, "nothing"), "--root", stage)
    result("trust_missing_ca_fails", r.returncode == 1 and "intercept.crt" in r.stderr,
           f"rc={r.returncode} {r.stderr}")


if __name__ == "__main__":
    main()
    sys.exit(1 if failed else 0)
