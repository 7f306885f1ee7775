"""End-to-end: an idle agent does not wake for nothing.

The real vigil-agent (BPF attached to a scratch cgroup) shipping to the real
vigil-collector: after some traffic has been audited, shipped and stored,
and its connections have closed, the agent's threads together wake at most
about once a second (the loop's housekeeping timer). Wake-ups are counted as
the context switches of every thread of the process (/proc/PID/task/*/status),
which is what a laptop on battery pays for: a 100 ms tick anywhere (the loop,
the shipper, the spool's flusher) shows up as ten a second.

And nothing waits for a tick that is gone: events produced after an idle
period still reach the collector promptly (the shipper sleeps until the
spool has durable records, not on a timer). The connection deadlines that
are timers now are covered where they matter: test_coverage (ClientHello
deadline), test_hostile (slow and idle clients), test_proxy (proxy heads).
"""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check, test  # noqa: E402

from colrig import Collector, collector_conf, produce, wait_stored  # noqa: E402

AGENT_ID = "ws-idle"
MEASURE_S = 8.0


def switches(pid):
    """Voluntary + involuntary context switches of every thread of pid."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass   # a thread that ended meanwhile
    return total


TMP = tempfile.mkdtemp(prefix="vigil-idle-")
lib.at_cleanup(lambda: shutil.rmtree(TMP, ignore_errors=True))
CG = lib.Scratch("idle")
COL = Collector(TMP)
ENROLLED = COL.enroll(AGENT_ID)
COL.start()
AGENT = lib.Agent(TMP, CG.path, log_level="info", extra=collector_conf(
    "127.0.0.1:%d" % COL.port, ENROLLED, AGENT_ID, extra="spool_fsync: batch\n")).start()


@test
def idle_agent_wakes_at_most_about_once_a_second():
    produce(AGENT.port, 20)
    evs = wait_stored(COL, AGENT_ID, lambda e: len(e) >= 21, 30)
    check(len(evs) >= 21, "only %d events stored before the idle period" % len(evs))
    time.sleep(2.5)   # let the spool flush, the shipper ack, the connections go
    pid = AGENT.proc.pid
    before, t0 = switches(pid), time.monotonic()
    time.sleep(MEASURE_S)
    woke, dt = switches(pid) - before, time.monotonic() - t0
    rate = woke / dt
    print("  idle agent: %d wake-ups in %.1f s (%.2f/s)" % (woke, dt, rate))
    # One housekeeping wake a second (plus the odd scheduler preemption on a
    # loaded machine); a 100 ms tick anywhere would give 10/s or more.
    check(rate <= 1.6, "idle agent woke %.2f times a second (%d in %.1f s)" % (rate, woke, dt))


@test
def events_after_idle_still_shipped_promptly():
    n0 = len([e for e in COL.events() if e.get("agent_id") == AGENT_ID])
    t0 = time.monotonic()
    produce(AGENT.port, 3)
    evs = wait_stored(COL, AGENT_ID, lambda e: len(e) >= n0 + 3, 10)
    took = time.monotonic() - t0
    check(len(evs) >= n0 + 3, "events made after an idle period did not arrive (%d of %d)"
          % (len(evs), n0 + 3))
    # ship_interval is 200 ms and spool fsync batches by 100 ms: well under 3 s.
    check(took < 3.0, "events made after an idle period took %.1f s to be stored" % took)


if __name__ == "__main__":
    lib.main()
