"""TCP peers for the first-flight guard tests (tests/e2e/test_guard.py).

  guard_tools.py sink HOST PORT LOGFILE   serve: read each connection to EOF, log {"n", "head"}, answer "ok"
  guard_tools.py send HOST PORT HEXCHUNK...
                                          connect, send each chunk (hex) in its own write (10 ms apart),
                                          half-close, read the answer; print JSON (errno of a failed send)
  guard_tools.py sendbound DEV HOST PORT HEXCHUNK...
                                          as send, the socket bound to device DEV (SO_BINDTODEVICE)
  guard_tools.py drip HOST PORT DELAY_MS HEXCHUNK...
                                          as send, DELAY_MS between the writes (TCP_NODELAY: each
                                          write is its own segment)
  guard_tools.py many HOST PORT N HEX     open N connections, then send HEX on all of them at once,
                                          half-close; wait until each fails or is answered; print
                                          JSON counts (errors by errno, answers) and the slowest ms
  guard_tools.py bulk HOST PORT MBYTES    connect, send MBYTES MiB of non-protocol bytes, half-close, wait
                                          for the answer; print JSON with seconds and MiB/s
  guard_tools.py hello SNI                print a real TLS ClientHello for SNI (hex), from Python's ssl
  guard_tools.py tfo HOST PORT HEX [defer]
                                          TCP Fast Open: sendto(MSG_FASTOPEN) of HEX (connect and data
                                          in one call), or with "defer" TCP_FASTOPEN_CONNECT + connect()
                                          + send(); half-close, read the answer; print JSON
"""
import json
import os
import socket
import ssl
import sys
import threading
import time


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def sink(host, port, log):
    srv = socket.socket(family(host), socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, int(port)))
    srv.listen(128)
    print("sink ready", flush=True)
    lock = threading.Lock()

    def serve(c):
        c.settimeout(30)
        n, head = 0, b""
        try:
            while True:
                b = c.recv(1 << 20)
                if not b:
                    break
                if len(head) < 256:
                    head += b[:256 - len(head)]
                n += len(b)
        except OSError:
            pass
        with lock, open(log, "a") as f:
            f.write(json.dumps({"n": n, "head": head.decode("latin-1")}) + "\n")
        try:
            c.sendall(b"ok")
        except OSError:
            pass
        c.close()

    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def send(host, port, chunks, delay=0.01, nodelay=False, device=None):
    res = {"pid": os.getpid(), "uid": os.getuid()}
    s = socket.socket(family(host), socket.SOCK_STREAM)
    if device:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
    s.settimeout(10)
    if nodelay:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.time()
    try:
        s.connect((host, int(port)))
        for i, c in enumerate(chunks):
            if i:
                time.sleep(delay)
            s.sendall(bytes.fromhex(c))
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            reply += b
        res["reply"] = reply.decode("latin-1")
    except OSError as e:
        res["error"] = e.errno
        res["error_str"] = str(e)
    res["ms"] = (time.time() - t0) * 1000
    print(json.dumps(res), flush=True)


def many(host, port, n, data):
    import selectors
    socks = []
    for _ in range(int(n)):
        s = socket.socket(family(host), socket.SOCK_STREAM)
        s.connect((host, int(port)))
        socks.append(s)
    payload = bytes.fromhex(data)
    t0 = time.time()
    for s in socks:
        s.send(payload)
    res = {"errors": {}, "answers": 0, "slowest_ms": 0.0}
    sel = selectors.DefaultSelector()

    def done(s, what):
        res["slowest_ms"] = max(res["slowest_ms"], (time.time() - t0) * 1000)
        if isinstance(what, int):
            res["errors"][str(what)] = res["errors"].get(str(what), 0) + 1
        else:
            res["answers"] += 1
        sel.unregister(s)
        s.close()

    for s in socks:
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            res["slowest_ms"] = max(res["slowest_ms"], (time.time() - t0) * 1000)
            res["errors"][str(e.errno)] = res["errors"].get(str(e.errno), 0) + 1
            s.close()
            continue
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    deadline = time.time() + 20
    while sel.get_map() and time.time() < deadline:
        for key, _ in sel.select(timeout=1):
            try:
                b = key.fileobj.recv(65536)
                done(key.fileobj, "answer" if b else 0)
            except OSError as e:
                done(key.fileobj, e.errno)
    res["pending"] = len(sel.get_map())
    print(json.dumps(res), flush=True)


def tfo(host, port, data, mode=""):
    res = {"pid": os.getpid()}
    s = socket.socket(family(host), socket.SOCK_STREAM)
    try:
        if mode == "defer":
            s.setsockopt(socket.IPPROTO_TCP, 30, 1)     # TCP_FASTOPEN_CONNECT
            s.connect((host, int(port)))
            s.sendall(bytes.fromhex(data))
        else:
            s.sendto(bytes.fromhex(data), socket.MSG_FASTOPEN, (host, int(port)))   # blocking: connects too
        s.settimeout(10)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            reply += b
        res["reply"] = reply.decode("latin-1")
    except OSError as e:
        res["error"] = e.errno
        res["error_str"] = str(e)
    print(json.dumps(res), flush=True)


def bulk(host, port, mib):
    buf = bytes(range(256)) * 4096          # 1 MiB, starts with 0x00: no protocol
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect((host, int(port)))
    t0 = time.time()
    for _ in range(int(mib)):
        s.sendall(buf)
    s.shutdown(socket.SHUT_WR)
    reply = s.recv(16)
    dt = time.time() - t0
    print(json.dumps({"seconds": dt, "mib_s": int(mib) / dt, "reply": reply.decode("latin-1")}), flush=True)


def hello(sni):
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    print(out.read().hex())


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "sink":
        sink(*sys.argv[2:5])
    elif cmd == "send":
        send(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif cmd == "sendbound":
        send(sys.argv[3], sys.argv[4], sys.argv[5:], device=sys.argv[2])
    elif cmd == "drip":
        send(sys.argv[2], sys.argv[3], sys.argv[5:], delay=int(sys.argv[4]) / 1000, nodelay=True)
    elif cmd == "many":
        many(*sys.argv[2:6])
    elif cmd == "bulk":
        bulk(*sys.argv[2:5])
    elif cmd == "tfo":
        tfo(*sys.argv[2:6])
    elif cmd == "hello":
        hello(sys.argv[2])
