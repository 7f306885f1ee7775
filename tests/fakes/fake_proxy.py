#!/usr/bin/env python3
"""A small explicit HTTP proxy for Vigil tests (stdlib only).

  fake_proxy.py --listen HOST:PORT --log FILE [--require-auth USER:PASSWORD]

CONNECT host:port: connects to the target, answers 200, relays both ways.
Absolute-form requests (GET http://host/path): forwarded in origin form.
Each request is logged as one JSON line before it is served: method,
target, whether Proxy-Authorization was given, and the user it names
(never the password). With --require-auth, anything without those Basic
credentials gets 407, and the connection stays open for a retry on it
(as squid does). Names resolve through /etc/hosts (run it in the
test's hosts namespace). Prints "fake-proxy ready" once listening.
"""
import argparse
import base64
import json
import socket
import socketserver
import threading

HEAD_MAX = 65536


def parse_listen(s):
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


def read_head(sock, data=b""):
    while b"\r\n\r\n" not in data:
        b = sock.recv(4096)
        if not b:
            return None, b""
        data += b
        if len(data) > HEAD_MAX:
            return None, b""
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


def pipe(src, dst):
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def split_authority(a, default):
    if a.startswith("["):
        host, _, rest = a[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default
    host, sep, port = a.rpartition(":")
    return (host, int(port)) if sep else (a, default)


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        # Like squid, a 407 keeps the connection: the client may retry on it.
        rest = b""
        while rest is not None:
            rest = self.one(rest)

    def one(self, pending):
        """Serves one request; returns the bytes already read after a 407
        (the connection stays open for the next request), else None."""
        srv = self.server
        c = self.request
        c.settimeout(20)
        head, rest = read_head(c, pending)
        if head is None:
            return None
        lines = head.split("\r\n")
        try:
            method, target, _version = lines[0].split(" ")
        except ValueError:
            c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return None
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        auth = headers.get("proxy-authorization")
        user, password = None, None
        if auth and auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                pass
        ok = srv.require is None or (user, password) == srv.require
        with srv.lock, open(srv.log, "a") as f:
            f.write(json.dumps({"method": method, "target": target, "auth": auth is not None, "user": user,
                                "authorized": ok, "peer": self.client_address[0]}) + "\n")
        if not ok:
            c.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\n"
                      b"Content-Length: 9\r\n\r\nauth pls\n")
            return rest
        if method == "CONNECT":
            host, port = split_authority(target, 0)
        else:
            scheme, _, after = target.partition("://")
            auth_part, slash, path = after.partition("/")
            host, port = split_authority(auth_part, 443 if scheme == "https" else 80)
            path = "/" + path
        try:
            up = socket.create_connection((host, port), timeout=10)
        except OSError:
            c.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return None
        if method == "CONNECT":
            c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                up.sendall(rest)
        else:
            fwd = ["%s %s HTTP/1.1" % (method, path)] + [ln for ln in lines[1:]
                                                         if not ln.lower().startswith("proxy-")]
            up.sendall(("\r\n".join(fwd) + "\r\n\r\n").encode("latin-1") + rest)
        c.settimeout(None)
        up.settimeout(None)
        t = threading.Thread(target=pipe, args=(up, c), daemon=True)
        t.start()
        pipe(c, up)
        t.join(30)
        up.close()
        return None


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, log, require):
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.log = log
        self.require = tuple(require.split(":", 1)) if require else None
        self.lock = threading.Lock()
        super().__init__(addr, Handler)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, type=parse_listen)
    ap.add_argument("--log", required=True)
    ap.add_argument("--require-auth")
    a = ap.parse_args()
    srv = Server(a.listen, a.log, a.require_auth)
    print("fake-proxy ready", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
