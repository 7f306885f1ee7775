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


if __name__ == "__main__":
    lib.main()
