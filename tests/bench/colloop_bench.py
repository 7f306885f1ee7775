"""colloop_bench: the collector's process-level numbers (issue 14).

Against the real vigil-collector binary (SQLite store, loopback 127.87.0.2):
  1. threads of an idle collector (/proc/PID/status, after 2 s idle);
  2. memory per idle API connection: VmRSS before and after N TLS
     connections that completed their handshake and then say nothing,
     divided by the connections the collector still holds;
  3. ingest events/s (collector_bench --remote: 4 mTLS agents, signed zstd
     batches of 1000, acked after commit), alone and while a slow API query
     (/api/v1/verify over a 400,000-event store) runs again and again.
Usage: BUILD=... python3 tests/bench/colloop_bench.py [--idle N] [--events N]
"""
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import lib  # noqa: E402
from collector_tools import ANALYST_T, Collector, fill_store  # noqa: E402

HOST = "127.87.0.2"
ROOT = os.path.join(HERE, "..", "..")


def status_field(pid, name):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def held(conns):
    """How many of conns the server has not closed."""
    n = 0
    for s in conns:
        s.setblocking(False)
        try:
            n += 1 if s.recv(1) else 0
        except ssl.SSLWantReadError:
            n += 1
        except (ssl.SSLError, OSError):
            pass
    return n


def idle_memory(col, n):
    ctx = ssl.create_default_context(cafile=col.ca)
    pid = col.proc.pid
    time.sleep(1)
    rss0 = status_field(pid, "VmRSS")
    conns = []
    for _ in range(n):
        try:
            raw = socket.create_connection((col.host, col.api_port), 10)
            conns.append(ctx.wrap_socket(raw, server_hostname=col.host))
        except (ssl.SSLError, OSError):
            break
    time.sleep(2)
    rss1 = status_field(pid, "VmRSS")
    threads = status_field(pid, "Threads")
    h = held(conns)
    for s in conns:
        s.close()
    per = (rss1 - rss0) / h if h else float("nan")
    print("idle API connections: %d opened, %d held; VmRSS %d -> %d kB: %.1f kB per held connection; "
          "%d threads while held" % (len(conns), h, rss0, rss1, per, threads))


def ingest_rate(col, events, slow, base):
    bench = os.path.join(lib.BUILD, "collector_bench")
    p = subprocess.Popen([bench, "--events", str(events), "--remote", HOST, str(col.port), col.dir, str(base)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "ready":
        raise SystemExit("collector_bench did not start")
    stop = threading.Event()
    verifies = []

    def slow_queries():
        while not stop.is_set():
            t0 = time.time()
            code, _ = col.http("GET", "/api/v1/verify", ANALYST_T)
            verifies.append((code, time.time() - t0))
    t = None
    if slow:
        t = threading.Thread(target=slow_queries)
        t.start()
        time.sleep(0.3)
    p.stdin.write("\n")
    p.stdin.flush()
    out = p.stdout.read()
    p.wait()
    stop.set()
    if t:
        t.join()
    rate = [l.split()[1] for l in out.splitlines() if l.startswith("events_per_s")]
    extra = ""
    if slow:
        extra = " (during %d verify runs of %s s)" % (len(verifies), ", ".join("%.2f" % v[1] for v in verifies[:4]))
    print("ingest %s a slow API query: %s events/s%s" % ("with" if slow else "without", rate[0] if rate else "?", extra))


def main():
    idle_n = 1000
    events = 200000
    args = sys.argv[1:]
    if "--idle" in args:
        idle_n = int(args[args.index("--idle") + 1])
    if "--events" in args:
        events = int(args[args.index("--events") + 1])
    r = subprocess.run(["bash", os.path.join(ROOT, "tests/bench/collector_bench.sh")],
                       env=dict(os.environ, VIGIL_BUILD_ONLY="1", BUILD=lib.BUILD), cwd=ROOT)
    if r.returncode:
        raise SystemExit("collector_bench does not build")
    tmp = tempfile.mkdtemp(prefix="vigil-colloop-")
    col = Collector(tmp, host=HOST, name="bench")
    for i in range(8):
        p = col.enroll("bench-%d" % i, os.path.join(col.dir, "bench-%d" % i))
        if p.returncode:
            raise SystemExit("enroll: %s" % p.stderr)
    col.start()
    col.stop()
    fill_store(col.db, 400000)
    col.start()
    time.sleep(2)
    print("idle collector: %d threads, VmRSS %d kB" % (status_field(col.proc.pid, "Threads"),
                                                       status_field(col.proc.pid, "VmRSS")))
    idle_memory(col, idle_n)
    ingest_rate(col, events, False, 0)
    ingest_rate(col, events, True, 4)
    col.stop()
    lib._run_cleanups()


if __name__ == "__main__":
    main()
