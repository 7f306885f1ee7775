"""End-to-end: audit that survives faults on the workstation itself, and an
agent whose identity cannot silently disagree with its certificate.

The real agent (BPF redirect into a scratch cgroup, TLS interception of a
fake provider) ships to the real vigil-collector over mutual TLS. Faults:
kill -9 while a streamed answer flows (both fail modes), a spool on a tiny
tmpfs that fills, clients that buffer huge bodies and stall; and
configuration slips: an agent_id that is not the enrolled one, an agent
revoked at the collector.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check, test  # noqa: E402
import rig as rigmod  # noqa: E402
from colrig import COLLECTOR, Collector, chain_ok, collector_conf, produce, seqs_report  # noqa: E402

GOOD = "127.31.0.2"
COL_HOST = "127.31.0.3"
RIG = rigmod.Rig("durable", {"api.openai.com": GOOD}, {"good": (GOOD, "good", 0)},
                 endpoints=["api.openai.com"])
TOOLS = os.path.join(RIG.tmp, "hostile_tools.py")
shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile_tools.py"), TOOLS)
os.chmod(TOOLS, 0o755)


def collector_block(col, enrolled):
    return collector_conf("%s:%d" % (col.host, col.port), enrolled, None, "100ms", "spool_fsync: batch\n")


def new_collector(tag):
    tmp = tempfile.mkdtemp(prefix="vigil-durable-%s-" % tag)
    os.chmod(tmp, 0o755)
    lib.at_cleanup(lambda: shutil.rmtree(tmp, ignore_errors=True))
    return tmp, Collector(tmp, host=COL_HOST)


def stored(col, agent_id, pred, timeout):
    deadline = time.time() + timeout
    while True:
        evs = [e for e in col.events() if e.get("agent_id") == agent_id]
        if pred(evs) or time.time() > deadline:
            return evs
        time.sleep(0.3)


def rig_agent():
    if RIG.agent.proc is None or RIG.agent.proc.poll() is not None:
        RIG.agent.start()
    return RIG.agent


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@test
def bytes_up_counts_the_request_once():
    rig_agent()
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * (1 << 20)}]})
    payload = ("POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nAuthorization: Bearer sk-test\r\n"
               "Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
               % (len(body), body)).encode()
    p = lib.run([rigmod.PY, TOOLS, "raw", RIG.ca, "api.openai.com", "-"], cgroup=RIG.cg.path,
                uid=lib.NOBODY, hosts=RIG.hosts, timeout=60, input=payload.hex())
    res = json.loads(p.stdout.strip().splitlines()[-1])
    check(" 200 " in res["status_line"] + " ", "status %s" % res["status_line"])
    evs = RIG.request_events(lambda e: e["path"] == "/v1/chat/completions" and e["bytes_up"] > (1 << 20))
    check(evs, "no request event")
    check(evs[-1]["bytes_up"] == len(payload),
          "bytes_up %d, the client sent %d (head + body)" % (evs[-1]["bytes_up"], len(payload)))


@test
def agent_id_mismatch_refused_at_start():
    tmp, col = new_collector("idm")
    enrolled = col.enroll("ws-042")
    cg = lib.Scratch("idm")
    agent = lib.Agent(tmp, cg.path, name="idm", extra="agent_id: laptop-7\n" + collector_block(col, enrolled))
    p = subprocess.run([lib.AGENT, "--config", agent.config, "--check"], capture_output=True, text=True, timeout=30)
    check(p.returncode == 2, "--check exit %d: %s" % (p.returncode, p.stdout + p.stderr))
    check("'laptop-7'" in p.stderr and "'ws-042'" in p.stderr and "%s:" % agent.config in p.stderr,
          "--check does not name the file and both ids: %s" % p.stderr)
    p = subprocess.run([lib.AGENT, "--config", agent.config], capture_output=True, text=True, timeout=30)
    check(p.returncode == 2, "agent started (exit %d) with a mismatched agent_id" % p.returncode)
    check("'laptop-7'" in p.stderr and "'ws-042'" in p.stderr, "start-up error: %s" % p.stderr[-400:])


@test
def unset_agent_id_taken_from_certificate():
    tmp, col = new_collector("idc")
    enrolled = col.enroll("ws-042")
    col.start()
    cg = lib.Scratch("idc")
    agent = lib.Agent(tmp, cg.path, name="idc", extra=collector_block(col, enrolled)).start()
    produce(agent.port, 20, threads=2)
    check(agent.stop() == 0, "agent did not stop cleanly")
    local = agent.events()
    check(local and all(e["agent_id"] == "ws-042" for e in local),
          "local events carry agent_id %s" % sorted({e["agent_id"] for e in local}))
    evs = stored(col, "ws-042", lambda e: any(x["kind"] == "agent_stop" for x in e), 30)
    check(len(evs) == len(local), "collector holds %d of %d events" % (len(evs), len(local)))
    rc, out = col.verify()
    check(rc == 0, "verify: %s" % out[-400:])


@test
def revoked_agent_stops_shipping_and_keeps_its_spool():
    tmp, col = new_collector("rev")
    enrolled = col.enroll("ws-rev")
    col.start()
    cg = lib.Scratch("rev")
    mport = lib.free_port(COL_HOST)
    agent = lib.Agent(tmp, cg.path, name="rev", extra="ship_batch_events: 5\nmetrics: %s:%d\n"
                      % (COL_HOST, mport) + collector_block(col, enrolled)).start()
    produce(agent.port, 10, threads=1)
    stored(col, "ws-rev", lambda e: len(e) >= 10, 20)
    subprocess.run([COLLECTOR, "revoke", "--agent-id", "ws-rev", "--config",
                    col.config], check=True, capture_output=True)
    time.sleep(0.5)   # a batch already on its way may still be committed
    first_after = len(agent.events()) + 1
    produce(agent.port, 200, threads=2)
    time.sleep(3)
    metrics = lib.run(["curl", "-sS", "http://%s:%d/metrics" % (COL_HOST, mport)], timeout=10).stdout
    check(re.search(r"^vigil_agent_shipping_halted 1$", metrics, re.M),
          "no shipping_halted gauge at 1: %s" % [l for l in metrics.splitlines() if "halted" in l])
    qdir = os.path.join(agent.dir, "spool", "quarantine")
    check(not os.listdir(qdir), "segments quarantined after a rejection about the agent: %s" % os.listdir(qdir))
    log = open(agent.stderr_path).read()
    check(len(re.findall(r"shipping stopped", log)) == 1, "shipping-stopped error logged %d times"
          % len(re.findall(r"shipping stopped", log)))
    gaps = [e for e in agent.events("gap")]
    check(not gaps, "gap events for a kept spool: %s" % gaps[:2])
    late = [e["seq"] for e in col.events() if e["seq"] >= first_after]
    check(not late, "the collector stored events of a revoked agent: seqs %s" % late[:5])
    # revocation undone + restart: everything kept arrives
    subprocess.run([COLLECTOR, "revoke", "--undo", "--agent-id", "ws-rev",
                    "--config", col.config], check=True, capture_output=True)
    check(agent.stop() == 0, "agent did not stop cleanly")
    agent.start()
    evs = stored(col, "ws-rev", lambda e: len(e) >= len(agent.events()), 30)
    local = agent.events()
    seqs, dups, mx, missing = seqs_report(evs)
    check(len(evs) == len(local) and not missing and not dups,
          "collector holds %d of %d events, missing %s" % (len(evs), len(local), missing[:10]))


def kill9_mid_stream(fail_mode, addr):
    tmp, col = new_collector("k9" + fail_mode)
    agent_id = "ws-k9-" + fail_mode
    enrolled = col.enroll(agent_id)
    col.start()
    rig = rigmod.Rig("k9" + fail_mode, {"api.openai.com": addr}, {"good": (addr, "good", 0)},
                     endpoints=["api.openai.com"],
                     agent_extra="fail_mode: %s\n" % fail_mode + collector_block(col, enrolled))
    agent = rig.agent.start()
    for _ in range(3):
        code, body, p = rig.curl("https://api.openai.com/v1/chat/completions", CHAT)
        check(code == 200, "warm-up request: %s %s" % (code, p.stderr))
    stream = json.dumps({"model": "gpt-4o-mini", "stream": True,
                         "messages": [{"role": "user", "content": "one two three four five six seven"}]})
    client = lib.spawn(["curl", "-sS", "-N", "--max-time", "30", "--cacert", rig.ca, "-H", "Authorization: Bearer sk-test",
                        "-H", "Content-Type: application/json", "-H", "x-fake-delay-ms: 800", "--data-binary", stream,
                        "https://api.openai.com/v1/chat/completions"], cgroup=rig.cg.path, uid=lib.NOBODY,
                       hosts=rig.hosts, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 15
    while len(rig.received()) < 4 and time.time() < deadline:
        time.sleep(0.05)
    check(len(rig.received()) == 4, "the streamed request did not reach the provider")
    time.sleep(1.0)   # the answer is flowing
    agent.kill9()
    client.wait(40)
    agent.start()
    code, body, p = rig.curl("https://api.openai.com/v1/chat/completions", CHAT)
    check(code == 200, "request after the restart: %s %s" % (code, p.stderr))
    evs = stored(col, agent_id, lambda e: sum(x["kind"] == "request" for x in e) >= 5, 30)
    check(agent.stop() == 0, "agent did not stop cleanly")
    evs = stored(col, agent_id, lambda e: any(x["kind"] == "agent_stop" for x in e), 30)
    reqs = [e for e in evs if e["kind"] == "request"]
    received = rig.received()
    check(len(reqs) == len(received) == 5, "%d request events for %d requests the provider received"
          % (len(reqs), len(received)))
    cut = [e for e in reqs if e.get("error") == "agent_stopped"]
    check(len(cut) == 1, "incomplete requests: %s" % [(e.get("path"), e.get("error")) for e in reqs])
    c = cut[0]
    check(c["path"] == "/v1/chat/completions" and c["sni"] == "api.openai.com" and c["model"] == "gpt-4o-mini"
          and c["uid"] == lib.NOBODY and c["exe"].endswith("curl") and c["action"],
          "the incomplete request lacks what was known before forwarding: %s" % c)
    starts = [e for e in evs if e["kind"] == "agent_start"]
    check(len(starts) == 2, "%d agent_start events" % len(starts))
    check(starts[1].get("error") == "unclean_stop" and "previous_stop=unclean" in starts[1]["reason"]
          and "open_exchanges=1" in starts[1]["reason"], "restart's agent_start: %s / %s"
          % (starts[1].get("error"), starts[1].get("reason")))
    check(not starts[0].get("error"), "first start claims an unclean stop: %s" % starts[0].get("reason"))
    seqs, dups, mx, missing = seqs_report(evs)
    check(not dups and not missing, "dups %d, missing %s" % (dups, missing[:10]))
    rc, out = col.verify()
    check(rc == 0, "verify: %s" % out[-400:])


CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]})


@test
def kill9_during_stream_fail_open():
    kill9_mid_stream("open", "127.31.0.10")


@test
def kill9_during_stream_fail_closed():
    kill9_mid_stream("closed", "127.31.0.11")


@test
def stalled_huge_bodies_stay_within_the_buffer_budget():
    """60 clients each announce a 15 MiB body, send 14 MiB and stall: the
    agent buffers at most limits.max_buffered_bytes (default 256 MiB) of
    them, answers the rest 503 with Retry-After, and serves a normal client
    meanwhile; its RSS stays below the budget plus a fixed overhead."""
    agent = rig_agent()
    pid = agent.proc.pid
    rss0 = rss_kb(pid)
    peak = [rss0]
    stop = []

    def sample():
        while not stop:
            try:
                peak[0] = max(peak[0], rss_kb(pid))
            except OSError:
                return
            time.sleep(0.1)
    import threading
    t = threading.Thread(target=sample)
    t.start()
    p = lib.spawn([rigmod.PY, TOOLS, "stall", RIG.ca, "api.openai.com", "60", str(15 << 20), str(14 << 20), "60"],
                  cgroup=RIG.cg.path, uid=lib.NOBODY, hosts=RIG.hosts, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    try:
        res = json.loads(line)
    except ValueError:
        res = None
    code, body, cp = RIG.curl("https://api.openai.com/v1/chat/completions", CHAT)
    during = rss_kb(pid)
    p.kill()
    p.wait()
    time.sleep(1.5)
    after = rss_kb(pid)
    stop.append(1)
    t.join()
    check(res and res["stalled"] == 60, "the stalling client did not finish sending: %r" % line[:200])
    check(code == 200, "a normal client was not served while 60 bodies stalled: %s %s" % (code, cp.stderr))
    refused = [a for a in res["answers"] if a.startswith("HTTP/1.1 503")]
    check(len(refused) >= 40, "only %d of 60 stalled bodies refused: %s" % (len(refused), res["answers"][:3]))
    check(all("Retry-After:" in a for a in refused), "503 without Retry-After: %s" % refused[0])
    evs = agent.events("request")
    check(sum(e.get("reason") == "overloaded" for e in evs) >= len(refused), "refusals not audited")
    print("   RSS kB: before %d, peak %d, with 60 stalled %d, after they left %d" % (rss0, peak[0], during, after))
    if not lib.SAN:
        limit = rss0 + (256 << 10) + (64 << 10)
        check(peak[0] < limit, "peak RSS %d kB above budget + overhead (%d kB)" % (peak[0], limit))
        check(after < rss0 + (64 << 10), "buffers not given back: %d kB after, %d before" % (after, rss0))


@test
def full_disk_is_one_exact_gap_per_loss():
    """The spool on a 4 MiB tmpfs that another file fills while requests
    flow, then frees: the agent serves throughout, and at the collector every
    seq is delivered or inside exactly one gap range (ranges never overlap),
    so delivered request events plus the requests inside gaps equal the
    requests the provider received."""
    tmp, col = new_collector("enospc")
    agent_id = "ws-enospc"
    enrolled = col.enroll(agent_id)
    col.start()
    fs = os.path.join(tmp, "fs")
    os.makedirs(fs)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "vigil-test", fs], check=True)
    lib.at_cleanup(lambda: subprocess.run(["umount", "-l", fs]))
    rig = rigmod.Rig("enospc", {"api.openai.com": "127.31.0.12"}, {"good": ("127.31.0.12", "good", 0)},
                     endpoints=["api.openai.com"], log_level="info",
                     agent_extra=collector_block(col, enrolled))
    with open(rig.agent.config) as f:
        text = re.sub(r"(?m)^spool_dir: .*$", "spool_dir: %s/spool" % fs, f.read())
    with open(rig.agent.config, "w") as f:
        f.write(text)
    agent = rig.agent.start()
    check(os.path.isdir(os.path.join(fs, "spool", "segments")), "the spool is not on the tmpfs")
    results, stop = [], []

    def load():
        while not stop:
            p = lib.run([rigmod.PY, TOOLS, "burst", rig.ca, "api.openai.com", "40"], cgroup=rig.cg.path,
                        uid=lib.NOBODY, hosts=rig.hosts, timeout=60)
            try:
                results.append(json.loads(p.stdout.strip().splitlines()[-1]))
            except (IndexError, ValueError):
                results.append({"sent": 1, "ok": 0, "stderr": p.stderr[-300:]})
    import threading
    t = threading.Thread(target=load)
    t.start()
    time.sleep(2)
    filler = os.path.join(fs, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)

    def fill():
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
    # Kept full for the whole window: the shipper deletes delivered
    # segments meanwhile, and space it frees must not let the spool off.
    until = time.monotonic() + 4
    while time.monotonic() < until:
        fill()
        time.sleep(0.02)
    os.close(fd)
    os.unlink(filler)
    time.sleep(2)
    stop.append(1)
    t.join()
    sent = sum(r["sent"] for r in results)
    ok = sum(r["ok"] for r in results)
    check(ok == sent and sent > 100, "the agent did not serve throughout: %d of %d answered %s"
          % (ok, sent, [r for r in results if r["ok"] != r["sent"]][:2]))
    check(agent.stop() == 0, "agent did not stop cleanly")
    agent.start()   # ships what the stop left
    evs = stored(col, agent_id, lambda e: any(x["kind"] == "agent_stop" for x in e) and
                 len([x for x in e if x["kind"] == "agent_start"]) == 2, 60)
    check(agent.stop() == 0, "agent did not stop cleanly")
    evs = stored(col, agent_id, lambda e: len([x for x in e if x["kind"] == "agent_stop"]) == 2, 60)
    seqs, dups, mx, missing = seqs_report(evs)
    check(not dups, "%d duplicates" % dups)
    gaps = sorted((e["gap_first_seq"], e["gap_last_seq"], e["gap_count"], e.get("reason") or "")
                  for e in evs if e["kind"] == "gap")
    check(gaps, "no gap recorded although the disk was full")
    covered = {}
    for a, b, n, _ in gaps:
        check(n == b - a + 1, "gap %d..%d says %d events" % (a, b, n))
        for q in range(a, b + 1):
            check(q not in covered, "seq %d in two gap ranges" % q)
            check(q not in set(seqs), "seq %d both delivered and in a gap" % q)
            covered[q] = True
    # One loss, one record. Two records may touch only when they tell two
    # losses at two moments: records the shipper held when the disk dropped
    # them are lost only if the stop comes before it delivers them.
    for (a1, b1, _, r1), (a2, b2, _, r2) in zip(gaps, gaps[1:]):
        check(b1 + 1 != a2 or r1 != r2, "one contiguous loss split into two gap records: %d..%d, %d..%d"
              % (a1, b1, a2, b2))
    holes = [q for q in missing if q not in covered]
    check(not holes, "seqs neither delivered nor in a gap: %s" % holes[:10])
    local = {e["seq"]: e for e in agent.events()}
    received = len(rig.received())
    delivered = sum(1 for e in evs if e["kind"] == "request")
    in_gaps = sum(1 for q in covered if local.get(q, {}).get("kind") == "request")
    check(received == sent, "the provider received %d, the client sent %d" % (received, sent))
    check(delivered + in_gaps == received, "%d delivered + %d in gaps != %d requests received"
          % (delivered, in_gaps, received))
    gap_lines = sum(1 for e in agent.events("gap"))
    check(gap_lines == len(gaps), "%d gap lines in the JSON log for %d gap records" % (gap_lines, len(gaps)))
    print("   %d requests, %d delivered, %d in %d gap ranges %s" % (received, delivered, in_gaps, len(gaps),
                                                                     [(a, b) for a, b, _, _ in gaps][:6]))


@test
def thousand_slow_uploads_stay_bounded():
    """1,000 connections each announce a 1 MiB body, send 64 KiB of it and
    stall: memory stays within the buffer budget, plus the per-connection
    allowance and thread, plus a fixed overhead."""
    agent = rig_agent()
    pid = agent.proc.pid
    rss0 = rss_kb(pid)
    p = lib.spawn([rigmod.PY, TOOLS, "stall", RIG.ca, "api.openai.com", "1000", str(1 << 20), str(64 << 10), "5"],
                  cgroup=RIG.cg.path, uid=lib.NOBODY, hosts=RIG.hosts, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    during = rss_kb(pid)
    code, body, cp = RIG.curl("https://api.openai.com/v1/chat/completions", CHAT)
    p.wait(60)
    time.sleep(1.5)
    after = rss_kb(pid)
    res = json.loads(line) if line.startswith("{") else {}
    check(res.get("stalled") == 1000, "the client did not open 1000 uploads: %r" % line[:200])
    check(code == 200, "a normal client was not served during 1000 slow uploads: %s" % code)
    print("   RSS kB: before %d, with 1000 slow uploads %d, after %d" % (rss0, during, after))
    if not lib.SAN:
        limit = rss0 + (256 << 10) + 1000 * 192 + (64 << 10)
        check(during < limit, "RSS %d kB above budget + allowance + overhead (%d kB)" % (during, limit))


if __name__ == "__main__":
    lib.main()
