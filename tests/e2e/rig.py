"""A complete interception set-up for end-to-end tests: test PKI ("public
web" CA + provider certificates), an interception CA from `vigil ca init`,
fake providers on loopback addresses of the test's own, a scratch cgroup,
a private hosts file, and the agent configured to intercept.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import lib
from lib import check

sys.path.insert(0, os.path.join(lib.ROOT, "tests", "fakes"))
import testpki  # noqa: E402

PY = "/usr/bin/python3"
CLIENTS = os.path.join(lib.ROOT, "tests", "clients")
FAKE = os.path.join(lib.ROOT, "tests", "fakes", "fake_provider.py")


class Rig:
    def __init__(self, tag, hosts, fakes, agent_extra="", endpoints=None, log_level="debug", extra_targets=()):
        """hosts: name -> address; fakes: name -> (address, cert kind, event delay ms)."""
        self.tmp = tempfile.mkdtemp(prefix="vigil-e2e-%s-" % tag)
        os.chmod(self.tmp, 0o755)
        lib.at_cleanup(lambda: shutil.rmtree(self.tmp, ignore_errors=True))
        self.hosts = lib.hosts_file(hosts, self.tmp)
        subprocess.run(["bash", os.path.join(CLIENTS, "install.sh")], check=True)
        self.pki = testpki.make_pki(os.path.join(self.tmp, "pki"))
        os.chmod(os.path.join(self.tmp, "pki"), 0o755)
        for v in self.pki.values():
            if os.path.isfile(v):
                os.chmod(v, 0o644)
        self.ca_dir = os.path.join(self.tmp, "ca")
        subprocess.run([os.path.join(lib.BUILD, "vigil"), "ca", "init", "--dir", self.ca_dir], check=True,
                       capture_output=True)
        self.ca = os.path.join(self.ca_dir, "intercept.crt")
        os.chmod(self.ca_dir, 0o755)
        os.chmod(self.ca, 0o644)
        self.cg = lib.Scratch(tag)
        self.records = {}
        self.sni_logs = {}
        for name, (addr, kind, delay) in fakes.items():
            self.start_fake(name, addr, kind, delay)
        addrs = sorted({a for a, _, _ in fakes.values()} | set(extra_targets))
        eps = endpoints or sorted({h for h, a in hosts.items() if a in addrs and "." in h})
        self.agent = lib.Agent(self.tmp, self.cg.path, log_level=log_level, extra="""ca_cert: %s
ca_key: %s
upstream_ca: %s
target_addresses: [%s]
endpoints: [%s]
%s""" % (self.ca, os.path.join(self.ca_dir, "intercept.key"), self.pki["ca_cert"], ", ".join(addrs),
         ", ".join(eps), agent_extra))

    def start_fake(self, name, addr, kind="good", delay_ms=0, port=443):
        record = os.path.join(self.tmp, "fake-%s.jsonl" % name)
        sni_log = os.path.join(self.tmp, "fake-%s-sni.log" % name)
        argv = [PY, FAKE, "--listen", "%s:%d" % (addr, port), "--cert", self.pki[kind + "_cert"],
                "--key", self.pki[kind + "_key"], "--record", record, "--passthrough-sni-log", sni_log]
        if delay_ms:
            argv += ["--event-delay-ms", str(delay_ms)]
        p = lib.spawn(argv, stdout=subprocess.PIPE, text=True)
        for _ in range(20):
            line = p.stdout.readline()
            if "fake-provider ready" in line:
                break
            check(line, "fake provider %s did not start" % name)
        self.records[name] = record
        self.sni_logs[name] = sni_log

    @staticmethod
    def read_jsonl(path):
        try:
            with open(path) as f:
                return [json.loads(l) for l in f]
        except FileNotFoundError:
            return []

    def received(self, name="good"):
        """What the fake provider received, one dict per request."""
        return self.read_jsonl(self.records[name])

    def curl(self, url, data=None, extra=(), uid=lib.NOBODY, ctype="application/json"):
        argv = ["curl", "-sS", "--max-time", "20", "--cacert", self.ca, "-o", "-", "-w", "\n%{http_code}",
                "-H", "Authorization: Bearer sk-test", "-H", "Content-Type: " + ctype] + list(extra)
        if data is not None:
            argv += ["--data-binary", data]
        argv.append(url)
        p = lib.run(argv, cgroup=self.cg.path, uid=uid, hosts=self.hosts, timeout=40)
        body, _, code = p.stdout.rpartition("\n")
        return int(code or 0), body, p

    def node(self, script, *args, uid=None, env=None):
        env = dict(env or {}, NODE_EXTRA_CA_CERTS=self.ca)
        p = lib.run(["node", os.path.join(CLIENTS, script)] + list(args), cgroup=self.cg.path, hosts=self.hosts,
                    env=env, uid=uid, timeout=60)
        check(p.stdout.strip(), "%s printed nothing: %s" % (script, p.stderr[-600:]))
        return json.loads(p.stdout.strip().splitlines()[-1]), p

    def request_events(self, pred=lambda e: True, n=1, timeout=5):
        deadline = time.time() + timeout
        while True:
            evs = [e for e in self.agent.events("request") if pred(e)]
            if len(evs) >= n or time.time() > deadline:
                return evs
            time.sleep(0.05)
