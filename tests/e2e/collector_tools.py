"""The collector as the e2e tests drive it: a collector (pki init, its own
config, SQLite or ClickHouse store) started and stopped by pid, and a
scratch ClickHouse server. Shared by test_collector.py and
test_collector_ops.py."""
import json
import os
import socket
import sqlite3
import subprocess
import threading
import time

import lib
from lib import check

VIGIL = os.path.join(lib.BUILD, "vigil")
COLLECTOR = os.path.join(lib.BUILD, "vigil-collector")
ADMIN_T, ANALYST_T, METRICS_T = "admin-token-0123456789abcdef", "analyst-token-0123456789abcd", "metrics-token-0123456789abcd"


class Collector:
    def __init__(self, tmp, store=None, host="127.0.0.1", extra="", name="collector"):
        self.dir = os.path.join(tmp, name)
        self.host = host
        os.makedirs(self.dir, exist_ok=True)
        self.pki = os.path.join(self.dir, "pki")
        p = subprocess.run([COLLECTOR, "pki", "init", "--dir", self.pki, "--name", host], capture_output=True, text=True)
        check(p.returncode == 0, "pki init: %s" % p.stderr)
        self.db = os.path.join(self.dir, "events.db")
        self.port, self.api_port = lib.free_port(host), lib.free_port(host)
        self.syslog = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.syslog.bind((host, 0))
        self.syslog.settimeout(0.2)
        self.syslog_lines = []
        self.config = os.path.join(self.dir, "collector.yaml")
        with open(self.config, "w") as f:
            f.write("""listen: %s:%d
api: %s:%d
store: %s
tls_cert: %s/server.crt
tls_key: %s/server.key
client_ca: %s/ca.crt
retain_days: 30
cert_days: 2
syslog_forward: %s:%d
log_level: debug
tokens:
  - { token: %s, role: admin, name: soc-admin }
  - { token: %s, role: analyst, name: soc-analyst }
  - { token: %s, role: metrics, name: prometheus }
""" % (host, self.port, host, self.api_port, store or ("sqlite:" + self.db), self.pki, self.pki, self.pki,
                host, self.syslog.getsockname()[1], ADMIN_T, ANALYST_T, METRICS_T) + extra)
        self.url = "https://%s:%d" % (host, self.api_port)
        self.ca = os.path.join(self.pki, "ca.crt")
        self.proc = None
        self.log = os.path.join(self.dir, "stderr.log")
        lib.at_cleanup(self.stop)
        self._stop_syslog = False
        threading.Thread(target=self._pump_syslog, daemon=True).start()

    def _pump_syslog(self):
        while not self._stop_syslog:
            try:
                data, _ = self.syslog.recvfrom(65536)
                self.syslog_lines.append(data.decode("utf-8", "replace"))
            except socket.timeout:
                pass
            except OSError:
                return

    def start(self):
        logf = open(self.log, "a")
        self.proc = subprocess.Popen([COLLECTOR, "--config", self.config], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        ready = threading.Event()

        def pump():
            for line in self.proc.stderr:
                logf.write(line)
                logf.flush()
                if line.strip() == "vigil-collector ready":
                    ready.set()
        threading.Thread(target=pump, daemon=True).start()
        check(ready.wait(15), "collector did not become ready: %s" % self.tail())

    def tail(self, n=20):
        try:
            with open(self.log) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        self._stop_syslog = True
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def enroll(self, agent_id, out):
        return subprocess.run([COLLECTOR, "enroll", "--agent-id", agent_id, "--out", out, "--config", self.config],
                              capture_output=True, text=True)

    def vigil(self, *args, token=ANALYST_T):
        return subprocess.run([VIGIL] + list(args) + ["--server", self.url, "--token", token, "--cacert", self.ca],
                              capture_output=True, text=True, timeout=60)

    def query_json(self, *args):
        p = self.vigil("query", "--json", *args)
        check(p.returncode == 0, "vigil query --json %s: exit %d %s" % (args, p.returncode, p.stderr))
        return [json.loads(l) for l in p.stdout.splitlines() if l.strip()]

    def http(self, method, path, token=None):
        argv = ["curl", "-sS", "--cacert", self.ca, "-X", method, "-o", "-", "-w", "\n%{http_code}"]
        if token:
            argv += ["-H", "Authorization: Bearer " + token]
        p = subprocess.run(argv + [self.url + path], capture_output=True, text=True, timeout=30)
        body, _, code = p.stdout.rpartition("\n")
        return int(code or 0), body


class ClickHouse:
    """Debian's clickhouse-server on loopback ports with its own data directory, stopped at exit."""

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "clickhouse")
        os.makedirs(self.dir, exist_ok=True)
        self.http, tcp = lib.free_port(), lib.free_port()
        users = os.path.join(self.dir, "users.xml")
        with open(users, "w") as f:
            f.write("<yandex><profiles><default></default></profiles><users><default><password></password>"
                    "<networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota>"
                    "</default></users><quotas><default></default></quotas></yandex>\n")
        cfg = os.path.join(self.dir, "config.xml")
        with open(cfg, "w") as f:
            f.write("<yandex><logger><level>warning</level><log>%s/server.log</log><errorlog>%s/err.log</errorlog>"
                    "<console>0</console></logger><http_port>%d</http_port><tcp_port>%d</tcp_port>"
                    "<listen_host>127.0.0.1</listen_host><path>%s/data/</path><tmp_path>%s/tmp/</tmp_path>"
                    "<users_config>%s</users_config><default_profile>default</default_profile>"
                    "<default_database>default</default_database><mark_cache_size>67108864</mark_cache_size></yandex>\n"
                    % (self.dir, self.dir, self.http, tcp, self.dir, self.dir, users))
        check(os.access("/usr/sbin/clickhouse-server", os.X_OK), "clickhouse-server is not installed (scripts/deps.sh test)")
        self.proc = subprocess.Popen(["/usr/sbin/clickhouse-server", "--config-file", cfg], cwd=self.dir,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lib.at_cleanup(self.stop)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.http), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("clickhouse-server did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def sql(self, query, db="vigil"):
        import urllib.request
        import urllib.parse
        url = "http://127.0.0.1:%d/?database=%s" % (self.http, db)
        with urllib.request.urlopen(urllib.request.Request(url, data=query.encode())) as r:
            return r.read().decode()

    def mutate(self, query):
        """ALTER ... UPDATE/DELETE, waiting until the mutation is applied."""
        self.sql(query)
        deadline = time.time() + 30
        while self.sql("SELECT count() FROM system.mutations WHERE is_done = 0").strip() != "0":
            check(time.time() < deadline, "mutation did not finish")
            time.sleep(0.1)


def fill_store(db, n):
    """n unsigned events of one agent straight into the SQLite store: verify
    walks and rejects every one of them, which takes a while."""
    con = sqlite3.connect(db)
    con.execute("INSERT OR IGNORE INTO agents(agent_id, pubkey, first_seen, last_seen) VALUES('bulk', ?, 1, 1)",
                (bytes(32),))
    now = int(time.time() * 1e6)
    con.executemany("INSERT INTO events(time, event_id, agent_id, boot_id, seq, host, kind, user, action, findings,"
                    " prev_hash, hash, raw) VALUES(?, ?, 'bulk', 'b', ?, 'h', 'request', 'u', 'allow', '', ?, ?, ?)",
                    ((now - i, "e%d" % i, i + 1, bytes(32), bytes(32), b"\x08\x01" * 40) for i in range(n)))
    con.commit()
    con.close()
