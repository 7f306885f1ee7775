"""A raw client of an explicit HTTP proxy, for the proxy tests (runs as a
test user inside the scratch cgroup, so its connection is redirected).

  proxy_tools.py HOST PORT HEAD [--hello SNI] [--data TEXT] [--read-first] [--timeout S] [--silent]

HEAD is sent as given ("\\r\\n" escapes are turned into CRLF; "@Nx" inside
it repeats x N times). Then the answer head is read (until CRLFCRLF, close,
or timeout). With --hello SNI, a real ClientHello for SNI follows the 200;
with --data TEXT, TEXT is sent and the connection half-closed. Whatever
comes back until the peer closes is reported. --read-first waits for the
far end to speak before sending (a server-first protocol). --silent sends
nothing at all and waits. Prints one JSON line: status (int or null), head, after
(text of what came after the head), closed (the peer closed before the
timeout), error.
"""
import json
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tcp_tools import client_hello  # noqa: E402


def expand(head):
    head = re.sub(r"@(\d+)(.)", lambda m: m.group(2) * int(m.group(1)), head)
    return head.replace("\\r\\n", "\r\n").encode("latin-1")


def read_until_close(s, deadline, limit=1 << 20):
    out, closed = b"", False
    while time.time() < deadline and len(out) < limit:
        s.settimeout(max(0.05, deadline - time.time()))
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        except OSError:
            closed = True
            break
        if not b:
            closed = True
            break
        out += b
    return out, closed


def main():
    args = sys.argv[1:]
    opts = {"--hello": None, "--data": None, "--timeout": "5"}
    silent = "--silent" in args
    if silent:
        args.remove("--silent")
    read_first = "--read-first" in args
    if read_first:
        args.remove("--read-first")
    for k in list(opts):
        if k in args:
            i = args.index(k)
            opts[k] = args[i + 1]
            del args[i:i + 2]
    host, port = args[0], int(args[1])
    head = expand(args[2]) if len(args) > 2 else b""
    deadline = time.time() + float(opts["--timeout"])
    res = {"status": None, "head": "", "after": "", "closed": False, "error": None}
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(float(opts["--timeout"]))
        s.connect((host, port))
        if not silent:
            s.sendall(head)
        buf = b""
        while b"\r\n\r\n" not in buf and time.time() < deadline:
            s.settimeout(max(0.05, deadline - time.time()))
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                res["closed"] = True
                break
            buf += b
        hd, _, rest = buf.partition(b"\r\n\r\n")
        res["head"] = hd.decode("latin-1")
        m = re.match(r"HTTP/1\.[01] (\d{3})", res["head"])
        res["status"] = int(m.group(1)) if m else None
        if res["status"] == 200 and read_first and not rest:
            s.settimeout(max(0.05, deadline - time.time()))
            rest = s.recv(65536)
        if res["status"] == 200 and (opts["--hello"] or opts["--data"]):
            payload = client_hello(opts["--hello"]) if opts["--hello"] else opts["--data"].encode()
            s.sendall(payload)
            if opts["--data"]:
                s.shutdown(socket.SHUT_WR)
        if not res["closed"]:
            more, res["closed"] = read_until_close(s, deadline)
            rest += more
        res["after"] = rest.decode("latin-1")
    except OSError as e:
        res["error"] = str(e)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
