#!/usr/bin/env python3
"""Vigil WebSocket benchmark: what the agent adds to one Realtime message.

Owns: N timed round trips of one Realtime text event (conversation.item.create
with a 300-byte user text -> conversation.item.created echoing it) on one
session to the fake Realtime server (tests/fakes/fake_realtime.py), once
direct and once through the agent (real BPF redirect from a scratch cgroup);
prints the median and p90 round trip of each and the median added per
message (one client event inspected by the request engine + one server event
read by the answer engine, both re-framed). Must never: touch anything
outside loopback 127.82.0.0/16, its cgroup and temp dir, or leave a process
behind (lib.py's cleanups stop them by pid). Exits 1 only when a measurement
could not be taken.

Usage (root): BUILD=$PWD/build python3 tests/bench/ws_bench.py [--n 2000]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import lib  # noqa: E402
import rig as rigmod  # noqa: E402

ADDR = "127.82.0.3"
HOST = "api.openai.com"


def run(n, text, rig, through):
    steps = json.dumps([{"rtt": n, "text": text}, {"close": 1000}])
    argv = [rigmod.PY, os.path.join(rigmod.CLIENTS, "ws_realtime.py"), "--host", HOST, "--path",
            "/v1/realtime?model=gpt-realtime", "--cafile", rig.ca if through else rig.pki["ca_cert"],
            "--steps", steps, "--timeout", "60"]
    p = lib.run(argv, cgroup=rig.cg.path if through else None, hosts=rig.hosts, timeout=600)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    if out.get("status") != 101 or len(out.get("rtt_us", [])) != n:
        raise SystemExit("measurement failed: %s %s" % (out, p.stderr[-500:]))
    return sorted(out["rtt_us"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    a = ap.parse_args()
    rig = rigmod.Rig("wsbench", {HOST: ADDR}, {}, extra_targets=[ADDR], log_level="info")
    rec = os.path.join(rig.tmp, "fake.jsonl")
    fake = lib.spawn([rigmod.PY, os.path.join(lib.ROOT, "tests", "fakes", "fake_realtime.py"), "--listen",
                      "%s:443" % ADDR, "--cert", rig.pki["good_cert"], "--key", rig.pki["good_key"],
                      "--record", rec], stdout=subprocess.PIPE, text=True)
    if "fake-realtime ready" not in fake.stdout.readline():
        raise SystemExit("fake Realtime server did not start")
    rig.agent.start()
    text = ("Summarise the quarterly numbers for the board and keep it short. " * 5)[:300]
    run(50, text, rig, False)   # warm-up
    direct = run(a.n, text, rig, False)
    run(50, text, rig, True)
    agent = run(a.n, text, rig, True)

    def p(xs, q):
        return xs[min(len(xs) - 1, int(len(xs) * q))]
    res = {"n": a.n, "direct_p50_us": statistics.median(direct), "direct_p90_us": p(direct, 0.9),
           "agent_p50_us": statistics.median(agent), "agent_p90_us": p(agent, 0.9)}
    res["added_p50_us"] = res["agent_p50_us"] - res["direct_p50_us"]
    print("ws round trip, %d messages: direct p50 %d us p90 %d us; through the agent p50 %d us p90 %d us; "
          "added per message (median) %d us" % (a.n, res["direct_p50_us"], res["direct_p90_us"],
                                                res["agent_p50_us"], res["agent_p90_us"], res["added_p50_us"]))
    print("BENCHJSON " + json.dumps(res))


if __name__ == "__main__":
    main()
