#!/usr/bin/env python3
"""The console's events view over a big SQLite store.

Fills a collector's SQLite store with N events (default 1,000,000: 200
users, 50 programs, 3 providers, 1% with a finding, 2% blocked), starts the
real vigil-collector on it and times, in headless chromium
(tests/clients/console_load.mjs): login to the first page of 100 events
drawn, the next (older) page through the keyset cursor, and filtered views.
Also times the JSON API alone (first page, and a page from a cursor in the
middle of the table: keyset paging costs the same at any depth).

  BUILD=$PWD/build python3 tests/bench/console_bench.py [--events N]

Prints numbers; exits non-zero only when a measurement could not be taken.
"""
import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import lib  # noqa: E402
from collector_tools import ANALYST_T, Collector  # noqa: E402

HOST = "127.84.1.1"


def fill(db, n):
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("INSERT OR IGNORE INTO agents(agent_id, pubkey, first_seen, last_seen) VALUES('bench', ?, 1, 1)",
                (bytes(32),))
    now = int(time.time() * 1e6) - n * 1000
    provs = ("openai", "anthropic", "mistral")
    batch = []
    for i in range(n):
        t = now + i * 1000
        f = "EMAIL:1" if i % 100 == 7 else ""
        batch.append((t << 10, t, "b-%d" % i, i + 1, "user%03d" % (i % 200), "/usr/bin/prog%02d" % (i % 50),
                      "ws%03d" % (i % 300), provs[i % 3], "model-%d" % (i % 7), "block" if i % 50 == 3 else "allow",
                      f, 100 + i % 900, 50 + i % 300, i + 1))
        if len(batch) == 50000:
            con.executemany("INSERT INTO events(id, time, event_id, agent_id, boot_id, seq, kind, user, exe, host,"
                            " provider, model, action, findings, prompt_tokens, completion_tokens, prev_hash, hash,"
                            " ingest_seq) VALUES(?, ?, ?, 'bench', 'boot', ?, 'request', ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                            " zeroblob(32), zeroblob(32), ?)", batch)
            batch = []
    if batch:
        con.executemany("INSERT INTO events(id, time, event_id, agent_id, boot_id, seq, kind, user, exe, host,"
                        " provider, model, action, findings, prompt_tokens, completion_tokens, prev_hash, hash,"
                        " ingest_seq) VALUES(?, ?, ?, 'bench', 'boot', ?, 'request', ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                        " zeroblob(32), zeroblob(32), ?)", batch)
    con.execute("INSERT INTO event_findings(ev, type, count, time) SELECT id, 'EMAIL', 1, time FROM events"
                " WHERE findings = 'EMAIL:1'")
    con.commit()
    con.close()


def api_ms(col, path):
    t = time.time()
    code, body = col.http("GET", path, ANALYST_T)
    return round((time.time() - t) * 1000), code, body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1000000)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="vigil-console-bench-")
    col = Collector(tmp, host=HOST, name="bench")
    col.start()            # creates the schema
    col.stop()
    t = time.time()
    fill(col.db, a.events)
    print("filled %d events in %.1f s (%.0f MB)" % (a.events, time.time() - t, os.path.getsize(col.db) / 1e6))
    col.start()
    res = {}
    res["api_first_page_ms"], code, _ = api_ms(col, "/api/v1/events?format=json&limit=100")
    mid = "%d.%d.%s.%s" % (0, a.events // 2, b"boot".hex(), b"bench".hex())
    # The cursor's own row is found through the (agent, seq, boot) index.
    res["api_middle_page_ms"], code2, body = api_ms(col, "/api/v1/events?format=json&limit=100&cursor=" + mid)
    if code != 200 or code2 != 200 or len(body.splitlines()) != 100:
        print("api: %d %d %r" % (code, code2, body[:200]))
        return 1
    spec = {"url": col.url, "token": ANALYST_T, "filters": [
        {"name": "user", "params": {"user": "user003"}},
        {"name": "user_block", "params": {"user": "user003", "action": "block"}},
        {"name": "finding", "params": {"finding": "EMAIL", "since": "7d"}},
        {"name": "exe_provider", "params": {"exe": "/usr/bin/prog07", "provider": "anthropic"}},
    ]}
    p = subprocess.run(["node", os.path.join(ROOT, "tests", "clients", "console_load.mjs"), json.dumps(spec)],
                       capture_output=True, text=True, timeout=900)
    try:
        res.update(json.loads(p.stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError):
        print("console_load.mjs: %s" % p.stderr[-800:])
        return 1
    col.stop()
    print(json.dumps(res, indent=1))
    return 1 if "error" in res else 0


if __name__ == "__main__":
    rc = main()
    lib._run_cleanups()
    sys.exit(rc)
