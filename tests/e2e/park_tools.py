#!/usr/bin/env python3
"""Clients for test_icpark.py that hold many intercepted connections open.

Owns: the client side only (run inside the scratch cgroup by the test, so
its connections go through the real BPF redirect). Must never: connect
anywhere but the name it is given (the test's hosts file maps it to
loopback).

  park_tools.py hold HOST N CAFILE TAG [WORKERS]
      opens N TLS connections, each makes one keep-alive POST and reads its
      answer, then prints {"open", "ok1", "failed", "error"}; on the stdin
      line "again" every connection makes a second POST (content
      "park TAG-i-2") and it prints {"ok2", "errors"}; on "watch" instead
      it prints {"closed_after_s"}: how long after its answer the agent
      closed each (null: not within 30 s). At stdin EOF it closes them all
      and prints {"closed"}.
  park_tools.py stall HOST N
      opens N connections that send a ClientHello and never finish their
      handshake; prints {"closed_after_s": [...]} (null: still open after
      30 s), how long the agent took to close each.
  park_tools.py dribble HOST CAFILE TAG
      one connection: a POST, a pause (the agent parks it), then a second
      POST sent one byte per TLS record; prints {"status2", "records"}.
  park_tools.py busy HOST N ROUNDS CAFILE TAG
      N connections at once, each making ROUNDS keep-alive POSTs back to
      back (content "park TAG-i-r"), every other round two of them
      pipelined in one write; prints {"ok", "errors"}: how many answers
      were 200 and echoed their own request.
  park_tools.py flood HOST CAFILE SECONDS [WAIT]
      one connection that writes pipelined requests (each asking for a 16
      KB answer) as fast as it can for SECONDS and never reads an answer;
      then it waits (up to WAIT s) until the agent closes the connection;
      prints {"sent", "reset_after_s"} (bytes written; seconds after the
      flood until a write failed, null: never) and closes.
  park_tools.py slow HOST CAFILE DELAY_MS
      one request whose answer head the fake provider holds DELAY_MS;
      prints {"status", "elapsed_s"}.
  park_tools.py hangup HOST CAFILE N DELAY_MS AFTER_S
      2N connections at once: N send a request whose answer head the fake
      provider holds DELAY_MS, the other N first make a quick keep-alive
      request and then that one; each hangs up AFTER_S after its slow
      request went out, without reading; prints {"warm_ok"} (how many
      quick requests were answered).
"""
import json
import select
import socket
import ssl
import sys
import threading
import time

PATH = "/v1/chat/completions"


def body_for(tag, i, n):
    return json.dumps({"model": "gpt-4o-mini",
                       "messages": [{"role": "user", "content": "park %s-%d-%d" % (tag, i, n)}]}).encode()


def request(host, body, extra=""):
    return (("POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer sk-test\r\n%s"
             "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n") % (
                 PATH, host, extra, len(body))).encode() + body


def read_response(s):
    """Reads one HTTP/1.1 response (Content-Length or chunked); returns (status, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed before the response head (%d bytes)" % len(buf))
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    if "content-length" in hdrs:
        n = int(hdrs["content-length"])
        while len(rest) < n:
            d = s.recv(65536)
            if not d:
                raise ConnectionError("closed mid-body")
            rest += d
        return status, rest[:n]
    if hdrs.get("transfer-encoding", "").lower() == "chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            d = s.recv(65536)
            if not d:
                raise ConnectionError("closed mid-chunked body")
            rest += d
        return status, rest
    return status, rest


def exchange(s, host, tag, i, n):
    s.sendall(request(host, body_for(tag, i, n)))
    status, body = read_response(s)
    if status != 200:
        raise ConnectionError("status %d: %s" % (status, body[:200]))


def hold(host, n, cafile, tag, workers):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    conns = [None] * n
    done_at = [0.0] * n
    errors = []
    lock = threading.Lock()

    def run(slice_, fn):
        for i in slice_:
            try:
                fn(i)
            except (OSError, ConnectionError, ValueError) as e:
                with lock:
                    errors.append("%d: %s" % (i, e))
                if conns[i] is not None:
                    conns[i].close()
                    conns[i] = None

    def in_parallel(fn):
        ts = [threading.Thread(target=run, args=(range(w, n, workers), fn)) for w in range(workers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    def first(i):
        s = socket.create_connection((host, 443), 30)
        conns[i] = ctx.wrap_socket(s, server_hostname=host)
        exchange(conns[i], host, tag, i, 1)
        done_at[i] = time.monotonic()

    def second(i):
        if conns[i] is None:
            raise ConnectionError("not open")
        exchange(conns[i], host, tag, i, 2)

    in_parallel(first)
    ok1 = sum(1 for c in conns if c is not None)
    print(json.dumps({"open": ok1, "ok1": ok1, "failed": n - ok1, "error": errors[:3]}), flush=True)
    cmd = sys.stdin.readline().strip()
    if cmd == "watch":
        # how long after its answer the agent closed each connection
        closed = [None] * n
        live = {c: i for i, c in enumerate(conns) if c is not None}
        t0 = time.monotonic()
        while live and time.monotonic() - t0 < 30:
            r, _, _ = select.select(list(live), [], [], 0.05)
            for c in r:
                i = live.pop(c)
                try:
                    c.setblocking(False)
                    eof = c.recv(1) == b""
                except ssl.SSLWantReadError:
                    eof = False
                except OSError:
                    eof = True
                if eof:
                    closed[i] = round(time.monotonic() - done_at[i], 3)
                else:
                    live[c] = i
        print(json.dumps({"closed_after_s": closed}), flush=True)
        sys.stdin.read()
    elif cmd == "again":
        errors.clear()
        in_parallel(second)
        ok2 = sum(1 for c in conns if c is not None)
        print(json.dumps({"ok2": ok2, "errors": errors[:3], "nerrors": len(errors)}), flush=True)
        sys.stdin.read()
    for c in conns:
        if c is not None:
            c.close()
    print(json.dumps({"closed": True}), flush=True)


def stall(host, n):
    socks, opened, hello = [], [], None
    ctx = ssl.create_default_context()   # once: loading the store takes longer than a connection
    for _ in range(n):
        # A real ClientHello from a memory BIO: the agent sees a client
        # that started TLS and then went silent before its Finished.
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname=host)
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = out.read()
        s = socket.create_connection((host, 443), 10)
        s.sendall(hello)
        socks.append(s)
        opened.append(time.monotonic())
    t0 = time.monotonic()
    closed = [None] * n
    open_ = set(range(n))
    while open_ and time.monotonic() - t0 < 30:
        r, _, _ = select.select([socks[i] for i in open_], [], [], 0.1)
        for s in r:
            i = socks.index(s)
            try:
                d = s.recv(65536)
            except OSError:
                d = b""
            if not d:
                closed[i] = round(time.monotonic() - opened[i], 3)
                open_.discard(i)
    for s in socks:
        s.close()
    print(json.dumps({"closed_after_s": closed}), flush=True)


def dribble(host, cafile, tag):
    ctx = ssl.create_default_context(cafile=cafile)
    s = ctx.wrap_socket(socket.create_connection((host, 443), 10), server_hostname=host)
    s.settimeout(20)
    exchange(s, host, tag, 0, 1)
    time.sleep(1.0)   # nothing buffered: the agent parks the connection
    raw = request(host, body_for(tag, 0, 2))
    for b in raw:
        s.sendall(bytes([b]))   # one TLS record per byte
        time.sleep(0.002)
    status, body = read_response(s)
    s.close()
    print(json.dumps({"status2": status, "records": len(raw), "body": body.decode("utf-8", "replace")[:300]}),
          flush=True)


def busy(host, n, rounds, cafile, tag):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    ok, errors, lock = [0], [], threading.Lock()

    def answer_ok(s, i, r):
        status, body = read_response(s)
        return status == 200 and ("park %s-%d-%d" % (tag, i, r)).encode() in body

    def run(i):
        try:
            s = ctx.wrap_socket(socket.create_connection((host, 443), 30), server_hostname=host)
            s.settimeout(30)
            r = 0
            while r < rounds:
                if r % 2 and r + 1 < rounds:
                    s.sendall(request(host, body_for(tag, i, r)) + request(host, body_for(tag, i, r + 1)))
                    good = answer_ok(s, i, r) + answer_ok(s, i, r + 1)
                    r += 2
                else:
                    s.sendall(request(host, body_for(tag, i, r)))
                    good = answer_ok(s, i, r)
                    r += 1
                with lock:
                    ok[0] += good
            s.close()
        except (OSError, ConnectionError, ValueError) as e:
            with lock:
                errors.append("%d: %s" % (i, e))

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps({"ok": ok[0], "errors": errors[:3]}), flush=True)


def flood(host, cafile, seconds, wait):
    ctx = ssl.create_default_context(cafile=cafile)
    s = ctx.wrap_socket(socket.create_connection((host, 443), 10), server_hostname=host)
    # 16 KB answers: the agent's buffers and the sockets' fill after a few
    # hundred requests, not tens of thousands
    one = request(host, body_for("flood", 0, 0), "x-fake-answer: %s\r\n" % ("flood " * 2700)) * 8
    sent, end = 0, time.monotonic() + seconds
    s.settimeout(0.2)
    while time.monotonic() < end:
        try:
            sent += s.send(one)
        except (socket.timeout, ssl.SSLWantWriteError):
            pass
        except OSError:
            break
    # then: how long until the agent gives up on this client (a write
    # that fails: the connection was reset)
    reset_after, t0 = None, time.monotonic()
    while reset_after is None and time.monotonic() - t0 < wait:
        try:
            s.send(b"x")
        except (socket.timeout, ssl.SSLWantWriteError):
            pass
        except OSError:
            reset_after = round(time.monotonic() - t0, 2)
        time.sleep(0.2)
    print(json.dumps({"sent": sent, "reset_after_s": reset_after}), flush=True)
    s.close()


def slow(host, cafile, delay_ms):
    ctx = ssl.create_default_context(cafile=cafile)
    s = ctx.wrap_socket(socket.create_connection((host, 443), 10), server_hostname=host)
    s.settimeout(60)
    t0 = time.monotonic()
    s.sendall(request(host, body_for("slow", 0, 0), "x-fake-header-delay-ms: %d\r\n" % delay_ms))
    status, _ = read_response(s)
    print(json.dumps({"status": status, "elapsed_s": round(time.monotonic() - t0, 3)}), flush=True)
    s.close()


def hangup(host, cafile, n, delay_ms, after_s):
    ctx = ssl.create_default_context(cafile=cafile)
    warm_ok = []

    def run(i, warm):
        s = ctx.wrap_socket(socket.create_connection((host, 443), 10), server_hostname=host)
        s.settimeout(30)
        if warm:
            s.sendall(request(host, body_for("warm", i, 0)))
            status, _ = read_response(s)
            if status == 200:
                warm_ok.append(i)
        s.sendall(request(host, body_for("hangup", i, 1), "x-fake-header-delay-ms: %d\r\n" % delay_ms))
        time.sleep(after_s)
        s.close()

    ts = [threading.Thread(target=run, args=(i, i >= n)) for i in range(2 * n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps({"warm_ok": len(warm_ok)}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "stall":
        stall(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) >= 5 and sys.argv[1] == "dribble":
        dribble(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) >= 5 and sys.argv[1] == "flood":
        flood(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]) if len(sys.argv) > 5 else 0)
    elif len(sys.argv) >= 7 and sys.argv[1] == "hangup":
        hangup(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
    elif len(sys.argv) >= 5 and sys.argv[1] == "slow":
        slow(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) >= 7 and sys.argv[1] == "busy":
        busy(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6])
    elif len(sys.argv) >= 6 and sys.argv[1] == "hold":
        hold(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6]) if len(sys.argv) > 6 else 4)
    else:
        sys.exit(__doc__)
