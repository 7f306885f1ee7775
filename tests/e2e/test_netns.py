"""End-to-end: clients in other network namespaces (what containers and pods
are to the kernel) are intercepted like host processes.

The test makes its own namespaces (`ip netns add`), each joined to the host
by a veth pair routed to a fake provider that listens on the host side of
the first pair (198.19.14.1, benchmarking range, interfaces this test
creates and removes). Clients run as nobody, in the scratch cgroup (in a
child cgroup named like a Docker container's scope) AND in a namespace:
 - the first connection from a namespace never seen is refused (the agent
   then opens a listener there) or captured, never direct; the retry is
   intercepted, the secret does not reach the provider, and the event names
   the client and its container;
 - two namespaces at once, both clients on the same local port, do not get
   each other's identity (origins are keyed by netns);
 - a namespace with its loopback down stays refused, audited, never direct;
 - a namespace removed: the agent closes its listener (metric, log);
 - a container already running when the agent starts: first connection
   captured; a process squatting the agent's port in its namespace gets
   nothing and nothing goes direct; a rootless user+network namespace
   (what rootless Podman makes) is intercepted;
 - all with the agent holding exactly the DaemonSet's capabilities
   (scripts/k8s/vigil-agent.yaml), and stopping cleanly with its helper.
"""
import json
import os
import signal
import subprocess
import time
import urllib.request

import lib
from lib import check, test

import yaml

import rig as rigmod

PROVIDER = "198.19.14.1"
TAG = "%05d" % (os.getpid() % 100000)
AWS_KEY = "AKIA" + "Z7QW3RT5YU2IO4PL"   # split so this file itself is not a credential finding
CONTAINER_ID = ("c0ffee%02d" % (os.getpid() % 100)) * 8   # 64 hex digits
METRICS = "127.14.0.1:%d" % lib.free_port("127.14.0.1")


def sh(*argv, check_rc=True):
    p = subprocess.run(list(argv), capture_output=True, text=True)
    if check_rc and p.returncode != 0:
        raise AssertionError("%s: %s" % (" ".join(argv), p.stderr.strip()))
    return p


class Netns:
    """A network namespace with a veth pair to the host: host side
    198.19.14.(4n+1)/30, namespace side .(4n+2), default route via the
    host side. Removed at exit."""

    def __init__(self, n, lo_up=True, pause_cgroup=None):
        self.pause = None
        self.name = "vigil-t%s-%d" % (TAG, n)
        self.host_if, self.ns_if = "vt%s%dh" % (TAG, n), "vt%s%dn" % (TAG, n)
        self.host_ip, self.ns_ip = "198.19.14.%d" % (4 * n + 1), "198.19.14.%d" % (4 * n + 2)
        sh("ip", "netns", "add", self.name)
        lib.at_cleanup(self.remove)
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        sh("ip", "link", "set", self.ns_if, "netns", self.name)
        sh("ip", "addr", "add", self.host_ip + "/30", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")
        self.ip("addr", "add", self.ns_ip + "/30", "dev", self.ns_if)
        self.ip("link", "set", self.ns_if, "up")
        self.ip("route", "add", "default", "via", self.host_ip)
        if lo_up:
            self.ip("link", "set", "lo", "up")
        # What a pod's pause process is: something living in the namespace
        # between client runs (the agent closes the listeners of a
        # namespace with no process left).
        pause = ["ip", "netns", "exec", self.name, "sleep", "600"]
        if pause_cgroup:
            pause = ["sh", "-c", 'echo $$ > "%s/cgroup.procs" && exec "$@"' % pause_cgroup, "sh"] + pause
        self.pause = subprocess.Popen(pause)
        lib.at_cleanup(lambda: lib._stop(self.pause))

    def ip(self, *args):
        return sh("ip", "-n", self.name, *args)

    def remove(self):
        if self.pause:
            lib._stop(self.pause)
        sh("ip", "link", "del", self.host_if, check_rc=False)
        sh("ip", "netns", "del", self.name, check_rc=False)

    def run(self, argv, uid=lib.NOBODY, cgroup=None, timeout=40, spawn=False):
        cmd = ["nsenter", "--net=/run/netns/" + self.name] + lib.wrap(argv, cgroup or CONTAINER_CG, uid,
                                                                     hosts=RIG.hosts)
        env = dict(os.environ, VIGIL_CG=cgroup or CONTAINER_CG, VIGIL_HOSTS=RIG.hosts)
        if spawn:
            p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            lib.at_cleanup(lambda: lib._stop(p))
            return p
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def curl_argv(body, extra=()):
    return ["curl", "-sS", "--max-time", "20", "--cacert", RIG.ca, "-o", "-", "-w", "\n%{http_code}",
            "-H", "Authorization: Bearer sk-test", "-H", "Content-Type: application/json"] + list(extra) + \
        ["--data-binary", body, "https://api.openai.com/v1/chat/completions"]


def chat(model, text):
    return json.dumps({"model": model, "messages": [{"role": "user", "content": text}]})


def metric(name):
    with urllib.request.urlopen("http://%s/metrics" % METRICS, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError("metric %s missing" % name)


def provider_saw(needle):
    return [r for r in RIG.received() if needle in r.get("body", "")]


# The fake provider on the host side of the first veth pair: the namespaces
# reach it over their veth, the agent (host netns) over its local address.
NS = [Netns(0)]
RIG = rigmod.Rig("netns", {"api.openai.com": PROVIDER}, {}, endpoints=["api.openai.com"],
                 extra_targets=[PROVIDER], agent_extra="metrics: %s\n" % METRICS)
RIG.start_fake("good", PROVIDER, "good")
CONTAINER_CG = os.path.join(RIG.cg.path, "docker-%s.scope" % CONTAINER_ID)
os.mkdir(CONTAINER_CG)
lib.at_cleanup(lambda: os.path.isdir(CONTAINER_CG) and os.rmdir(CONTAINER_CG))
# A container that runs before the agent starts: its init is already in
# the watched cgroup and in its own netns.
EARLY = Netns(3, pause_cgroup=CONTAINER_CG)
AGENT = RIG.agent
# The agent runs with exactly the capabilities the Kubernetes DaemonSet
# grants (scripts/k8s/vigil-agent.yaml), as root: if that list misses one
# the agent or its netns helper needs, the tests below fail.
with open(os.path.join(lib.ROOT, "scripts", "k8s", "vigil-agent.yaml")) as f:
    _ds = [d for d in yaml.safe_load_all(f) if d and d.get("kind") == "DaemonSet"][0]
CAPS = _ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"]
WRAPPER = os.path.join(RIG.tmp, "agent-k8s-caps.sh")
with open(WRAPPER, "w") as f:
    f.write('#!/bin/sh\nexec setpriv --bounding-set=-all,%s --inh-caps=-all --ambient-caps=-all -- %s "$@"\n'
            % (",".join("+" + c.lower() for c in CAPS), lib.AGENT))
os.chmod(WRAPPER, 0o755)
lib.AGENT = WRAPPER
AGENT.start()


@test
def agent_ready_with_the_daemonsets_capabilities():
    with open("/proc/%d/status" % AGENT.proc.pid) as f:
        bnd = [l for l in f if l.startswith("CapBnd:")][0].split()[1]
    check(int(bnd, 16) & (1 << 21) == 0, "the agent kept CAP_SYS_ADMIN in its bounding set (%s)" % bnd)
    # Its netns helper keeps CAP_SYS_ADMIN (setns), CAP_SYS_PTRACE and, with the
    # first-flight guard on (the default), CAP_NET_ADMIN (SOCK_DESTROY of the
    # sockets the guard refused); never BPF.
    kids = open("/proc/%d/task/%d/children" % (AGENT.proc.pid, AGENT.proc.pid)).read().split()
    helpers = [k for k in kids if open("/proc/%s/comm" % k).read().strip() == "vigil-netns"]
    check(len(helpers) == 1, "no netns helper among the agent's children %s" % kids)
    with open("/proc/%s/status" % helpers[0]) as f:
        eff = int([l for l in f if l.startswith("CapEff:")][0].split()[1], 16)
    check(eff == (1 << 21) | (1 << 19) | (1 << 12), "helper capabilities %x, want SYS_ADMIN|SYS_PTRACE|NET_ADMIN" % eff)
    with urllib.request.urlopen("http://%s/ready" % METRICS, timeout=5) as r:
        check(r.status == 200 and r.read() == b"ready\n", "/ready did not say ready")


@test
def container_running_before_the_agent_first_connection_captured():
    deadline = time.time() + 5
    while "net:[%d]" % os.stat("/run/netns/" + EARLY.name).st_ino not in open(AGENT.stderr_path).read() and \
            time.time() < deadline:
        time.sleep(0.05)
    p = EARLY.run(curl_argv(chat("gpt-4o-mini", "I was here first")))
    body, _, code = p.stdout.rpartition("\n")
    check(code == "200" and json.loads(body)["choices"][0]["message"]["content"] == "echo: I was here first",
          "first connection of a container older than the agent: %s %s %s" % (code, p.stderr.strip(), body[:200]))
    evs = RIG.request_events(lambda e: e.get("container_id") == CONTAINER_ID and e["uid"] == lib.NOBODY)
    check(evs, "no request event naming the container")
    refused = [e for e in AGENT.events("bypass") if e.get("reason") == "netns_no_listener"]
    check(not refused, "the older container's first connection was refused: %s" % refused[:1])
    EARLY.remove()


@test
def first_connection_from_new_netns_never_direct_retry_intercepted():
    ns = NS[0]
    secret = "debug this for me: %s" % AWS_KEY
    before = len(RIG.received())
    p = ns.run(curl_argv(chat("gpt-4o-mini", secret)))
    body, _, code = p.stdout.rpartition("\n")
    if code != "200":
        # Refused: ECONNREFUSED (curl exit 7) at once, nothing sent.
        check(p.returncode == 7, "first connection: curl exit %d, %s" % (p.returncode, p.stderr.strip()))
        check(len(RIG.received()) == before, "a refused connection still reached the provider")
        evs = AGENT.wait_events(lambda e: e.get("reason") == "netns_no_listener" and e.get("uid") == lib.NOBODY,
                                kind="bypass")
        check(evs and evs[-1]["action"] == "block", "refusal not audited: %s" % AGENT.events()[-3:])
        check(evs[-1]["dst_ip"] == PROVIDER and evs[-1]["dst_port"] == 443, "refusal event %s" % evs[-1])
        # /proc is read after the fact: a client that exited at once is
        # named by what the kernel recorded (uid, pid, comm) only.
        check(evs[-1]["comm"] == "curl" and (evs[-1]["cgroup"] is None or
                                             evs[-1].get("container_id") == CONTAINER_ID),
              "refusal event identity %s" % evs[-1])
        deadline = time.time() + 5
        while metric("vigil_agent_netns_listeners") < 1 and time.time() < deadline:
            time.sleep(0.05)
        p = ns.run(curl_argv(chat("gpt-4o-mini", secret)))
        body, _, code = p.stdout.rpartition("\n")
    check(code in ("200", "403"), "retry: status %s, %s %s; agent: %s" % (code, p.stderr.strip(), body[:200],
                                                                      "".join(l for l in open(AGENT.stderr_path) if "netns" in l)[-3000:]))
    check(not provider_saw(AWS_KEY), "the secret reached the provider from a namespace")
    evs = RIG.request_events(lambda e: e["uid"] == lib.NOBODY and "AWS_ACCESS_KEY" in
                             [f["type"] for f in e.get("findings") or []])
    check(evs, "no request event with the finding: %s" % AGENT.events()[-3:])
    ev = evs[-1]
    check(ev["exe"].endswith("curl") and ev["comm"] == "curl", "client not named: %s" % ev)
    check(ev["cgroup"].endswith("/docker-%s.scope" % CONTAINER_ID), "cgroup %s" % ev["cgroup"])
    check(ev.get("container_id") == CONTAINER_ID, "container_id %s" % ev.get("container_id"))
    check(ev["dst_ip"] == PROVIDER and ev["sni"] == "api.openai.com", "destination %s" % ev)
    # A clean request from the namespace is answered through the agent.
    p = ns.run(curl_argv(chat("gpt-4o-mini", "hello from a container")))
    body, _, code = p.stdout.rpartition("\n")
    check(code == "200" and json.loads(body)["choices"][0]["message"]["content"] == "echo: hello from a container",
          "clean request: %s %s" % (code, body[:200]))


GUARD_TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guard_tools.py")


@test
def first_flight_guard_refuses_in_a_namespace():
    """A client in a namespace names api.openai.com in a CONNECT line to an
    address:port the agent does not capture (a server on the host side of
    the veth): the kernel drops it, the agent's helper destroys the socket
    inside that namespace, so the client fails at once; nothing reaches the
    server; the refusal names the client and its container."""
    log = os.path.join(RIG.tmp, "ns-guard-sink.jsonl")
    port = lib.free_port(PROVIDER)
    srv = lib.spawn(["/usr/bin/python3", GUARD_TOOLS, "sink", PROVIDER, str(port), log], stdout=subprocess.PIPE,
                    text=True)
    check(srv.stdout.readline().strip() == "sink ready", "the sink did not start")
    line = "CONNECT api.openai.com:443 HTTP/1.1\r\n\r\n".encode().hex()
    p = NS[0].run(["/usr/bin/python3", GUARD_TOOLS, "send", PROVIDER, str(port), line])
    res = json.loads(p.stdout.strip().splitlines()[-1])
    check(res.get("error") in (103, 107, 32) and res["ms"] < 3000,
          "the namespaced client was not told of the refusal at once: %s" % res)
    evs = AGENT.wait_events(lambda e: e.get("reason") == "first_flight" and e.get("dst_port") == port,
                            kind="connection")
    check(evs and evs[-1]["uid"] == lib.NOBODY and evs[-1]["sni"] == "api.openai.com" and
          evs[-1].get("container_id") == CONTAINER_ID, "namespaced refusal not audited with identity: %s" % evs[-1:])
    time.sleep(0.2)
    got = RIG.read_jsonl(log)
    check(got and all(g["n"] == 0 for g in got), "the server received a refused first flight: %s" % got)


@test
def two_namespaces_same_client_port_do_not_collide():
    NS.append(Netns(1))
    ns_a, ns_b = NS
    port = str(lib.free_port())
    # Make sure both namespaces have a listener (the first call may be refused).
    for ns in (ns_a, ns_b):
        for _ in range(2):
            if ns.run(curl_argv(chat("warmup", "hi"))).returncode == 0:
                break
    # Both clients connect from 127.0.0.1:port, each in its namespace,
    # while the agent is stopped: both connections wait in the backlogs
    # and both origins are recorded before the agent looks up either (an
    # agent that accepted at once would hide a collision of the keys).
    extra = ["--local-port", port]
    os.kill(AGENT.proc.pid, signal.SIGSTOP)
    try:
        pa = ns_a.run(curl_argv(chat("model-a", "I am A"), extra), uid=lib.NOBODY, spawn=True)
        pb = ns_b.run(curl_argv(chat("model-b", "I am B"), extra), uid=lib.NOBODY - 1, spawn=True)
        time.sleep(1.5)
    finally:
        os.kill(AGENT.proc.pid, signal.SIGCONT)
    out_a, out_b = pa.communicate(timeout=40), pb.communicate(timeout=40)
    for name, (o, e), want in (("A", out_a, "echo: I am A"), ("B", out_b, "echo: I am B")):
        body, _, code = o.rpartition("\n")
        check(code == "200" and json.loads(body)["choices"][0]["message"]["content"] == want,
              "client %s: %s %s %s" % (name, code, body[:200], e.strip()))
    for model, uid in (("model-a", lib.NOBODY), ("model-b", lib.NOBODY - 1)):
        evs = RIG.request_events(lambda e, m=model: e.get("model") == m)
        check(len(evs) == 1, "%d events for %s" % (len(evs), model))
        check(evs[0]["uid"] == uid, "%s attributed to uid %s, want %s (origin from the other netns)" %
              (model, evs[0]["uid"], uid))


@test
def loopback_down_namespace_stays_refused():
    ns = Netns(2, lo_up=False)
    before = len(RIG.received())
    refusals = len(AGENT.events("bypass"))
    for attempt in range(2):
        p = ns.run(curl_argv(chat("gpt-4o-mini", "lo is down")))
        check(p.returncode == 7, "attempt %d with lo down: curl exit %d (%s)" % (attempt, p.returncode,
                                                                               p.stderr.strip()))
        time.sleep(0.3)
    check(len(RIG.received()) == before, "a client with loopback down reached the provider")
    time.sleep(0.5)
    evs = [e for e in AGENT.events("bypass")[refusals:] if e.get("reason") == "netns_no_listener"]
    check(len(evs) >= 2 and all(e["uid"] == lib.NOBODY and e["action"] == "block" for e in evs),
          "refusals not audited: %s" % evs)
    ns.remove()


@test
def removed_namespace_listener_closed():
    check(len(NS) == 2, "needs the namespaces of the tests above")
    # nsfs inode numbers are reused once a namespace is freed: count the
    # closing lines for this one rather than look for the first.
    line = "no process left in net:[%d]" % os.stat("/run/netns/" + NS[1].name).st_ino
    closed = lambda: open(AGENT.stderr_path).read().count(line)
    time.sleep(2 * 2.1)   # earlier tests' namespaces settle (sweep every 2 s)
    n, before = metric("vigil_agent_netns_listeners"), closed()
    check(n >= 2, "listeners before removal: %s" % n)
    NS[1].remove()
    deadline = time.time() + 8
    while closed() == before and time.time() < deadline:
        time.sleep(0.1)
    check(closed() == before + 1, "the removed namespace's listener was not closed")
    check(metric("vigil_agent_netns_listeners") == n - 1, "listeners %s after removal, want %s" %
          (metric("vigil_agent_netns_listeners"), n - 1))
    # The namespace still in use keeps its listener and keeps working.
    p = NS[0].run(curl_argv(chat("gpt-4o-mini", "still here")))
    check(p.stdout.rpartition("\n")[2] == "200", "namespace A after B's removal: %s" % p.stderr.strip())


@test
def squatter_on_the_agents_port_in_a_namespace_gets_nothing():
    """A process of the container binds the agent's address and port in its
    netns first: the hook must not hand it its neighbours' (or its own)
    target connections, and nothing may go direct either."""
    ns = Netns(4)
    squat = ns.run([rigmod.PY, "-c", (
        "import socket,sys\n"
        "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('127.0.0.1', %d)); s.listen(); print('listening', flush=True)\n"
        "c,_=s.accept(); print('GOT', c.recv(100), flush=True)\n") % AGENT.port], spawn=True)
    if squat.stdout.readline().strip() != "listening":
        squat.kill()
        check(False, "squatter did not start: %s" % squat.communicate()[1])
    before = len(RIG.received())
    for attempt in range(2):
        p = ns.run(curl_argv(chat("gpt-4o-mini", "squatted " + AWS_KEY)))
        check(p.returncode == 7, "attempt %d: curl exit %d (%s)" % (attempt, p.returncode, p.stderr.strip()))
        time.sleep(0.3)
    check(len(RIG.received()) == before and not provider_saw(AWS_KEY), "a squatted namespace reached the provider")
    squat.kill()
    out = squat.communicate()[0]
    check("GOT" not in out, "the squatter received a redirected connection: %s" % out)
    ns.remove()


@test
def rootless_user_and_network_namespace_intercepted():
    """What rootless Podman does: nobody makes a user namespace with its own
    network namespace (no route anywhere) and brings its loopback up. The
    first connection is refused, the retry reaches the provider only
    through the agent, inspected."""
    script = ('ip link set lo up || exit 90; '
              'for i in 1 2 3; do curl -sS --max-time 20 --cacert "$0" -o /dev/null -w "%{http_code}\\n" '
              '-H "Authorization: Bearer sk-test" -H "Content-Type: application/json" --data-binary "$1" '
              'https://api.openai.com/v1/chat/completions && exit 0; sleep 0.3; done; exit 1')
    secret_events = lambda: RIG.request_events(lambda e: e["uid"] == lib.NOBODY and "AWS_ACCESS_KEY" in
                                               [f["type"] for f in e.get("findings") or []], timeout=0)
    before = len(secret_events())
    p = lib.run(["unshare", "-rn", "sh", "-c", script, RIG.ca, chat("gpt-4o-mini", "rootless " + AWS_KEY)],
                cgroup=CONTAINER_CG, uid=lib.NOBODY, hosts=RIG.hosts, timeout=60)
    check(p.returncode == 0 and p.stdout.strip().splitlines()[-1] in ("200", "403"),
          "rootless client: exit %d, %s %s" % (p.returncode, p.stdout.strip(), p.stderr.strip()))
    check(not provider_saw(AWS_KEY), "the secret reached the provider from a rootless namespace")
    deadline = time.time() + 5
    while len(secret_events()) <= before and time.time() < deadline:
        time.sleep(0.05)
    evs = secret_events()
    check(len(evs) > before and evs[-1]["container_id"] == CONTAINER_ID, "rootless request not audited: %s" % evs[-1:])


@test
def agent_stops_cleanly_with_its_helper():
    helpers = [k for k in open("/proc/%d/task/%d/children" % (AGENT.proc.pid, AGENT.proc.pid)).read().split()]
    rc = AGENT.stop()
    check(rc == 0, "agent exit status %s" % rc)
    for k in helpers:
        check(not os.path.exists("/proc/%s" % k) or "Z" in open("/proc/%s/stat" % k).read().split()[2],
              "netns helper %s outlived the agent" % k)
    log = open(AGENT.stderr_path).read()
    for bad in ("Sanitizer", "runtime error"):
        check(bad not in log, "%s in the agent's log: %s" % (bad, log[log.find(bad) - 200:][:1500]))


if __name__ == "__main__":
    lib.main()
