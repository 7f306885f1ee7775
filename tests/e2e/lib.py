"""Shared pieces of Vigil's end-to-end tests.

Everything here drives the real binaries and the real kernel: a scratch
cgroup under the cgroup2 mount (removed even when a test fails), the agent
started from build/, clients moved into the cgroup and run as other users,
and private mount namespaces with their own /etc/hosts so that clients
resolve provider names to loopback addresses.

Each test prints "PASS name" or "FAIL name: why"; tests/run.sh counts them.
"""
import atexit
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD", os.path.join(ROOT, "build"))
AGENT = os.path.join(BUILD, "vigil-agent")
NOBODY = 65534
SAN = os.environ.get("SAN") == "1"   # binaries built with ASan/UBSan (memory figures do not apply)

_cleanups = []


def at_cleanup(fn):
    _cleanups.append(fn)
    return fn


def _run_cleanups():
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception:  # cleanup must go on
            traceback.print_exc()


atexit.register(_run_cleanups)
for _sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_sig, lambda *a: sys.exit(1))


def cgroup2_root():
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "cgroup2":
                return parts[1]
    raise RuntimeError("no cgroup2 mount in /proc/mounts")


class Scratch:
    """A scratch cgroup, removed at exit (its processes moved out first)."""

    def __init__(self, tag="t"):
        self.root = cgroup2_root()
        self.path = os.path.join(self.root, "vigil-test-%s-%d-%d" % (tag, os.getpid(), int(time.time() * 1000) % 100000))
        os.mkdir(self.path)
        at_cleanup(self.remove)

    def remove(self):
        if not os.path.isdir(self.path):
            return
        for _ in range(50):
            try:
                with open(os.path.join(self.path, "cgroup.procs")) as f:
                    pids = [p for p in f.read().split() if p]
            except FileNotFoundError:
                return
            for p in pids:
                try:
                    with open(os.path.join(self.root, "cgroup.procs"), "w") as f:
                        f.write(p)
                except OSError:
                    pass
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("cannot remove scratch cgroup %s" % self.path)


def wrap(argv, cgroup=None, uid=None, gid=None, hosts=None, resolv=None, overlays=()):
    """The command line that runs argv inside cgroup, as uid, with hosts as
    /etc/hosts and resolv as /etc/resolv.conf, and each (dir, upper) of
    overlays' files laid over dir (private mount namespace: a staged
    install seen in place without touching this machine's own files)."""
    script = ""
    for d, upper in overlays:
        os.makedirs(upper + ".work", exist_ok=True)
        script += "mount -t overlay overlay -o lowerdir=%s,upperdir=%s,workdir=%s %s || exit 95; " % (
            shlex.quote(d), shlex.quote(upper), shlex.quote(upper + ".work"), shlex.quote(d))
    if hosts:
        script += 'mount --bind "$VIGIL_HOSTS" /etc/hosts || exit 97; '
    if resolv:
        script += 'mount --bind "$VIGIL_RESOLV" /etc/resolv.conf || exit 96; '
    if cgroup:
        script += 'echo $$ > "$VIGIL_CG/cgroup.procs" || exit 98; '
    script += 'exec "$@"'
    inner = argv
    if uid is not None:
        g = gid if gid is not None else uid
        inner = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % g, "--clear-groups", "--"] + argv
    cmd = ["sh", "-c", script, "sh"] + inner
    if hosts or resolv or overlays:
        cmd = ["unshare", "-m", "--propagation", "private"] + cmd
    return cmd


def hosts_file(mapping, tmpdir):
    """Writes a hosts file mapping name -> address, returns its path."""
    path = os.path.join(tmpdir, "hosts")
    with open(path, "w") as f:
        f.write("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
        for name, addr in mapping.items():
            f.write("%s %s\n" % (addr, name))
    os.chmod(path, 0o644)
    return path


def run(argv, cgroup=None, uid=None, gid=None, hosts=None, env=None, timeout=60, input=None, check=False,
        resolv=None, overlays=()):
    e = dict(os.environ)
    if env:
        e.update(env)
    if cgroup:
        e["VIGIL_CG"] = cgroup
    if hosts:
        e["VIGIL_HOSTS"] = hosts
    if resolv:
        e["VIGIL_RESOLV"] = resolv
    p = subprocess.run(wrap(argv, cgroup, uid, gid, hosts, resolv, overlays), env=e, capture_output=True, text=True,
                       timeout=timeout, input=input)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d: %s" % (argv[:3], p.returncode, p.stderr.strip()[-800:]))
    return p


def spawn(argv, cgroup=None, uid=None, hosts=None, env=None, **kw):
    e = dict(os.environ)
    if env:
        e.update(env)
    if cgroup:
        e["VIGIL_CG"] = cgroup
    if hosts:
        e["VIGIL_HOSTS"] = hosts
    p = subprocess.Popen(wrap(argv, cgroup, uid, None, hosts), env=e, **kw)
    at_cleanup(lambda: _stop(p))
    return p


def _stop(p):
    if p.poll() is None:
        p.kill()
        p.wait()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(host="127.0.0.1"):
    """A port nothing listens on, below the kernel's ephemeral range: a port
    the kernel handed out would be free now but could be taken by any
    outgoing connection (or its TIME_WAIT) before the test's server binds
    it, as a fresh-clone CI run once saw after 20,000 requests.  The port
    is also free on [::1], where the agent listens too."""
    low = min(_ephemeral_low(), 65536)
    rng = random.Random(os.getpid() ^ int(time.time() * 1000))
    if low > 12000:
        for _ in range(200):
            port = rng.randrange(10000, low)
            if port in _handed_out:
                continue
            if _bindable(host, port) and (":" in host or not _HAS_V6 or _bindable("::1", port)):
                _handed_out.add(port)
                return port
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


_handed_out = set()
_HAS_V6 = _bindable("::1", 0)


class Agent:
    """The real vigil-agent, started from build/ with a generated config."""

    def __init__(self, tmpdir, cgroup, extra="", name="agent", port=None, log_level="debug"):
        self.dir = os.path.join(tmpdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.audit_log = os.path.join(self.dir, "events.jsonl")
        self.config = os.path.join(self.dir, "agent.yaml")
        self.pin_dir = "/sys/fs/bpf/vigil-test-%d-%s" % (os.getpid(), name)
        with open(self.config, "w") as f:
            f.write("listen: 127.0.0.1:%d\n" % self.port)
            f.write("listen6: \"[::1]:%d\"\n" % self.port)
            f.write("cgroup: %s\n" % cgroup)
            f.write("pin_dir: %s\n" % self.pin_dir)
            f.write("audit_log: %s\n" % self.audit_log)
            f.write("spool_dir: %s\n" % os.path.join(self.dir, "spool"))
            f.write("log_level: %s\n" % log_level)
            f.write(extra)
        self.proc = None
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        at_cleanup(self.cleanup)

    def start(self, timeout=20):
        self.stderr = open(self.stderr_path, "a")
        self.proc = subprocess.Popen([AGENT, "--config", self.config], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        ready = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.stderr.write(line)
                self.stderr.flush()
                if line.strip() == "vigil-agent ready":
                    ready.set()
        threading.Thread(target=pump, daemon=True).start()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if ready.wait(0.05):
                return self
            if self.proc.poll() is not None:
                break
        raise AssertionError("agent did not become ready: %s" % self.log_tail())

    def log_tail(self, n=25):
        try:
            with open(self.stderr_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        """SIGTERM; returns the exit status."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "timeout"

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.stop()
        if os.path.isdir(self.pin_dir):
            for f in os.listdir(self.pin_dir):
                os.unlink(os.path.join(self.pin_dir, f))
            os.rmdir(self.pin_dir)

    def events(self, kind=None):
        out = []
        try:
            with open(self.audit_log) as f:
                for line in f:
                    ev = json.loads(line)
                    if kind is None or ev.get("kind") == kind:
                        out.append(ev)
        except FileNotFoundError:
            pass
        return out

    def wait_events(self, pred, timeout=5.0, kind=None):
        deadline = time.time() + timeout
        while True:
            evs = [e for e in self.events(kind) if pred(e)]
            if evs or time.time() > deadline:
                return evs
            time.sleep(0.05)


_tests = []


def test(fn):
    _tests.append(fn)
    return fn


def main():
    failed = 0
    only = sys.argv[1:] or None
    for fn in _tests:
        if only and fn.__name__ not in only:
            continue
        try:
            fn()
            print("PASS %s" % fn.__name__, flush=True)
        except Exception as e:  # a failing test names what went wrong
            failed += 1
            msg = str(e) or repr(e)
            print("FAIL %s: %s" % (fn.__name__, msg.replace("\n", " | ")[:1500]), flush=True)
            traceback.print_exc()
    _run_cleanups()
    sys.exit(1 if failed else 0)



def fake_answer(text):
    """The header that makes the fake provider answer text: base64 of the
    zlib-compressed text, bytes the agent does not read as text (it reads
    request header values, base64 of text included, and would block or
    redact an answer holding a finding on its way to the fake)."""
    import base64
    import zlib
    return "x-fake-answer-z: " + base64.b64encode(zlib.compress(text.encode())).decode()


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)
