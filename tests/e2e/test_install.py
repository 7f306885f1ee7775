"""make install: binaries, example configs that never overwrite an admin's
files, and systemd units with the hardening the security team expects;
systemd itself must accept the units."""
import os
import shutil
import subprocess
import tempfile

import lib
from lib import check, test

TMP = tempfile.mkdtemp(prefix="vigil-e2e-install-")
lib.at_cleanup(lambda: shutil.rmtree(TMP, ignore_errors=True))
DEST = os.path.join(TMP, "root")


def install():
    p = subprocess.run(["bash", os.path.join(lib.ROOT, "scripts", "install.sh"), DEST, "/usr/local"],
                       capture_output=True, text=True, env=dict(os.environ, BUILD=lib.BUILD))
    check(p.returncode == 0, "install.sh failed: %s" % p.stderr)


@test
def installs_binaries_configs_and_units():
    install()
    for path, mode in (("usr/local/sbin/vigil-agent", 0o755), ("usr/local/bin/vigil", 0o755),
                       ("usr/local/bin/vigil-collector", 0o755), ("etc/vigil/agent.yaml", 0o644),
                       ("etc/vigil/ca", 0o700), ("lib/systemd/system/vigil-agent.service", 0o644),
                       ("lib/systemd/system/vigil-collector.service", 0o644)):
        full = os.path.join(DEST, path)
        check(os.path.exists(full), "%s not installed" % path)
        check(os.stat(full).st_mode & 0o777 == mode, "%s mode %o, want %o" % (path, os.stat(full).st_mode & 0o777, mode))
    # Check the example as installed, its paths pointed into the staged root.
    staged = os.path.join(TMP, "agent.yaml")
    with open(os.path.join(DEST, "etc/vigil/agent.yaml")) as f:
        text = f.read().replace("/etc/vigil/", os.path.join(DEST, "etc/vigil/") + "/")
    with open(staged, "w") as f:
        f.write(text)
    p = subprocess.run([os.path.join(DEST, "usr/local/sbin/vigil-agent"), "--check", "--config", staged],
                       capture_output=True, text=True)
    check(p.returncode == 0, "the installed example agent.yaml does not pass --check: %s" % p.stderr)


@test
def admin_config_never_overwritten():
    path = os.path.join(DEST, "etc/vigil/agent.yaml")
    with open(path, "w") as f:
        f.write("# mine\n")
    install()
    with open(path) as f:
        check(f.read() == "# mine\n", "make install overwrote the admin's agent.yaml")
    check(os.path.exists(path + ".example"), "the new example was not put beside it")


@test
def units_are_hardened_and_valid():
    for unit, want in (("vigil-agent", ["NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                                        "PrivateTmp=yes", "RestrictAddressFamilies=", "SystemCallFilter=@system-service",
                                        "CapabilityBoundingSet=CAP_BPF"]),
                       ("vigil-collector", ["NoNewPrivileges=yes", "ProtectSystem=strict", "DynamicUser=yes",
                                            "CapabilityBoundingSet=\n"])):
        with open(os.path.join(DEST, "lib/systemd/system/%s.service" % unit)) as f:
            text = f.read()
        for w in want:
            check(w in text, "%s.service lacks %r" % (unit, w.strip()))
        if shutil.which("systemd-analyze"):
            # Point the unit at the staged binaries so systemd can check it.
            staged = os.path.join(TMP, "%s.service" % unit)
            with open(staged, "w") as f:
                f.write(text.replace("/usr/local/", os.path.join(DEST, "usr/local/")))
            p = subprocess.run(["systemd-analyze", "verify", staged], capture_output=True, text=True)
            check(p.returncode == 0 and not p.stderr.strip(), "systemd rejects %s: %s" % (unit, p.stderr))


def tree(root):
    out = set()
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(d, n), root))
    return out


@test
def fleet_installer_is_idempotent_and_reversible():
    stage = os.path.join(TMP, "fleet")
    os.makedirs(os.path.join(stage, "etc"))
    before = tree(stage)
    ca = os.path.join(TMP, "fleet-ca")
    subprocess.run([os.path.join(lib.BUILD, "vigil"), "ca", "init", "--dir", ca], check=True, capture_output=True)
    enroll = os.path.join(TMP, "enroll")
    os.makedirs(enroll)
    for f in ("agent.crt", "agent.key", "ca.crt"):
        with open(os.path.join(enroll, f), "w") as fh:
            fh.write("test %s\n" % f)
    argv = ["bash", os.path.join(lib.ROOT, "scripts", "install-agent.sh"), "--root", stage, "--ca-dir", ca,
            "--enroll", enroll, "--collector", "collector.example:7443", "--fail-mode", "closed",
            "--bin-dir", lib.BUILD]
    for run in (1, 2):
        p = subprocess.run(argv, capture_output=True, text=True)
        check(p.returncode == 0, "install run %d failed: %s" % (run, p.stderr))
    etc = os.path.join(stage, "etc/vigil")
    for path, mode in (("ca", 0o700), ("ca/intercept.key", 0o600), ("pki", 0o700), ("pki/agent.key", 0o600),
                       ("agent.yaml", 0o644)):
        st = os.stat(os.path.join(etc, path))
        check(st.st_mode & 0o777 == mode, "%s mode %o, want %o" % (path, st.st_mode & 0o777, mode))
    with open(os.path.join(etc, "agent.yaml")) as f:
        conf = f.read()
    check("fail_mode: closed" in conf and "address: collector.example:7443" in conf, "config: %s" % conf)
    check(os.path.exists(os.path.join(stage, "usr/local/share/ca-certificates/vigil-intercept.crt")),
          "the CA was not put in the system store")
    p = subprocess.run(["bash", os.path.join(lib.ROOT, "scripts", "install-agent.sh"), "--uninstall", "--root", stage],
                       capture_output=True, text=True)
    check(p.returncode == 0, "uninstall failed: %s" % p.stderr)
    left = tree(stage) - before
    # Directories the installer created for binaries and units may stay
    # (shared with other packages); no file may.
    files = [f for f in left if os.path.isfile(os.path.join(stage, f))]
    check(not files, "uninstall left files behind: %s" % sorted(files))


@test
def fleet_installer_refuses_bad_arguments():
    p = subprocess.run(["bash", os.path.join(lib.ROOT, "scripts", "install-agent.sh"), "--root", TMP,
                        "--collector", "x:1"], capture_output=True, text=True)
    check(p.returncode == 2 and "--ca-dir" in p.stderr, "missing --ca-dir accepted: %s" % p.stderr)


if __name__ == "__main__":
    lib.main()
