"""The real vigil-collector for end-to-end tests (its own PKI and SQLite
store, driven through its CLI: enroll, export, verify), helpers to
produce audited events and check what it stored, and the agent's side of
shipping (collector_conf, enroll_rig) that every collector test uses."""
import json
import os
import signal
import socket
import subprocess
import threading
import time

import lib

COLLECTOR = os.path.join(lib.BUILD, "vigil-collector")


class Collector:
    """The real vigil-collector with its own PKI and SQLite store."""

    def __init__(self, tmpdir, host="127.0.0.1"):
        self.dir = os.path.join(tmpdir, "collector")
        os.makedirs(self.dir, exist_ok=True)
        self.pki = os.path.join(self.dir, "pki")
        self.host = host
        self.port = lib.free_port(host)
        self.api_port = lib.free_port(host)
        self.config = os.path.join(self.dir, "collector.yaml")
        self.proc = None
        self.log = os.path.join(self.dir, "collector.log")
        subprocess.run([COLLECTOR, "pki", "init", "--dir", self.pki, "--name", host,
                        "--name", "localhost"], check=True, capture_output=True)
        with open(self.config, "w") as f:
            f.write("listen: %s:%d\n" % (host, self.port))
            f.write("api: %s:%d\n" % (host, self.api_port))
            f.write("store: sqlite:%s\n" % os.path.join(self.dir, "store.db"))
            f.write("tls_cert: %s/server.crt\ntls_key: %s/server.key\n" % (self.pki, self.pki))
            f.write("client_ca: %s/ca.crt\n" % self.pki)
            f.write("tokens:\n  - {token: pipeline-test-token-0123456789, role: analyst, name: t}\n")
        lib.at_cleanup(self.stop)

    def enroll(self, agent_id):
        out = os.path.join(self.dir, "enroll-" + agent_id)
        subprocess.run([COLLECTOR, "enroll", "--agent-id", agent_id, "--out", out, "--config",
                        self.config], check=True, capture_output=True)
        return out

    def start(self, timeout=15):
        logf = open(self.log, "a")
        self.proc = subprocess.Popen([COLLECTOR, "--config", self.config], stdout=logf,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                socket.create_connection((self.host, self.port), 0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise AssertionError("collector did not start: %s" % self.tail())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, n=15):
        try:
            with open(self.log) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def events(self):
        p = subprocess.run([COLLECTOR, "export", "--format", "jsonl", "--limit", "10000000",
                            "--config", self.config], capture_output=True, text=True, timeout=120)
        return [json.loads(l) for l in p.stdout.splitlines() if l.strip()]

    def verify(self):
        p = subprocess.run([COLLECTOR, "verify", "--config", self.config], capture_output=True,
                           text=True, timeout=120)
        return p.returncode, (p.stdout + p.stderr).strip()


def collector_conf(address, enrolled, agent_id=None, ship_interval="200ms", extra=""):
    """The agent config lines that ship to the collector at address
    ("host:port") with an enrolled bundle (the directory holding ca.crt,
    agent.crt and agent.key); agent_id None: the certificate's."""
    return ("%sship_interval: %s\n%scollector:\n  address: %s\n  ca: %s/ca.crt\n  cert: %s/agent.crt\n"
            "  key: %s/agent.key\n" % ("agent_id: %s\n" % agent_id if agent_id else "", ship_interval, extra,
                                       address, enrolled, enrolled, enrolled))


def enroll_rig(col, rig, agent_id, ship_interval="200ms"):
    """Enrols agent_id at col (a collector_tools.Collector, started) into
    rig's tmp and appends to rig's agent config what ships to col."""
    pki = os.path.join(rig.tmp, "agent-pki")
    p = col.enroll(agent_id, pki)
    lib.check(p.returncode == 0, "enroll: %s" % p.stderr)
    with open(rig.agent.config, "a") as f:
        f.write(collector_conf("%s:%d" % (col.host, col.port), pki, agent_id, ship_interval))
    return pki


def wait_stored(col, agent_id, pred, timeout):
    """The collector's events of agent_id once pred(events) holds, or what
    it has at the timeout."""
    deadline = time.time() + timeout
    evs = []
    while time.time() < deadline:
        evs = [e for e in col.events() if e.get("agent_id") == agent_id]
        if pred(evs):
            return evs
        time.sleep(0.2)
    return evs


def produce(port, n, threads=4):
    """n audited connections to the agent's listener."""
    def worker(k):
        for _ in range(k):
            try:
                s = socket.create_connection(("127.0.0.1", port), 5)
                s.close()
            except OSError:
                pass
    per = n // threads
    ts = [threading.Thread(target=worker, args=(per + (n % threads if i == 0 else 0),))
          for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def seqs_report(evs):
    seqs = [e["seq"] for e in evs]
    dups = len(seqs) - len(set(seqs))
    mx = max(seqs) if seqs else 0
    missing = sorted(set(range(1, mx + 1)) - set(seqs))
    return seqs, dups, mx, missing


def chain_ok(evs):
    by = {e["seq"]: e for e in evs}
    for q in sorted(by):
        if q > 1 and q - 1 in by and by[q]["prev_hash"] != by[q - 1]["hash"]:
            return "seq %d does not chain to seq %d" % (q, q - 1)
    return None
