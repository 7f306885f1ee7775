"""End-to-end: the collector's operations, with the real binary and no agent.

Housekeeping: a request in flight when the collector is told to stop is
answered before the store closes; `verify` (which reads every event) does
not stall other queries; SIGHUP reloads the tokens, and a configuration with
a mistake is refused with file:line while the running one stays.

Listens on 127.41.0.0/16 only.
"""
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import threading
import time

import lib
from lib import check, test
from collector_tools import ANALYST_T, Collector

HOST = "127.41.0.1"
TMP = tempfile.mkdtemp(prefix="vigil-colops-")


def tls_conn(col):
    ctx = ssl.create_default_context(cafile=col.ca)
    raw = socket.create_connection((col.host, col.api_port), 10)
    return ctx.wrap_socket(raw, server_hostname=col.host)


def read_all(s):
    out = b""
    while True:
        try:
            b = s.recv(65536)
        except (ssl.SSLError, OSError):
            break
        if not b:
            break
        out += b
    return out


@test
def stop_waits_for_request_in_flight():
    """SIGTERM while a request is half sent: the collector must answer it
    (the store stays open until the last request thread ended), then exit 0.
    The rest of the request arrives after 6 s, past the old 5 s give-up."""
    col = Collector(TMP, host=HOST, name="stop")
    col.start()
    s = tls_conn(col)
    s.sendall(b"GET /api/v1/events?limit=1&format=json HTTP/1.1\r\nHost: x\r\n")
    time.sleep(0.3)
    col.proc.send_signal(signal.SIGTERM)
    time.sleep(6)
    check(col.proc.poll() is None, "collector exited with a request in flight: %s" % col.tail())
    s.sendall(("Authorization: Bearer %s\r\n\r\n" % ANALYST_T).encode())
    resp = read_all(s)
    s.close()
    check(resp.startswith(b"HTTP/1.1 200"), "in-flight request not answered: %r | %s" % (resp[:200], col.tail()))
    rc = col.proc.wait(15)
    check(rc == 0, "collector exit %d after the request: %s" % (rc, col.tail()))
    check("ERROR" not in col.tail(50) and "AddressSanitizer" not in col.tail(50), col.tail())


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


def timed(col, path):
    t0 = time.time()
    code, body = col.http("GET", path, ANALYST_T)
    return code, body, time.time() - t0


@test
def verify_does_not_block_queries():
    col = Collector(TMP, host=HOST, name="verify")
    col.start()            # creates the schema
    col.stop()
    fill_store(col.db, 400000)
    col.start()
    res = {}

    def run_verify():
        res["verify"] = timed(col, "/api/v1/verify")
    t = threading.Thread(target=run_verify)
    t.start()
    time.sleep(0.5)
    lat = []
    while t.is_alive() and len(lat) < 5:
        code, body, dt = timed(col, "/api/v1/events?limit=5&format=json")
        check(code == 200, "query during verify: %d %s" % (code, body[:200]))
        lat.append(dt)
        time.sleep(0.1)
    t.join(120)
    vcode, vbody, vdt = res["verify"]
    check(vcode == 200 and "BROKEN" in vbody, "verify: %d %s" % (vcode, vbody[-300:]))
    check(lat, "verify finished in %.2f s before a query could overlap it (store too small)" % vdt)
    print("verify took %.2f s; queries during it: %s s" % (vdt, ", ".join("%.3f" % x for x in lat)))
    check(max(lat) < vdt / 3, "queries waited for verify: %s vs verify %.2f s" % (lat, vdt))
    col.stop()


@test
def sighup_reloads_tokens_and_keeps_old_on_mistake():
    col = Collector(TMP, host=HOST, name="hup")
    col.start()
    new_t = "rotated-token-0123456789abcdef"
    with open(col.config) as f:
        good = f.read()
    check(col.http("GET", "/api/v1/agents", ANALYST_T)[0] == 200, "analyst token before reload")
    check(col.http("GET", "/api/v1/agents", new_t)[0] == 401, "new token before reload")
    with open(col.config, "w") as f:
        f.write(good.replace(ANALYST_T, new_t))
    col.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while col.http("GET", "/api/v1/agents", new_t)[0] != 200:
        check(time.time() < deadline, "new token not accepted after SIGHUP: %s" % col.tail())
        time.sleep(0.2)
    check(col.http("GET", "/api/v1/agents", ANALYST_T)[0] == 401, "removed token still accepted after reload")
    # A mistake: refused with file:line, the running tokens stay.
    lines = good.replace(ANALYST_T, "third-token-0123456789abcdef").splitlines()
    lines.insert(3, "retain_dayz: 30")
    with open(col.config, "w") as f:
        f.write("\n".join(lines) + "\n")
    col.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    want = "%s:4:" % col.config
    while want not in col.tail(50):
        check(time.time() < deadline, "no file:line error after a bad reload: %s" % col.tail())
        time.sleep(0.2)
    check("reload refused" in col.tail(50), col.tail())
    check(col.http("GET", "/api/v1/agents", new_t)[0] == 200, "running token lost after a refused reload")
    check(col.http("GET", "/api/v1/agents", "third-token-0123456789abcdef")[0] == 401, "refused config applied")
    check(col.proc.poll() is None, "collector died on a bad reload")
    col.stop()
    check(col.proc.returncode == 0, "exit %s: %s" % (col.proc.returncode, col.tail()))


if __name__ == "__main__":
    lib.main()
