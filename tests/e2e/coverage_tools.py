"""Attacking clients for tests/e2e/test_coverage.py: each tries to get a
request past the agent by shaping its first flight. Each prints one JSON
line with what it saw (answer status and body, errors, timings).

  coverage_tools.py tls CA HOST PORT SNI REQ_HEX [--split records|segments] [--pause S] [--delay S]
                                                 [--insecure 1]
      TLS client (Python ssl over a memory BIO, so the ClientHello bytes are
      ours to send): optional delay before the ClientHello, the hello split
      in two records or two TCP segments with a pause, then REQ (an HTTP
      request) and the answer. SNI "-" sends none; --insecure 1 skips
      certificate verification (an attacker's client does that freely).
  coverage_tools.py raw HOST PORT DATA_HEX
      plain TCP: send DATA, read until close; prints what came back.
"""
import json
import socket
import ssl
import sys
import time


def pump_out(sock, out):
    data = out.read()
    if data:
        sock.sendall(data)


def send_hello(sock, hello, split, pause):
    """The ClientHello, whole or in two pieces with a pause between them."""
    if split == "records":
        # One handshake message in two TLS records (RFC 8446 5.1 allows
        # fragmenting handshake messages): the agent must reassemble.
        body = hello[5:]
        cut = len(body) // 3
        sock.sendall(hello[:3] + len(body[:cut]).to_bytes(2, "big") + body[:cut])
        time.sleep(pause)
        sock.sendall(hello[:3] + len(body[cut:]).to_bytes(2, "big") + body[cut:])
    elif split == "segments":
        cut = len(hello) // 2
        sock.sendall(hello[:cut])
        time.sleep(pause)
        sock.sendall(hello[cut:])
    else:
        sock.sendall(hello)


def tls(ca, host, port, sni, req, split=None, pause=0.0, delay=0.0, insecure=0.0):
    res = {}
    t0 = time.time()
    ctx = ssl.create_default_context(cafile=ca)
    if sni == "-" or insecure:
        ctx.check_hostname = False
    if insecure:
        ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=None if sni == "-" else sni)
    sock = socket.create_connection((host, int(port)), timeout=10)
    try:
        if delay:
            time.sleep(delay)
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        send_hello(sock, out.read(), split, pause)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump_out(sock, out)
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed during the handshake")
                inc.write(data)
        pump_out(sock, out)
        res["handshake"] = True
        obj.write(req)
        pump_out(sock, out)
        answer = b""
        while True:
            try:
                chunk = obj.read(65536)
                if not chunk:
                    break
                answer += chunk
                if b"\r\n\r\n" in answer:
                    head, _, body = answer.partition(b"\r\n\r\n")
                    for line in head.split(b"\r\n")[1:]:
                        k, _, v = line.partition(b":")
                        if k.strip().lower() == b"content-length" and len(body) >= int(v):
                            raise StopIteration
            except ssl.SSLWantReadError:
                pump_out(sock, out)
                data = sock.recv(65536)
                if not data:
                    break
                inc.write(data)
    except StopIteration:
        pass
    except (OSError, ssl.SSLError, ConnectionError) as e:
        res["error"] = str(e)
    res["elapsed"] = time.time() - t0
    if "answer" in locals() and answer:
        head, _, body = answer.partition(b"\r\n\r\n")
        res["status"] = int(head.split(b" ")[1])
        res["body"] = body.decode(errors="replace")
    sock.close()
    return res


def raw(host, port, data):
    res = {}
    t0 = time.time()
    sock = socket.create_connection((host, int(port)), timeout=10)
    reply = b""
    try:
        sock.sendall(data)
        while True:
            b = sock.recv(65536)
            if not b:
                break
            reply += b
    except OSError as e:
        res["error"] = str(e)
    res["elapsed"] = time.time() - t0
    res["reply"] = reply.decode(errors="replace")
    return res


def main():
    a = sys.argv[1:]
    if a[0] == "tls":
        opts = {"split": None, "pause": 0.0, "delay": 0.0}
        rest = a[6:]
        while rest:
            k, v = rest[0].lstrip("-"), rest[1]
            opts[k] = v if k == "split" else float(v)
            rest = rest[2:]
        res = tls(a[1], a[2], a[3], a[4], bytes.fromhex(a[5]), **opts)
    elif a[0] == "raw":
        res = raw(a[1], a[2], bytes.fromhex(a[3]))
    else:
        sys.exit("unknown mode %s" % a[0])
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
