"""End-to-end: idle intercepted connections wait on the event loop, not on threads.

Through the real BPF redirect, real Python TLS clients in a scratch cgroup
hold many intercepted keep-alive connections to a fake provider on loopback
(127.94.0.0/16). While they idle after a request, the agent must not hold a
thread per connection (its /proc/PID/task count stays small) and its memory
per connection is reported; then every one of them makes a second request,
which must reach the provider. A client that sends its ClientHello and
stalls is closed at the header timeout with the same audit event as before
(client_handshake_timeout), without a thread; a parked client that sends
its next request one byte per TLS record is served; a parked connection is
closed at the idle timeout; the agent stops cleanly with connections parked.
Busy keep-alive connections are served on the event loop itself: 32 of
them making 30 requests each (some pipelined) all get their own answers,
and while they run the agent holds no thread per connection, and its metrics
show that only the few exchanges that needed a new upstream went to a
thread.

VIGIL_PARK_N sets how many connections hold (2000 by default; the issue's
figure is 10,000: VIGIL_PARK_N=10000).
"""
import json
import os
import re
import urllib.request
import subprocess
import sys
import time

import lib
from lib import check, test

import rig as rigmod

PY = rigmod.PY
TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "park_tools.py")
HOST = "api.openai.com"
GOOD, SHORT = "127.94.0.2", "127.94.0.3"
N = int(os.environ.get("VIGIL_PARK_N", "2000"))
HEADER_S, SHORT_IDLE_S = 3, 2
METRICS_PORT = lib.free_port()
LIMITS = "limits:\n  header_timeout: %%s\n  idle_timeout: %%s\n  max_connections: %d\n" % (N + 2000)
RIG = rigmod.Rig("icpark", {HOST: GOOD}, {"good": (GOOD, "good", 0), "short": (SHORT, "good", 0)},
                 endpoints=[HOST], log_level="info",
                 agent_extra=LIMITS % ("%ds" % HEADER_S, "120s") + "metrics: 127.0.0.1:%d\n" % METRICS_PORT)
AGENT, CA, CG, TMP, HOSTS = RIG.agent, RIG.ca, RIG.cg, RIG.tmp, RIG.hosts
AGENT.start()


def tasks(pid):
    return len(os.listdir("/proc/%d/task" % pid))


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def received(name, tag):
    return [r for r in RIG.received(name) if ("park %s-" % tag) in r.get("body", "")]


def spawn_tool(*args, hosts=HOSTS):
    return lib.spawn([PY, TOOLS] + [str(a) for a in args], cgroup=CG.path, hosts=hosts,
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def read_json(p, what):
    line = p.stdout.readline()
    check(line, "%s: the client printed nothing (exit %s)" % (what, p.poll()))
    return json.loads(line)


def settle(pid, ceiling, timeout=10.0):
    """Waits until the agent's thread count is at most ceiling; returns it."""
    deadline = time.time() + timeout
    while tasks(pid) > ceiling and time.time() < deadline:
        time.sleep(0.1)
    return tasks(pid)


code, _, p = RIG.curl("https://%s/v1/chat/completions" % HOST, '{"model":"gpt-4o-mini","messages":[]}')
check(code == 200, "warm-up request failed: %s %s" % (code, p.stderr[-300:]))
time.sleep(0.5)
BASE_THREADS = tasks(AGENT.proc.pid)


@test
def thousands_of_idle_connections_hold_no_threads_and_all_serve_again():
    pid = AGENT.proc.pid
    fds0, rss0 = fds(pid), rss_kb(pid)
    c = spawn_tool("hold", HOST, N, CA, "hold", 8)
    first = read_json(c, "first round")
    check(first["ok1"] == N, "only %d of %d connections made their first request: %s" % (
        first["ok1"], N, first["error"]))
    # Every serving thread ends once its client goes quiet.
    threads = settle(pid, BASE_THREADS + 2)
    rss1, fds1 = rss_kb(pid), fds(pid)
    kb = (rss1 - rss0) / N
    print("  %d idle intercepted connections: %d agent threads (%d before), RSS %d -> %d KB: %.1f KB per "
          "connection, %d fds" % (N, threads, BASE_THREADS, rss0, rss1, kb, fds1), flush=True)
    check(threads <= BASE_THREADS + 2, "%d threads with %d idle connections (%d before): a thread each?" % (
        threads, N, BASE_THREADS))
    check(fds1 - fds0 >= N, "the agent holds %d more fds for %d open connections: closed some?" % (fds1 - fds0, N))
    if not lib.SAN:
        # A thread (or the engine's buffers) kept per idle connection costs
        # 50 KB and more; the 16 KB target itself is measured by make bench
        # (proxy_bench.py, beside nginx): RSS over 2,000 connections moves
        # by a few KB with what else the machine does.
        check(kb <= 32, "%.1f KB of RSS per idle intercepted connection (a thread or buffers each?)" % kb)
    c.stdin.write("again\n")
    c.stdin.flush()
    second = read_json(c, "second round")
    check(second["ok2"] == N and second["nerrors"] == 0, "%d of %d second requests succeeded: %s" % (
        second["ok2"], N, second["errors"]))
    got = {r["body"] for r in received("good", "hold")}
    missing = [i for i in range(N) if not any(("hold-%d-2\"" % i) in b for b in got)]
    check(not missing, "the provider did not receive the second request of %d connections (e.g. %s)" % (
        len(missing), missing[:5]))
    check(settle(pid, BASE_THREADS + 2) <= BASE_THREADS + 2, "threads left after the second round: %d" % tasks(pid))
    c.stdin.close()
    read_json(c, "close")
    c.wait(30)
    # Every connection the clients closed is freed: its fd goes.
    deadline = time.time() + 10
    while fds(pid) > fds0 + 8 and time.time() < deadline:
        time.sleep(0.1)
    check(fds(pid) <= fds0 + 8, "%d fds after all clients closed (%d before)" % (fds(pid), fds0))


def metric(name):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % METRICS_PORT, timeout=5).read().decode()
    return sum(float(v) for v in re.findall(r"^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), text, re.M))


@test
def busy_keep_alive_connections_are_served_on_the_loop():
    n, rounds = 32, 30
    h0, r0 = metric("vigil_agent_intercept_thread_handoffs_total"), metric("vigil_agent_requests_total")
    pid = AGENT.proc.pid
    c = spawn_tool("busy", HOST, n, rounds, CA, "busy")
    samples = []
    deadline = time.time() + 300
    while c.poll() is None and time.time() < deadline:
        samples.append(tasks(pid))
        time.sleep(0.02)
    out, _ = c.communicate(timeout=30)
    check(out.strip(), "busy client printed nothing (exit %s)" % c.returncode)
    res = json.loads(out.strip().splitlines()[-1])
    samples.sort()
    median = samples[len(samples) // 2] if samples else 0
    print("  agent threads while %d connections were busy: median %d, max %d (%d before)" % (
        n, median, samples[-1] if samples else 0, BASE_THREADS), flush=True)
    # a thread per busy connection would be 32 more
    check(median <= BASE_THREADS + 4, "median %d agent threads while %d connections were busy (%d before)" % (
        median, n, BASE_THREADS))
    check(res["ok"] == n * rounds and not res["errors"], "%d of %d answers right: %s" % (
        res["ok"], n * rounds, res["errors"]))
    handoffs = metric("vigil_agent_intercept_thread_handoffs_total") - h0
    served = metric("vigil_agent_requests_total") - r0
    print("  %d requests on %d busy connections: %d handed to a thread" % (served, n, handoffs), flush=True)
    check(served >= n * rounds, "requests_total grew by %d for %d requests" % (served, n * rounds))
    # Each connection's first request opens an upstream on a thread; the
    # pool (4 per origin) and a retry on a stale pooled one add a few.
    check(handoffs <= 2 * n, "%d of %d exchanges handed to a thread: not served on the loop" % (
        handoffs, n * rounds))
    got = {r["body"] for r in received("good", "busy")}
    check(sum(1 for b in got if "park busy-" in b) >= n * rounds, "the provider saw %d of %d requests" % (
        len(got), n * rounds))


@test
def one_loop_is_not_held_by_a_slow_upstream_or_a_client_that_never_reads():
    """The attacker's view of one event loop for every connection: a client
    that pipelines requests and never reads its answers, and a request
    whose upstream takes 6 s to answer, must delay nobody else."""
    pid = AGENT.proc.pid
    rss0 = rss_kb(pid)
    slow = spawn_tool("slow", HOST, CA, 6000)
    flood = spawn_tool("flood", HOST, CA, 8)
    time.sleep(0.5)
    t0 = time.time()
    p = lib.run([PY, TOOLS, "busy", HOST, "4", "10", CA, "beside"], cgroup=CG.path, hosts=HOSTS, timeout=120)
    took = time.time() - t0
    check(p.stdout.strip(), "busy client printed nothing: %s" % p.stderr[-500:])
    res = json.loads(p.stdout.strip().splitlines()[-1])
    check(res["ok"] == 40 and not res["errors"], "requests beside the flood: %s" % res)
    print("  40 requests on 4 connections in %.2f s beside a 6 s upstream and a flooding client" % took, flush=True)
    check(took < 5, "40 requests took %.2f s: the loop waited for the slow upstream or the flood" % took)
    rss_mid = rss_kb(pid)
    sent = read_json(flood, "flood")["sent"]
    check(flood.wait(30) == 0, "flood client failed")
    out = read_json(slow, "slow")
    check(out["status"] == 200 and 5.5 <= out["elapsed_s"] < 12, "the slow request: %s" % out)
    slow.wait(30)
    print("  the flooding client wrote %d KB before the agent stopped reading; agent RSS %d -> %d KB" % (
        sent // 1024, rss0, rss_mid), flush=True)
    # back-pressure: the agent reads no further than the answers it can
    # hold (64 KB of them), so the flood stalls and costs little memory
    check(rss_mid - rss0 < 32 * 1024, "agent RSS grew by %d KB during the flood" % (rss_mid - rss0))
    check(AGENT.proc.poll() is None, "the agent died")
    code, _, p = RIG.curl("https://%s/v1/chat/completions" % HOST, '{"model":"gpt-4o-mini","messages":[]}')
    check(code == 200, "a request after the flood: %s" % code)


@test
def a_client_that_hangs_up_before_its_answer_ends_the_exchange():
    """Clients that close their connection while the provider is still
    thinking (6 s) over their request: the agent ends each exchange at the
    hang-up (on the event loop and on a serving thread alike), closes its
    upstream and audits it then, as nginx does (499), rather than holding
    the provider's answer, and its cost, for nobody."""
    n0 = len(AGENT.events("request"))
    t0 = time.time()
    p = lib.run([PY, TOOLS, "hangup", HOST, CA, "4", "6000", "0.5"], cgroup=CG.path, hosts=HOSTS, timeout=60)
    res = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else {}
    check(res.get("warm_ok") == 4, "hangup client: %s %s" % (p.stdout[-300:], p.stderr[-300:]))
    gone = []
    while time.time() < t0 + 10 and len(gone) < 8:
        gone = [e for e in AGENT.events("request")[n0:]
                if e.get("error") == "client closed the connection before the answer"]
        time.sleep(0.1)
    took = time.time() - t0
    print("  8 hung-up requests audited %.1f s after they were sent (the provider answers at 6 s)" % took,
          flush=True)
    check(len(gone) == 8, "%d of 8 hung-up requests audited as such: %s" % (
        len(gone), [(e.get("status"), e.get("error")) for e in AGENT.events("request")[n0:]][-10:]))
    check(took < 4.0, "the hung-up requests were audited %.1f s after they were sent: the agent waited "
          "for the provider's answer (6 s) instead of ending them at the hang-up (0.5 s)" % took)
    check(AGENT.proc.poll() is None, "the agent died")
    code, _, _ = RIG.curl("https://%s/v1/chat/completions" % HOST, '{"model":"gpt-4o-mini","messages":[]}')
    check(code == 200, "a request after the hang-ups: %s" % code)


@test
def stalled_handshakes_closed_at_header_timeout_without_threads():
    pid = AGENT.proc.pid
    n0 = len([e for e in AGENT.events("connection") if e.get("reason") == "client_handshake_timeout"])
    c = spawn_tool("stall", HOST, 100)
    time.sleep(1.0)
    threads = tasks(pid)
    res = read_json(c, "stall")
    closed = res["closed_after_s"]
    reasons = {}
    for e in AGENT.events("connection")[n0:]:
        reasons[e.get("reason")] = reasons.get(e.get("reason"), 0) + 1
    print("  stalled: closed after %.2f..%.2f s; connection events %s" % (min(closed), max(closed), reasons))
    check(all(x is not None for x in closed), "%d stalled handshakes still open after 30 s" % closed.count(None))
    check(threads <= BASE_THREADS + 2, "%d threads while 100 handshakes stalled (%d before)" % (threads, BASE_THREADS))
    check(min(closed) >= HEADER_S - 1.0 and max(closed) <= HEADER_S + 1.5,
          "stalled handshakes closed after %.2f..%.2f s, header_timeout is %d s" % (min(closed), max(closed), HEADER_S))
    evs = []
    deadline = time.time() + 5
    while len(evs) < n0 + 100 and time.time() < deadline:
        evs = [e for e in AGENT.events("connection") if e.get("reason") == "client_handshake_timeout"]
        time.sleep(0.1)
    evs = evs[n0:]
    check(len(evs) >= 100, "%d client_handshake_timeout events for 100 stalled clients" % len(evs))
    ev = evs[-1]
    check(ev["action"] == "intercept" and ev["error"] == "client TLS handshake timed out" and ev["sni"] == HOST,
          "event content: %s" % ev)
    check(ev["latency_ms"] >= (HEADER_S - 1) * 1000, "latency_ms %s" % ev["latency_ms"])
    check(not ev.get("rule"), "a timeout is not a CA refusal: rule %r" % ev.get("rule"))


@test
def parked_client_dribbling_its_next_request_is_served():
    p = lib.run([PY, TOOLS, "dribble", HOST, CA, "drib"], cgroup=CG.path, hosts=HOSTS, timeout=60)
    check(p.stdout.strip(), "dribble client printed nothing: %s" % p.stderr[-500:])
    res = json.loads(p.stdout.strip().splitlines()[-1])
    check(res["status2"] == 200, "request sent byte by byte after parking: %s" % res)
    check(any("drib-0-2" in r["body"] for r in received("good", "drib")),
          "the provider did not receive the dribbled request")
    check("echo: park drib-0-2" in res["body"], "answer %s" % res["body"])


os.makedirs(os.path.join(TMP, "short-hosts"), exist_ok=True)
SHORT_HOSTS = lib.hosts_file({HOST: SHORT}, os.path.join(TMP, "short-hosts"))


def short_agent():
    """The same set-up with a short idle_timeout (a second agent, once the first stopped)."""
    AGENT.stop()
    extra = "ca_cert: %s\nca_key: %s\nupstream_ca: %s\ntarget_addresses: [%s]\nendpoints: [%s]\n%s" % (
        CA, os.path.join(RIG.ca_dir, "intercept.key"), RIG.pki["ca_cert"], SHORT, HOST,
        LIMITS % ("1s", "%ds" % SHORT_IDLE_S))
    return lib.Agent(TMP, CG.path, extra=extra, name="short", log_level="info").start()


@test
def parked_connection_closed_at_idle_timeout_and_agent_stops_with_parked_ones():
    ag = short_agent()
    c = spawn_tool("hold", HOST, 50, CA, "idle", 2, hosts=SHORT_HOSTS)
    first = read_json(c, "first round")
    check(first["ok1"] == 50, "first requests: %s" % first)
    c.stdin.write("watch\n")
    c.stdin.flush()
    closed = read_json(c, "watch")["closed_after_s"]
    c.stdin.close()
    c.wait(30)
    check(all(x is not None for x in closed), "%d of 50 parked connections still open 30 s after their answer"
          % closed.count(None))
    print("  parked connections closed %.2f..%.2f s after their answer (idle_timeout %d s)" % (
        min(closed), max(closed), SHORT_IDLE_S), flush=True)
    check(min(closed) >= SHORT_IDLE_S - 0.2 and max(closed) <= SHORT_IDLE_S + 1.5,
          "parked connections closed %.2f..%.2f s after their answer, idle_timeout %d s" % (
              min(closed), max(closed), SHORT_IDLE_S))
    # A client that stops reading its answers is let go once nothing it
    # was sent was taken for idle_timeout (a write that stalls fails, on
    # the loop as on a thread).
    f = lib.run([PY, TOOLS, "flood", HOST, CA, "2", "30"], cgroup=CG.path, hosts=SHORT_HOSTS, timeout=90)
    check(f.stdout.strip(), "flood client printed nothing: %s" % f.stderr[-500:])
    fr = json.loads(f.stdout.strip().splitlines()[-1])
    print("  a client that never reads: reset %s s after its flood (idle_timeout %d s)" % (
        fr["reset_after_s"], SHORT_IDLE_S), flush=True)
    check(fr["reset_after_s"] is not None and fr["reset_after_s"] <= SHORT_IDLE_S + 8,
          "a client that never reads its answers was never let go: %s" % fr)
    quiet = [e for e in ag.events("connection") if e.get("reason") in ("client_handshake_timeout",
                                                                       "client_rejected_interception")]
    check(not quiet, "an idle close was audited as a handshake failure: %s" % quiet[:1])
    # New ones park, then the agent stops with them parked: it frees them
    # (under SAN=1, LeakSanitizer fails the exit status otherwise).
    c = spawn_tool("hold", HOST, 20, CA, "stop", 2, hosts=SHORT_HOSTS)
    check(read_json(c, "before stop")["ok1"] == 20, "connections before stop")
    status = ag.stop()
    check(status == 0, "agent exit status %s with parked connections: %s" % (status, ag.log_tail(80)))
    c.stdin.close()
    c.wait(30)


if __name__ == "__main__":
    lib.main()
