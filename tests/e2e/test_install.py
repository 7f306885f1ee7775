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


@test
def deb_package_is_complete_and_installable():
    out = os.path.join(TMP, "deb")
    p = subprocess.run(["bash", os.path.join(lib.ROOT, "scripts", "deb.sh"), out], capture_output=True, text=True,
                       env=dict(os.environ, BUILD=lib.BUILD))
    check(p.returncode == 0, "deb.sh failed: %s" % p.stderr)
    deb = p.stdout.strip().splitlines()[-1]
    check(os.path.isfile(deb) and deb.endswith(".deb"), "no package: %r" % p.stdout)
    info = subprocess.run(["dpkg-deb", "-f", deb], capture_output=True, text=True).stdout
    fields = dict(l.split(": ", 1) for l in info.splitlines() if ": " in l and not l.startswith(" "))
    check(fields.get("Package") == "vigil", "control: %s" % info)
    for lib_pkg in ("libbpf1", "libssl3", "libhyperscan5", "libprotobuf-c1", "libzstd1", "libsqlite3-0"):
        check(lib_pkg in fields.get("Depends", ""), "Depends lacks %s: %s" % (lib_pkg, fields.get("Depends")))
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True).stdout
    paths = {l.split()[-1] for l in listing.splitlines() if l.strip()}
    for path in ("./usr/sbin/vigil-agent", "./usr/bin/vigil-collector", "./usr/bin/vigil",
                 "./lib/systemd/system/vigil-agent.service", "./etc/vigil/policy.yaml"):
        check(path in paths, "package lacks %s" % path)
    ca = [l for l in listing.splitlines() if l.rstrip().endswith("./etc/vigil/ca/")]
    check(ca and ca[0].startswith("drwx------ root/root"), "/etc/vigil/ca not 0700 root: %s" % ca)
    x = os.path.join(TMP, "deb-x")
    subprocess.run(["dpkg-deb", "-R", deb, x], check=True)
    with open(os.path.join(x, "DEBIAN", "conffiles")) as f:
        conffiles = f.read().split()
    check(set(conffiles) >= {"/etc/vigil/agent.yaml", "/etc/vigil/policy.yaml", "/etc/vigil/collector.yaml"},
          "configuration not marked as conffiles (an upgrade would overwrite the admin's edits): %s" % conffiles)
    with open(os.path.join(x, "lib/systemd/system/vigil-agent.service")) as f:
        unit = f.read()
    check("ExecStart=/usr/sbin/vigil-agent " in unit and "/usr/local" not in unit, "unit paths: %s" % unit[:400])
    v = subprocess.run([os.path.join(x, "usr/sbin/vigil-agent"), "--version"], capture_output=True, text=True)
    check(v.returncode == 0 and v.stdout.startswith("vigil-agent "), "packaged agent does not run: %s %s" %
          (v.stdout, v.stderr))
    # The fleet installer configures a packaged agent: it neither copies
    # binaries nor replaces the package's unit, and removes only its own files.
    stage = os.path.join(TMP, "pkgroot")
    subprocess.run(["dpkg-deb", "-x", deb, stage], check=True)
    with open(os.path.join(stage, "lib/systemd/system/vigil-agent.service")) as f:
        packaged_unit = f.read()
    before = tree(stage)
    ca = os.path.join(TMP, "pkg-ca")
    subprocess.run([os.path.join(lib.BUILD, "vigil"), "ca", "init", "--dir", ca], check=True, capture_output=True)
    p = subprocess.run(["bash", os.path.join(lib.ROOT, "scripts", "install-agent.sh"), "--root", stage, "--ca-dir", ca,
                        "--packaged"], capture_output=True, text=True)
    check(p.returncode == 0, "install-agent.sh --packaged failed: %s" % p.stderr)
    check(not os.path.exists(os.path.join(stage, "usr/local/sbin/vigil-agent")), "binaries copied beside the package's")
    with open(os.path.join(stage, "lib/systemd/system/vigil-agent.service")) as f:
        check(f.read() == packaged_unit, "the package's unit was rewritten")
    with open(os.path.join(stage, "etc/vigil/agent.yaml")) as f:
        check("ca_key: /etc/vigil/ca/intercept.key" in f.read(), "agent.yaml not written")
    p = subprocess.run(["bash", os.path.join(lib.ROOT, "scripts", "install-agent.sh"), "--uninstall", "--root", stage],
                       capture_output=True, text=True)
    check(p.returncode == 0, "uninstall failed: %s" % p.stderr)
    left = [f for f in tree(stage) - before if os.path.isfile(os.path.join(stage, f))]
    check(not left, "uninstall left files behind: %s" % sorted(left))
    check(os.path.exists(os.path.join(stage, "usr/sbin/vigil-agent")), "uninstall removed the package's binary")
    # Every dependency resolves against this Debian release.
    sim = subprocess.run(["apt-get", "install", "-s", "-q", deb], capture_output=True, text=True)
    check(sim.returncode == 0 and "Inst vigil" in sim.stdout, "apt cannot install the package: %s %s" %
          (sim.stdout[-600:], sim.stderr[-600:]))


@test
def agent_starts_with_the_units_capability_bounding_set():
    """The unit's CapabilityBoundingSet is all the agent gets under systemd:
    with it, the agent must attach, drop to what it keeps, and say ready
    (a set without CAP_SETPCAP made it exit at the privilege drop)."""
    with open(os.path.join(lib.ROOT, "scripts", "systemd", "vigil-agent.service")) as f:
        line = [l for l in f if l.startswith("CapabilityBoundingSet=")][0]
    caps = [c[len("CAP_"):].lower() for c in line.split("=", 1)[1].split()]
    wrapper = os.path.join(TMP, "agent-unit-caps.sh")
    with open(wrapper, "w") as f:
        f.write('#!/bin/sh\nexec setpriv --bounding-set=-all,%s --inh-caps=-all --ambient-caps=-all -- %s "$@"\n'
                % (",".join("+" + c for c in caps), lib.AGENT))
    os.chmod(wrapper, 0o755)
    cg = lib.Scratch("unitcaps")
    agent = lib.Agent(TMP, cg.path, name="unitcaps", log_level="info")
    real, lib.AGENT = lib.AGENT, wrapper
    try:
        agent.start()
    finally:
        lib.AGENT = real
    with open("/proc/%d/status" % agent.proc.pid) as f:
        eff = int([l for l in f if l.startswith("CapEff:")][0].split()[1], 16)
    check(eff == 1 << 19 | 1 << 5, "capabilities after the drop %x, want CAP_SYS_PTRACE and CAP_KILL only" % eff)
    check(agent.stop() == 0, "SIGTERM did not exit 0")


if __name__ == "__main__":
    lib.main()
