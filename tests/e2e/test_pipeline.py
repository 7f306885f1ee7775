"""End-to-end fault tests of the audit pipeline: the real vigil-agent (BPF
attached to a scratch cgroup) shipping to the real vigil-collector over
mutual TLS, with faults injected:

- collector_outage: the collector is down while 20,000 events are
  produced, then started: every event arrives, none is stored twice, and
  `vigil-collector verify` finds the chain intact;
- ack_lost_after_commit: a relay between agent and collector cuts the
  connection right after the collector's ack (sent only after commit)
  instead of delivering it, again and again: no duplicates stored, nothing
  missing;
- kill9_during_shipping: the agent is killed -9 while shipping, then
  restarted: nothing acknowledged is lost, everything spooled arrives, and
  the chain continues across the restart with an agent_start event.

Events are produced by connecting straight to the agent's listener (each
connection is audited as kind "connection"). Each test prints PASS/FAIL.
"""
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check, test  # noqa: E402

from colrig import COLLECTOR, Collector, chain_ok, collector_conf, produce, seqs_report, wait_stored as _wait_stored  # noqa: E402
AGENT_ID = "ws-pipeline"


def agent_extra(addr, enrolled, batch=500):
    return collector_conf(addr, enrolled, AGENT_ID, "100ms", "ship_batch_events: %d\nspool_fsync: batch\n" % batch)


def wait_stored(col, pred, timeout):
    return _wait_stored(col, AGENT_ID, pred, timeout)


def spool_events_count(agent):
    return len(agent.events())


@test
def collector_outage_20000_events_all_arrive_once():
    tmp = tempfile.mkdtemp(prefix="vigil-pipe-")
    lib.at_cleanup(lambda: shutil.rmtree(tmp, ignore_errors=True))
    cg = lib.Scratch("pipe")
    col = Collector(tmp)
    enrolled = col.enroll(AGENT_ID)
    agent = lib.Agent(tmp, cg.path, extra=agent_extra("127.0.0.1:%d" % col.port, enrolled),
                      log_level="info").start()
    produce(agent.port, 20000)
    deadline = time.time() + 60
    while len(agent.events()) < 20001 and time.time() < deadline:
        time.sleep(0.2)
    n_local = len(agent.events())
    check(n_local >= 20001, "the agent audited only %d events" % n_local)
    col.start()
    evs = wait_stored(col, lambda e: len(e) >= n_local, 120)
    seqs, dups, mx, missing = seqs_report(evs)
    check(dups == 0, "%d duplicate events stored" % dups)
    check(len(evs) >= n_local and not missing,
          "stored %d of %d events; missing seqs %s" % (len(evs), n_local, missing[:10]))
    err = chain_ok(evs)
    check(err is None, err)
    check(agent.stop() == 0, "agent did not stop cleanly")
    evs = wait_stored(col, lambda e: any(x["kind"] == "agent_stop" for x in e), 20)
    check(any(x["kind"] == "agent_stop" for x in evs), "agent_stop never reached the collector")
    rc, out = col.verify()
    check(rc == 0, "vigil-collector verify: %s" % out[-500:])


class CuttingRelay:
    """TCP relay agent -> collector that, on every connection, delivers the
    first ack after a batch and then swallows the second one and cuts the
    connection: the collector has committed that batch, the agent never
    hears so and must resend it."""

    def __init__(self, target_port):
        self.target = target_port
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.cuts = 0
        self.stop = False
        threading.Thread(target=self.accept_loop, daemon=True).start()
        lib.at_cleanup(self.close)

    def close(self):
        self.stop = True
        self.ls.close()

    def accept_loop(self):
        while not self.stop:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self.relay, args=(c,), daemon=True).start()

    def relay(self, c):
        try:
            u = socket.create_connection(("127.0.0.1", self.target), 5)
        except OSError:
            c.close()
            return
        up_since_ack = 0
        acks = 0
        try:
            while not self.stop:
                r, _, _ = select.select([c, u], [], [], 1.0)
                if c in r:
                    d = c.recv(65536)
                    if not d:
                        break
                    u.sendall(d)
                    up_since_ack += len(d)
                if u in r:
                    d = u.recv(65536)
                    if not d:
                        break
                    # Data from the collector after a batch went up is its
                    # ack (session tickets come right after the handshake,
                    # before any batch).
                    if up_since_ack > 1500:
                        acks += 1
                        up_since_ack = 0
                        if acks == 2:
                            self.cuts += 1
                            break
                    c.sendall(d)
        except OSError:
            pass
        for s in (c, u):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@test
def ack_lost_after_commit_no_duplicates():
    tmp = tempfile.mkdtemp(prefix="vigil-pipe-")
    lib.at_cleanup(lambda: shutil.rmtree(tmp, ignore_errors=True))
    cg = lib.Scratch("pipe")
    col = Collector(tmp)
    enrolled = col.enroll(AGENT_ID)
    col.start()
    relay = CuttingRelay(col.port)
    agent = lib.Agent(tmp, cg.path, extra=agent_extra("127.0.0.1:%d" % relay.port, enrolled, batch=200),
                      log_level="info").start()
    for _ in range(10):
        produce(agent.port, 300, threads=2)
        time.sleep(0.3)
    deadline = time.time() + 30
    while len(agent.events()) < 3001 and time.time() < deadline:
        time.sleep(0.2)
    n_local = len(agent.events())
    evs = wait_stored(col, lambda e: len(e) >= n_local, 120)
    seqs, dups, mx, missing = seqs_report(evs)
    check(relay.cuts >= 3, "the relay cut only %d connections after an ack" % relay.cuts)
    check(dups == 0, "%d duplicate events stored after lost acks" % dups)
    check(len(evs) >= n_local and not missing,
          "stored %d of %d; missing %s" % (len(evs), n_local, missing[:10]))
    err = chain_ok(evs)
    check(err is None, err)
    rc, out = col.verify()
    check(rc == 0, "vigil-collector verify: %s" % out[-500:])


@test
def kill9_during_shipping_chain_continues():
    tmp = tempfile.mkdtemp(prefix="vigil-pipe-")
    lib.at_cleanup(lambda: shutil.rmtree(tmp, ignore_errors=True))
    cg = lib.Scratch("pipe")
    col = Collector(tmp)
    enrolled = col.enroll(AGENT_ID)
    col.start()
    extra = agent_extra("127.0.0.1:%d" % col.port, enrolled, batch=200)
    agent = lib.Agent(tmp, cg.path, extra=extra, log_level="info").start()
    stopper = threading.Event()

    def load():
        while not stopper.is_set():
            produce(agent.port, 100, threads=2)
    t = threading.Thread(target=load)
    t.start()
    evs = wait_stored(col, lambda e: len(e) >= 1000, 60)
    agent.kill9()
    stopper.set()
    t.join()
    acked_before = set(e["seq"] for e in col.events() if e.get("agent_id") == AGENT_ID)
    check(len(acked_before) >= 1000, "only %d events shipped before the kill" % len(acked_before))
    spooled = len(agent.events())
    # restart on the same spool: the chain continues
    agent2 = lib.Agent(tmp, cg.path, extra=extra, log_level="info").start()
    produce(agent2.port, 50)
    check(agent2.stop() == 0, "restarted agent did not stop cleanly")
    evs = wait_stored(col, lambda e: any(x["kind"] == "agent_stop" for x in e), 60)
    seqs, dups, mx, missing = seqs_report(evs)
    got = set(seqs)
    check(acked_before <= got, "%d acknowledged events lost" % len(acked_before - got))
    check(dups == 0, "%d duplicates stored" % dups)
    check(not missing, "missing seqs after restart: %s" % missing[:10])
    check(mx >= spooled, "collector has up to seq %d, the killed agent had spooled %d" % (mx, spooled))
    starts = sorted(e["seq"] for e in evs if e["kind"] == "agent_start")
    check(len(starts) == 2, "agent_start events at %s" % starts)
    by = {e["seq"]: e for e in evs}
    s2 = starts[1]
    check(by[s2]["prev_hash"] == by[s2 - 1]["hash"],
          "the restart's agent_start (seq %d) does not chain to seq %d" % (s2, s2 - 1))
    check(by[s2]["boot_id"] != by[s2 - 1]["boot_id"], "boot id did not change across the restart")
    err = chain_ok(evs)
    check(err is None, err)
    rc, out = col.verify()
    check(rc == 0, "vigil-collector verify: %s" % out[-500:])


if __name__ == "__main__":
    if not os.path.exists(COLLECTOR):
        print("FAIL pipeline: %s not built" % COLLECTOR)
        sys.exit(1)
    lib.main()
