"""Small TCP/UDP peers for the capture tests.

  tcp_tools.py echo HOST PORT LOGFILE     serve: read to EOF, answer "echo:"+data, log the peer
  tcp_tools.py client HOST PORT DATA [--hello SNI] [--timeout S]
                                          connect, send, half-close, read the answer; print JSON
  tcp_tools.py udp HOST PORT              UDP connect and sendto; print the errors as JSON
  tcp_tools.py resolve NAME...            getaddrinfo (IPv4) each name; print {name: address or error}
"""
import ipaddress
import json
import os
import socket
import ssl
import sys
import threading
import time


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def client_hello(sni):
    """A real TLS ClientHello for sni, produced by Python's ssl module."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def echo(host, port, log):
    srv = socket.socket(family(host), socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if ":" in host:
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    srv.bind((host, int(port)))
    srv.listen(128)
    print("echo ready", flush=True)
    lock = threading.Lock()

    def serve(c, peer):
        c.settimeout(10)
        data = b""
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                data += b
        except OSError:
            pass
        # logged before the answer, so a client that has its answer can
        # rely on finding its connection in the log
        with lock, open(log, "a") as f:
            f.write(json.dumps({"peer": [peer[0], peer[1]], "n": len(data)}) + "\n")
        try:
            c.sendall(b"echo:" + data)
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, peer = srv.accept()
        threading.Thread(target=serve, args=(c, peer), daemon=True).start()


def kernel_peer(s):
    """The address the kernel connected s to, read from /proc/net/tcp{,6} by
    the socket's inode: getpeername() is rewritten by the BPF programs, this
    is not."""
    ino = os.fstat(s.fileno()).st_ino
    for name, width in (("tcp", 8), ("tcp6", 32)):
        with open("/proc/self/net/" + name) as f:
            next(f)
            for line in f:
                col = line.split()
                if int(col[9]) != ino:
                    continue
                addr, port = col[2].split(":")
                raw = bytes.fromhex(addr)
                # each 32-bit word is in host (little-endian) order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, width // 2, 4))
                return [str(ipaddress.ip_address(raw)), int(port, 16)]
    return None


def client(host, port, data, sni=None, timeout=5.0):
    if data.startswith("@"):          # "@N": N bytes of filler
        data = "z" * int(data[1:])
    res = {"pid": os.getpid(), "uid": os.getuid()}
    t0 = time.time()
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, int(port)))
        res["connect_ms"] = (time.time() - t0) * 1000
        res["local"] = list(s.getsockname()[:2])
        res["peer"] = list(s.getpeername()[:2])
        res["kernel_peer"] = kernel_peer(s)
        payload = (client_hello(sni) if sni else b"") + data.encode()
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            reply += b
        res["reply_len"] = len(reply)
        res["reply_tail"] = reply[-len(data):].decode(errors="replace") if data else ""
        res["sent"] = len(payload)
    except OSError as e:
        res["error"] = e.errno or str(e)
        res["error_str"] = str(e)
        res["connect_ms"] = (time.time() - t0) * 1000
    print(json.dumps(res), flush=True)


def resolve(names):
    out = {}
    for name in names:
        try:
            out[name] = socket.getaddrinfo(name, 443, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
        except OSError as e:
            out[name] = "error: %s" % e
    print(json.dumps(out), flush=True)


def udp(host, port):
    res = {}
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    try:
        s.connect((host, int(port)))
        s.send(b"x")
        res["connect"] = 0
    except OSError as e:
        res["connect"] = e.errno
    s.close()
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    try:
        s.sendto(b"x", (host, int(port)))
        res["sendto"] = 0
    except OSError as e:
        res["sendto"] = e.errno
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "echo":
        echo(*sys.argv[2:5])
    elif cmd == "client":
        args = sys.argv[2:]
        sni = None
        timeout = 5.0
        if "--hello" in args:
            i = args.index("--hello")
            sni = args[i + 1]
            del args[i:i + 2]
        if "--timeout" in args:
            i = args.index("--timeout")
            timeout = float(args[i + 1])
            del args[i:i + 2]
        client(args[0], args[1], args[2], sni, timeout)
    elif cmd == "udp":
        udp(sys.argv[2], sys.argv[3])
    elif cmd == "resolve":
        resolve(sys.argv[2:])
