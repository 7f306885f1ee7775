#!/usr/bin/env python3
"""Vigil HTTP/2 benchmark (issue 15): the agent beside nginx's HTTP/2 TLS
reverse proxy, same upstream, same load.

Owns: one run of h2load (nghttp2-client, offering only h2) with keep-alive
POSTs (1.5 KB JSON body, 1 KB JSON answer) against nginx (`listen ... ssl
http2`, upstream HTTP/1.1 keep-alive, verified) and against the agent (real
BPF redirect from a scratch cgroup, upstream HTTP/1.1), both in front of
the nginx upstream of tests/bench/proxy_bench.py; CPU per request (proxy
process only, /proc/PID/stat), requests/s, and memory per idle h2
connection (RSS delta with N connections that finished the h2 preface and
SETTINGS exchange). Prints PASS/MISS against issue 15's targets (CPU per
request at most 1.5x nginx's, at most 16 KB per idle h2 connection); exits
1 only when a measurement could not be taken.
Must never: touch anything outside loopback (127.83.1.0/24 for its own
servers), the scratch cgroup and its temp dir, or leave a process behind.

Usage: h2_bench.py [--duration S] [--conns N] [--streams M] [--idle N]
Sub-mode (run inside the scratch cgroup / hosts namespace):
  h2_bench.py idle-h2 HOST N    open N idle h2 connections until stdin closes
"""
import argparse
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import proxy_bench as pb  # noqa: E402

UPSTREAM, NGINX_H2 = "127.83.1.2", "127.83.1.7"

NGINX_H2_PROXY = pb.PROXY_SERVER.replace("listen {addr}:443 ssl;", "listen {addr}:443 ssl http2;")


def idle_h2(host, n):
    ctx = pb.client_ctx()
    ctx.set_alpn_protocols(["h2"])
    conns, failed, last = [], 0, ""
    for _ in range(n):
        try:
            s = ctx.wrap_socket(socket.create_connection((host, 443), 10), server_hostname=host)
            if s.selected_alpn_protocol() != "h2":
                raise OSError("no h2 (ALPN %r)" % s.selected_alpn_protocol())
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\0\0\0\x04\0\0\0\0\0")
            s.settimeout(5)
            buf = b""
            while len(buf) < 9:   # the server's SETTINGS: its session exists now
                d = s.recv(4096)
                if not d:
                    raise OSError("closed")
                buf += d
            s.sendall(b"\0\0\0\x04\x01\0\0\0\0")   # SETTINGS ACK
            conns.append(s)
        except OSError as e:
            failed += 1
            last = str(e)
    print(json.dumps({"open": len(conns), "failed": failed, "error": last}), flush=True)
    sys.stdin.read()
    for c in conns:
        c.close()


class H2Bench(pb.Bench):
    def h2load(self, hosts, cgroup, conns, streams, duration):
        argv = ["h2load", "-c%d" % conns, "-m%d" % streams, "-D%d" % duration, "--warm-up-time=1",
                "-d", self.body, "-H", "content-type: application/json", "-H", "authorization: Bearer bench",
                "https://%s%s" % (pb.HOST, pb.PATH)]
        p = subprocess.run(self.lib.wrap(argv, cgroup=cgroup, hosts=hosts), env=self.env(hosts, cgroup),
                           capture_output=True, text=True, timeout=duration + 60)
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored",
                      p.stdout)
        proto = re.search(r"Application protocol: (\S+)", p.stdout)
        rps = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", p.stdout)
        if not m or not proto:
            raise RuntimeError("h2load printed no result (rc %d): %s %s" % (p.returncode, p.stdout[-600:],
                                                                            p.stderr[-300:]))
        return {"succeeded": int(m.group(4)), "failed": int(m.group(5)), "errored": int(m.group(6)),
                "protocol": proto.group(1), "rps": float(rps.group(1)) if rps else 0.0}

    def idle_h2_mem(self, hosts, cgroup, pids, n):
        argv = [sys.executable, os.path.abspath(__file__), "idle-h2", pb.HOST, str(n)]
        before = pb.rss_kb(pids)
        p = subprocess.Popen(self.lib.wrap(argv, cgroup=cgroup, hosts=hosts), env=self.env(hosts, cgroup),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            first = json.loads(p.stdout.readline() or "{}")
            time.sleep(1.0)
            after = pb.rss_kb(pids)
            p.stdin.close()
        finally:
            p.wait(30)
        opened = first.get("open", 0)
        if first.get("failed"):
            self.notes.append("idle h2: %d failed (%s)" % (first["failed"], first.get("error")))
        return {"open": opened, "kb_per_conn": (after - before) / opened if opened else None}

    def measure_h2(self, name, hosts, cgroup, pids):
        a = self.args
        print("== %s (h2load -c%d -m%d, %ds)" % (name, a.conns, a.streams, a.duration), flush=True)
        self.h2load(hosts, cgroup, 4, 1, 1)   # warm-up: forged leaf, upstream pool
        idle = self.idle_h2_mem(hosts, cgroup, pids, a.idle)
        time.sleep(1.2)   # the upstream's access log flushes every second
        l0 = len(self.upstream_log_lines())
        s0 = pb.stat_cpu_ns(pids)
        r = self.h2load(hosts, cgroup, a.conns, a.streams, a.duration)
        s1 = pb.stat_cpu_ns(pids)
        time.sleep(1.2)
        # h2load counts its main duration only, the CPU covers its warm-up
        # second too: divide by what the upstream served meanwhile
        r["upstream_requests"] = len(self.upstream_log_lines()) - l0
        r["cpu_us"] = (s1 - s0) / 1000.0 / max(1, r["upstream_requests"])
        r["idle"] = idle
        print("   %s: %.0f req/s, %d succeeded, %d failed, CPU %.1f us/req, %s KB per idle h2 connection" % (
            r["protocol"], r["rps"], r["succeeded"], r["failed"] + r["errored"], r["cpu_us"],
            "%.1f" % idle["kb_per_conn"] if idle["kb_per_conn"] is not None else "-"), flush=True)
        self.results[name] = r
        return r

    def run(self):
        lib, a, pki = self.lib, self.args, self.pki
        self.body = os.path.join(self.tmp, "body.json")
        with open(self.body, "w") as f:
            f.write(pb.make_request_body())
        self.upstream = pb.Nginx(lib, self.tmp, "upstream", pb.UPSTREAM_SERVER.format(
            addr=UPSTREAM, host=pb.HOST, cert=pki["good_cert"], key=pki["good_key"], path=pb.PATH,
            answer=pb.make_response_body(), dir=os.path.join(self.tmp, "upstream"))).ready(UPSTREAM)
        failed = False
        try:
            proxy = pb.Nginx(lib, self.tmp, "proxy-h2", NGINX_H2_PROXY.format(
                addr=NGINX_H2, up=UPSTREAM, host=pb.HOST, cert=pki["good_cert"], key=pki["good_key"],
                ca=pki["ca_cert"])).ready(NGINX_H2)
            self.measure_h2("nginx", self.hosts(NGINX_H2, "nginx"), None, proxy.pids())
            proxy.stop()
            self.run_agent_h2()
        except Exception as e:
            failed = True
            self.notes.append("measurement failed: %s" % str(e)[:600])
        self.report_h2()
        return 1 if failed else 0

    def run_agent_h2(self):
        lib, a, pki = self.lib, self.args, self.pki
        ca_dir = os.path.join(self.tmp, "ca")
        subprocess.run([os.path.join(lib.BUILD, "vigil"), "ca", "init", "--dir", ca_dir], check=True,
                       capture_output=True)
        cg = lib.Scratch("h2bench")
        agent = lib.Agent(self.tmp, cg.path, log_level="warning", extra="""ca_cert: %s
ca_key: %s
upstream_ca: %s
target_addresses: [%s]
endpoints: [%s]
http2:
  max_concurrent_streams: %d
limits:
  header_timeout: 60s
  idle_timeout: 300s
""" % (os.path.join(ca_dir, "intercept.crt"), os.path.join(ca_dir, "intercept.key"), pki["ca_cert"],
            UPSTREAM, pb.HOST, max(a.streams, 1)))
        agent.start()
        r = self.measure_h2("agent", self.hosts(UPSTREAM, "agent"), cg.path, [agent.proc.pid])
        r["audited"] = pb.count_requests(agent.audit_log)
        if agent.proc.poll() is not None:
            self.notes.append("AGENT EXITED during the run: status %s" % agent.proc.returncode)
        agent.stop()

    def report_h2(self):
        R = self.results
        print()
        print("Vigil HTTP/2 benchmark: h2load (h2 only), keep-alive POST 1.5 KB, answer 1 KB, TLS 1.3; "
              "upstream HTTP/1.1 nginx; load average %.2f" % os.getloadavg()[0])
        ag, ng = R.get("agent"), R.get("nginx")
        if ag and ng:
            x = ag["cpu_us"] / ng["cpu_us"]
            print("  %s CPU per request <= 1.5x nginx (h2): %.2fx (%.1f vs %.1f us)" % (
                "PASS" if x <= 1.5 else "MISS", x, ag["cpu_us"], ng["cpu_us"]))
            print("  req/s agent %.0f, nginx %.0f (%.2fx)" % (ag["rps"], ng["rps"], ag["rps"] / ng["rps"]))
        if ag and ag["idle"]["kb_per_conn"] is not None:
            kb = ag["idle"]["kb_per_conn"]
            print("  %s memory per idle h2 connection <= 16 KB: %.1f KB (nginx %s KB)" % (
                "PASS" if kb <= 16 else "MISS", kb,
                "%.1f" % ng["idle"]["kb_per_conn"] if ng and ng["idle"]["kb_per_conn"] is not None else "-"))
        if ag:
            print("  agent: %d request events audited, %d h2load requests succeeded, %d failed" % (
                ag["audited"], ag["succeeded"], ag["failed"] + ag["errored"]))
        for n in self.notes:
            print("  - " + n)
        print("H2BENCHJSON " + json.dumps(R))


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "idle-h2":
        return idle_h2(sys.argv[2], int(sys.argv[3]))
    ap = argparse.ArgumentParser(description="Vigil HTTP/2 benchmark (see the file header)")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--streams", type=int, default=1, help="h2load -m: concurrent streams per connection")
    ap.add_argument("--idle", type=int, default=200, help="idle h2 connections for the memory measurement")
    args = ap.parse_args()
    sys.exit(H2Bench(args).run())


if __name__ == "__main__":
    main()
