"""Hostile peers for tests/e2e/test_hostile.py.

  hostile_tools.py garbage-upstream HOST CERT KEY   TLS server answering every request with garbage
  hostile_tools.py raw CA HOST PAYLOAD_HEX          TLS client (SNI HOST) sending raw bytes; prints the reply
  hostile_tools.py idle CA HOST N HOLD_S            opens N TLS connections and holds them idle
"""
import json
import os
import resource
import socket
import ssl
import sys
import threading
import time


def garbage_upstream(host, cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, 443))
    srv.listen(64)
    print("garbage ready", flush=True)

    def serve(c):
        try:
            t = ctx.wrap_socket(c, server_side=True)
            t.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                b = t.recv(4096)
                if not b:
                    return
                data += b
            t.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: banana\r\n\r\n\x00\xff garbage")
            time.sleep(0.2)
            t.close()
        except OSError:
            pass

    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def raw(ca, host, payload_hex):
    ctx = ssl.create_default_context(cafile=ca)
    s = socket.create_connection((host, 443), timeout=10)
    t = ctx.wrap_socket(s, server_hostname=host)
    # "-": the hex comes on stdin (a large body does not fit in argv)
    t.sendall(bytes.fromhex(sys.stdin.read().strip() if payload_hex == "-" else payload_hex))
    reply = b""
    try:
        while True:
            b = t.recv(65536)
            if not b:
                break
            reply += b
    except (socket.timeout, ssl.SSLError, OSError):
        pass
    status = reply.split(b"\r\n", 1)[0].decode(errors="replace")
    print(json.dumps({"status_line": status, "reply": reply.decode(errors="replace")[:2000]}), flush=True)


def idle(ca, host, n, hold):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = ssl.create_default_context(cafile=ca)
    conns, failed = [], 0
    t0 = time.time()
    for _ in range(int(n)):
        try:
            s = socket.create_connection((host, 443), timeout=10)
            conns.append(ctx.wrap_socket(s, server_hostname=host))
        except OSError:
            failed += 1
    print(json.dumps({"open": len(conns), "failed": failed, "secs": time.time() - t0}), flush=True)
    time.sleep(float(hold))
    alive = 0
    for c in conns:
        c.setblocking(False)
        try:
            alive += c.recv(1) != b""
        except ssl.SSLWantReadError:
            alive += 1
        except OSError:
            pass
    print(json.dumps({"alive_after_hold": alive}), flush=True)


def stall(ca, host, n, announce, send, hold):
    """n connections each announcing a body of `announce` bytes, sending
    `send` of them, then stalling for `hold` seconds. Prints, per
    connection, what the agent answered before the stall (if anything)."""
    n, announce, send, hold = int(n), int(announce), int(send), float(hold)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = ssl.create_default_context(cafile=ca)
    conns = []
    for _ in range(n):
        s = socket.create_connection((host, 443), timeout=30)
        conns.append(ctx.wrap_socket(s, server_hostname=host))
    head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer sk-test\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (host, announce)).encode()
    piece = b"x" * 65536
    answers = []
    for c in conns:
        status = ""
        try:
            c.sendall(head)
            left = send
            while left > 0:
                c.sendall(piece[:min(left, len(piece))])
                left -= min(left, len(piece))
        except OSError:
            pass
        c.setblocking(False)
        try:
            status = c.recv(4096).decode(errors="replace")
        except (ssl.SSLWantReadError, BlockingIOError):
            pass
        except OSError:
            pass
        answers.append(status)
    print(json.dumps({"stalled": n, "answers": [a.split("\r\n\r\n")[0] for a in answers]}), flush=True)
    time.sleep(hold)


def burst(ca, host, n):
    """n small chat requests on one keep-alive connection; prints how many
    were answered 200 and how many were sent."""
    import http.client
    ctx = ssl.create_default_context(cafile=ca)
    c = http.client.HTTPSConnection(host, 443, context=ctx, timeout=20)
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    sent = ok = 0
    for _ in range(int(n)):
        try:
            sent += 1
            c.request("POST", "/v1/chat/completions", body, {"Authorization": "Bearer sk-test",
                                                             "Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            ok += r.status == 200
        except (OSError, http.client.HTTPException):
            break
    print(json.dumps({"sent": sent, "ok": ok}), flush=True)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "garbage-upstream":
        garbage_upstream(*sys.argv[2:5])
    elif cmd == "raw":
        raw(*sys.argv[2:5])
    elif cmd == "idle":
        idle(*sys.argv[2:6])
    elif cmd == "burst":
        burst(*sys.argv[2:5])
    elif cmd == "stall":
        stall(*sys.argv[2:8])
