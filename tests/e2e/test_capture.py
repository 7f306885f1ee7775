"""End-to-end: transparent capture with the real BPF programs.

A scratch cgroup gets the agent's programs; clients inside it (as user
nobody) connect to target addresses and must land in the agent, be
attributed to the right pid/uid/exe, see the address they dialled, and
reach the real server through the agent's relay. Clients outside the
cgroup or to other addresses are untouched; UDP/443 to targets is refused;
the fail modes do what they promise when the agent is killed.
"""
import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import lib
from lib import check, test

PY = "/usr/bin/python3"
TMP = tempfile.mkdtemp(prefix="vigil-e2e-capture-")
os.chmod(TMP, 0o755)
lib.at_cleanup(lambda: shutil.rmtree(TMP, ignore_errors=True))
TOOLS = os.path.join(TMP, "tcp_tools.py")
shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "tcp_tools.py"), TOOLS)
os.chmod(TOOLS, 0o755)

CG = lib.Scratch("capture")
TARGET4, OTHER4, PORT = "127.0.10.2", "127.0.10.3", 443
TARGET6, PORT6 = "::1", 4436   # ::1 is shared: a port of its own
SERVERS = {}

# DNS learning: a fake server on loopback answers the clients (private
# /etc/resolv.conf); the agent never resolves these names itself.
DNS = "127.0.10.53"
LEARNED, VIA_CNAME, WILD, UNWATCHED, NOT_LEARNING = "127.0.10.4", "127.0.10.5", "127.0.10.6", "127.0.10.7", "127.0.10.8"
ZONE = {
    "api.learned.test": ["A", LEARNED, 60],
    "chat.cname.test": ["CNAME", "edge.cdn.test", 300],
    "edge.cdn.test": ["A", VIA_CNAME, 30],
    "x.y.wild.test": ["A", WILD, 60],
    "other.test": ["A", UNWATCHED, 60],
    "loop.wild.test": ["LOOP"],
    "api.off.test": ["A", NOT_LEARNING, 60],
}
WATCHED = "[api.openai.com, api.learned.test, chat.cname.test, \"*.wild.test\"]"
METRICS_PORT = lib.free_port()


def start_echo(host, port):
    log = os.path.join(TMP, "echo-%s-%d.jsonl" % (host.replace(":", "_"), port))
    p = lib.spawn([PY, TOOLS, "echo", host, str(port), log], stdout=subprocess.PIPE, text=True)
    check(p.stdout.readline().strip() == "echo ready", "echo server on %s:%d did not start" % (host, port))
    SERVERS[(host, port)] = log
    return log


def echo_peers(host, port):
    try:
        with open(SERVERS[(host, port)]) as f:
            return [json.loads(l) for l in f]
    except FileNotFoundError:
        return []


def client(host, port, data="hello", cgroup=True, uid=lib.NOBODY, sni="example.org", timeout=5.0):
    """The data goes after a real ClientHello for sni: the agent refuses a
    first flight that is not a ClientHello with a name (test_coverage.py),
    and relays an unwatched name with unwatched_sni: passthrough."""
    argv = [PY, TOOLS, "client", host, str(port), data, "--timeout", str(timeout)]
    if sni:
        argv += ["--hello", sni]
    p = lib.run(argv, cgroup=CG.path if cgroup else None, uid=uid, timeout=30)
    check(p.returncode == 0 and p.stdout.strip(), "client failed: %s %s" % (p.stdout, p.stderr))
    return json.loads(p.stdout.strip().splitlines()[-1])


for h, prt in ((TARGET4, PORT), (OTHER4, PORT), (TARGET6, PORT6), (LEARNED, PORT), (VIA_CNAME, PORT),
               (WILD, PORT), (UNWATCHED, PORT), (NOT_LEARNING, PORT)):
    start_echo(h, prt)


def start_dns():
    zone = os.path.join(TMP, "zone.json")
    with open(zone, "w") as f:
        json.dump(ZONE, f)
    p = lib.spawn([PY, os.path.join(lib.ROOT, "tests", "fakes", "fake_dns.py"), DNS, zone],
                  stdout=subprocess.PIPE, text=True)
    check(p.stdout.readline().strip() == "dns ready", "fake DNS server did not start")
    path = os.path.join(TMP, "resolv.conf")
    with open(path, "w") as f:
        f.write("nameserver %s\noptions timeout:2 attempts:1\n" % DNS)
    os.chmod(path, 0o644)
    return path


RESOLV = start_dns()


def resolve(*names):
    """getaddrinfo in a client of the cgroup whose resolver is the fake DNS server."""
    p = lib.run([PY, TOOLS, "resolve"] + list(names), cgroup=CG.path, uid=lib.NOBODY, resolv=RESOLV, timeout=30)
    check(p.returncode == 0 and p.stdout.strip(), "resolver client failed: %s %s" % (p.stdout, p.stderr))
    return json.loads(p.stdout)


# These tests check the capture itself through the relay of an unwatched
# name, so every agent here says unwatched_sni: passthrough explicitly.
RELAY = "unwatched_sni: passthrough\n"
AGENT = lib.Agent(TMP, CG.path, extra="target_addresses: [%s, \"%s\"]\ntarget_ports: [%d, %d]\nendpoints: %s\n"
                  "metrics: 127.0.0.1:%d\n%s" % (TARGET4, TARGET6, PORT, PORT6, WATCHED, METRICS_PORT, RELAY))


def went_through_agent(res, host, port):
    """True if the client's socket is really connected elsewhere than the
    address it dialled (the kernel's view, not the rewritten getpeername),
    and the server never saw the client's own socket."""
    kp = res.get("kernel_peer")
    check(kp, "client could not find its socket in /proc/net/tcp: %s" % res)
    dialled = ipaddress.ip_address(host)
    if dialled.version == 6 and dialled.ipv4_mapped:
        dialled = dialled.ipv4_mapped
    real = ipaddress.ip_address(kp[0])
    if real.version == 6 and real.ipv4_mapped:
        real = real.ipv4_mapped
    redirected = (real, kp[1]) != (dialled, port)
    if not redirected:
        mine = [p for p in echo_peers(host, port) if p["peer"][1] == res["local"][1]]
        check(mine, "direct connection but the server never saw it: %s" % res)
    return redirected


@test
def agent_starts_and_reports_ready():
    AGENT.start()
    check(AGENT.wait_events(lambda e: True, kind="agent_start"), "no agent_start event")


@test
def agent_drops_privileges_once_attached():
    with open("/proc/%d/status" % AGENT.proc.pid) as f:
        st = dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)
    # CAP_SYS_PTRACE (reads /proc/<pid>/exe of other users) and CAP_KILL
    # (continues or kills the stdio MCP launches the exec watch stopped)
    want = "%016x" % (1 << 19 | 1 << 5)
    check(st["CapEff"] == want and st["CapPrm"] == want, "effective/permitted caps %s/%s, want %s" %
          (st["CapEff"], st["CapPrm"], want))
    check(st["CapBnd"] == want, "bounding set %s still allows regaining privileges" % st["CapBnd"])
    check(st["NoNewPrivs"] == "1", "no_new_privs not set")


@test
def redirected_connection_reaches_server_with_identity():
    res = client(TARGET4, PORT, "hello-capture")
    check("error" not in res, "client error: %s" % res)
    check(res["reply_tail"] == "hello-capture", "reply did not come back through the relay: %s" % res)
    check(went_through_agent(res, TARGET4, PORT), "server saw the client's own socket: not redirected")
    evs = AGENT.wait_events(lambda e: e.get("pid") == res["pid"], kind="connection")
    check(evs, "no connection event for pid %d; events: %s" % (res["pid"], AGENT.events()))
    ev = evs[0]
    check(ev["uid"] == lib.NOBODY, "uid %s, expected %d" % (ev["uid"], lib.NOBODY))
    check(ev["exe"] == os.path.realpath(PY), "exe %s, expected %s" % (ev["exe"], os.path.realpath(PY)))
    check(ev["comm"].startswith("python3"), "comm %s" % ev["comm"])
    check(ev["dst_ip"] == TARGET4 and ev["dst_port"] == PORT, "destination %s:%s" % (ev["dst_ip"], ev["dst_port"]))
    check(ev["bytes_up"] == res["sent"], "bytes_up %s, client sent %s" % (ev["bytes_up"], res["sent"]))
    check(ev["bytes_down"] == res["reply_len"], "bytes_down %s, client got %s" % (ev["bytes_down"], res["reply_len"]))
    check(ev["cgroup"] and os.path.basename(CG.path) in ev["cgroup"], "cgroup %s" % ev["cgroup"])
    for k in ("time", "event_id", "agent_id", "host", "seq", "user", "prev_hash", "hash"):
        check(ev.get(k) not in (None, ""), "event lacks %s: %s" % (k, ev))


@test
def application_sees_the_address_it_dialled():
    res = client(TARGET4, PORT, "x")
    check(res["peer"] == [TARGET4, PORT], "getpeername returned %s, expected %s:%d" % (res["peer"], TARGET4, PORT))


@test
def sni_recorded_from_client_hello():
    res = client(TARGET4, PORT, "after-hello", sni="example.org")
    check("error" not in res, "client error %s" % res)
    check(res["reply_tail"] == "after-hello", "hello+data not relayed intact: %s" % res)
    evs = AGENT.wait_events(lambda e: e.get("pid") == res["pid"], kind="connection")
    check(evs and evs[0]["sni"] == "example.org", "sni not recorded: %s" % evs)


@test
def process_outside_cgroup_untouched():
    before = len(AGENT.events("connection"))
    res = client(TARGET4, PORT, "outside", cgroup=False)
    check(res["reply_tail"] == "outside", "client outside the cgroup failed: %s" % res)
    check(not went_through_agent(res, TARGET4, PORT), "a process outside the cgroup was redirected")
    time.sleep(0.2)
    check(len(AGENT.events("connection")) == before, "agent audited a connection it should not have seen")


@test
def non_target_address_untouched():
    res = client(OTHER4, PORT, "other")
    check(res["reply_tail"] == "other", "non-target connection broken: %s" % res)
    check(not went_through_agent(res, OTHER4, PORT), "non-target address was redirected")


@test
def ipv6_target_redirected():
    res = client(TARGET6, PORT6, "v6")
    check("error" not in res, "v6 client error %s" % res)
    check(res["reply_tail"] == "v6", "v6 relay failed: %s" % res)
    check(went_through_agent(res, TARGET6, PORT6), "IPv6 target not redirected")
    check(res["peer"][0] == TARGET6 and res["peer"][1] == PORT6, "v6 getpeername %s" % res["peer"])
    evs = AGENT.wait_events(lambda e: e.get("pid") == res["pid"], kind="connection")
    check(evs and evs[0]["dst_ip"] == TARGET6, "v6 event: %s" % evs)


@test
def v4_mapped_ipv6_socket_redirected():
    res = client("::ffff:" + TARGET4, PORT, "mapped")
    check("error" not in res, "v4-mapped client error %s" % res)
    check(res["reply_tail"] == "mapped", "v4-mapped relay failed: %s" % res)
    check(went_through_agent(res, TARGET4, PORT), "v4-mapped target not redirected")
    evs = AGENT.wait_events(lambda e: e.get("pid") == res["pid"], kind="connection")
    check(evs and evs[0]["dst_ip"] == TARGET4, "v4-mapped event: %s" % evs)


@test
def udp_443_refused_to_targets_and_by_default_to_every_address():
    p = lib.run([PY, TOOLS, "udp", TARGET4, str(PORT)], cgroup=CG.path, uid=lib.NOBODY)
    res = json.loads(p.stdout)
    check(res["connect"] == 111 or res["sendto"] == 111, "UDP/443 not refused with ECONNREFUSED: %s" % res)
    check(res["sendto"] == 111, "sendto to target:443 not refused: %s" % res)
    evs = AGENT.wait_events(lambda e: e.get("reason") == "udp_refused", kind="bypass")
    check(evs and evs[0]["uid"] == lib.NOBODY and evs[0]["dst_ip"] == TARGET4,
          "UDP refusal not audited as a bypass event with identity: %s" % evs[:1])
    # quic: all (the default): QUIC's first flight is encrypted, the guard
    # cannot read its name, so UDP/443 to an address the agent never
    # learned is refused too, and audited
    p = lib.run([PY, TOOLS, "udp", OTHER4, str(PORT)], cgroup=CG.path, uid=lib.NOBODY)
    res = json.loads(p.stdout)
    check(res["connect"] == 111 and res["sendto"] == 111, "UDP/443 to a non-target not refused: %s" % res)
    evs = AGENT.wait_events(lambda e: e.get("reason") == "udp_refused" and e.get("dst_ip") == OTHER4, kind="bypass")
    check(evs and evs[0]["uid"] == lib.NOBODY, "UDP/443 refusal to a non-target not audited: %s" % evs[:1])
    # other UDP ports are not QUIC's
    p = lib.run([PY, TOOLS, "udp", OTHER4, "4443"], cgroup=CG.path, uid=lib.NOBODY)
    res = json.loads(p.stdout)
    check(res["connect"] == 0 and res["sendto"] == 0, "UDP to a non-target's port 4443 refused: %s" % res)


@test
def agent_upstream_not_looped():
    evs = AGENT.events("connection")
    bad = [e for e in evs if e.get("error") and "origin" in e["error"]]
    check(not bad, "agent saw connections without origin (its own upstream looped back?): %s" % bad)
    check(all(e["dst_port"] in (PORT, PORT6) for e in evs), "an event has a destination other than the targets: %s" % evs)


@test
def half_close_and_large_transfer():
    n = 3000000
    res = client(TARGET4, PORT, "@%d" % n, timeout=20)
    check(res.get("reply_len") == res.get("sent", 0) + 5, "large relay lost bytes: %s" % {k: res.get(k) for k in ("reply_len", "error")})


def redirected_soon(host, data, within=2.0):
    """Learning is asynchronous (kernel copy -> agent -> map): the answer's
    address is captured once the agent has read it, a few ms later."""
    t0 = time.time()
    while True:
        res = client(host, PORT, data)
        if went_through_agent(res, host, PORT):
            return res
        if time.time() - t0 > within:
            return None
        time.sleep(0.02)


@test
def dns_answers_teach_watched_addresses():
    res = client(LEARNED, PORT, "before-dns")
    check(res.get("reply_tail") == "before-dns" and not went_through_agent(res, LEARNED, PORT),
          "address redirected before any DNS answer named it: %s" % res)
    got = resolve("api.learned.test", "chat.cname.test", "x.y.wild.test", "other.test")
    want = {"api.learned.test": LEARNED, "chat.cname.test": VIA_CNAME, "x.y.wild.test": WILD, "other.test": UNWATCHED}
    check(got == want, "fake DNS answers %s, expected %s" % (got, want))
    for name, ip in (("api.learned.test", LEARNED), ("chat.cname.test (via CNAME)", VIA_CNAME),
                     ("*.wild.test", WILD)):
        res = redirected_soon(ip, "learned")
        check(res, "%s answered %s but connections to it are not captured; agent log: %s" % (name, ip, AGENT.log_tail(8)))
        check(res["peer"] == [ip, PORT], "getpeername %s for a learned address" % res["peer"])
        evs = AGENT.wait_events(lambda e: e.get("pid") == res["pid"], kind="connection")
        check(evs and evs[0]["dst_ip"] == ip, "no connection event to learned %s: %s" % (ip, evs))
    time.sleep(0.2)
    res = client(UNWATCHED, PORT, "unwatched")
    check(res.get("reply_tail") == "unwatched" and not went_through_agent(res, UNWATCHED, PORT),
          "an unwatched name's address was learned: %s" % res)


@test
def hostile_dns_answer_changes_nothing():
    got = resolve("loop.wild.test")
    check(got["loop.wild.test"].startswith("error"), "the looping answer resolved: %s" % got)
    time.sleep(0.2)
    check(AGENT.proc.poll() is None, "agent died on a hostile DNS answer: %s" % AGENT.log_tail())
    res = client(TARGET4, PORT, "after-hostile-dns")
    check(res.get("reply_tail") == "after-hostile-dns" and went_through_agent(res, TARGET4, PORT),
          "agent not serving after a hostile DNS answer: %s" % res)
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % METRICS_PORT, timeout=5).read().decode()
    vals = dict(l.rsplit(" ", 1) for l in text.splitlines() if l and not l.startswith("#"))
    check(int(vals.get("vigil_agent_dns_answers_total", 0)) >= 5, "DNS answers not counted: %s" %
          vals.get("vigil_agent_dns_answers_total"))
    check(vals.get("vigil_agent_dns_learned_total") == "3", "learned %s addresses, expected 3" %
          vals.get("vigil_agent_dns_learned_total"))


@test
def tamper_signals_are_audited():
    # Someone edits the config under the running agent...
    os.utime(AGENT.config, None)
    evs = AGENT.wait_events(lambda e: e.get("reason") == "config_changed", kind="tamper", timeout=5)
    check(evs and AGENT.config in evs[0]["error"], "config change not audited: %s" % evs)
    # ...and detaches one of its programs.
    out = subprocess.run(["bpftool", "-j", "cgroup", "show", CG.path], capture_output=True, text=True).stdout
    progs = json.loads(out or "[]")
    check(progs, "no programs attached to %s" % CG.path)
    links = json.loads(subprocess.run(["bpftool", "-j", "link", "show"], capture_output=True, text=True).stdout)
    ids = [l["id"] for l in links if l.get("type") == "cgroup" and l.get("attach_type") == "cgroup_inet4_connect"
           and l.get("cgroup_id") == os.stat(CG.path).st_ino]
    check(ids, "the agent's connect4 link not found: %s" % links)
    subprocess.run(["bpftool", "link", "detach", "id", str(ids[0])], check=True)
    evs = AGENT.wait_events(lambda e: e.get("reason") == "programs_detached", kind="tamper", timeout=5)
    check(evs, "a detached program was not noticed")


@test
def sigterm_detaches_and_exits_zero():
    rc = AGENT.stop()
    check(rc == 0, "agent exit status %s after SIGTERM; log: %s" % (rc, AGENT.log_tail()))
    out = subprocess.run(["bpftool", "cgroup", "show", CG.path], capture_output=True, text=True).stdout
    check(out.strip() == "" or "connect" not in out, "programs still attached after SIGTERM: %s" % out)
    check(AGENT.events("agent_stop"), "no agent_stop event")
    res = client(TARGET4, PORT, "after-stop")
    check(res["reply_tail"] == "after-stop" and not went_through_agent(res, TARGET4, PORT), "traffic after stop: %s" % res)


@test
def dns_learning_off_learns_nothing():
    a = lib.Agent(TMP, CG.path, name="nodns", extra="target_addresses: [%s]\nendpoints: [api.off.test]\n"
                  "dns_learning: off\n%s" % (TARGET4, RELAY)).start()
    out = subprocess.run(["bpftool", "-j", "cgroup", "show", CG.path], capture_output=True, text=True).stdout
    check("ingress" not in out, "DNS copy program attached with dns_learning: off: %s" % out)
    check(resolve("api.off.test") == {"api.off.test": NOT_LEARNING}, "fake DNS did not answer api.off.test")
    time.sleep(0.3)
    res = client(NOT_LEARNING, PORT, "off")
    check(res.get("reply_tail") == "off" and not went_through_agent(res, NOT_LEARNING, PORT),
          "address learned with dns_learning: off: %s" % res)
    check(a.stop() == 0, "agent exit status")


@test
def fail_open_kill9_goes_direct():
    a = lib.Agent(TMP, CG.path, name="open", extra="target_addresses: [%s]\nfail_mode: open\n%s" % (TARGET4, RELAY)).start()
    res = client(TARGET4, PORT, "before-kill")
    check(went_through_agent(res, TARGET4, PORT), "not redirected before kill")
    a.kill9()
    t0 = time.time()
    while True:
        res = client(TARGET4, PORT, "after-kill", timeout=2)
        if res.get("reply_tail") == "after-kill" and not went_through_agent(res, TARGET4, PORT):
            break
        check(time.time() - t0 < 1.0, "traffic not direct within 1 s of kill -9: %s" % res)
        time.sleep(0.05)


@test
def fail_closed_refuses_fast_then_recovers():
    a = lib.Agent(TMP, CG.path, name="closed", extra="target_addresses: [%s]\nfail_mode: closed\n%s" % (TARGET4, RELAY))
    a.start()
    res = client(TARGET4, PORT, "closed-1")
    check(went_through_agent(res, TARGET4, PORT), "not redirected in closed mode")
    a.kill9()
    res = client(TARGET4, PORT, "closed-2", timeout=3)
    check(res.get("error") == 111, "target connect with the agent dead did not fail with ECONNREFUSED: %s" % res)
    check(res["connect_ms"] < 500, "refusal was not immediate: %.0f ms" % res["connect_ms"])
    res = client(OTHER4, PORT, "closed-other")
    check(res.get("reply_tail") == "closed-other", "non-target broken in closed mode: %s" % res)
    a.start()
    res = client(TARGET4, PORT, "closed-3")
    check(res.get("reply_tail") == "closed-3" and went_through_agent(res, TARGET4, PORT),
          "not working through the restarted agent: %s" % res)
    rc = a.stop()
    check(rc == 0, "closed-mode agent exit %s" % rc)
    check(not os.path.exists(a.pin_dir) or not os.listdir(a.pin_dir), "pins left after SIGTERM")
    res = client(TARGET4, PORT, "closed-4")
    check(res.get("reply_tail") == "closed-4", "traffic broken after clean stop in closed mode: %s" % res)


@test
def fail_closed_restart_drops_targets_no_longer_configured():
    a = lib.Agent(TMP, CG.path, name="closed2",
                  extra="target_addresses: [%s, %s]\nfail_mode: closed\n%s" % (TARGET4, OTHER4, RELAY)).start()
    res = client(OTHER4, PORT, "watched-other")
    check(went_through_agent(res, OTHER4, PORT), "second target not redirected")
    a.kill9()
    with open(a.config) as f:
        text = f.read().replace("target_addresses: [%s, %s]" % (TARGET4, OTHER4), "target_addresses: [%s]" % TARGET4)
    with open(a.config, "w") as f:
        f.write(text)
    a.start()
    res = client(OTHER4, PORT, "unwatched-now")
    check(res.get("reply_tail") == "unwatched-now" and not went_through_agent(res, OTHER4, PORT),
          "address dropped from the config still redirected after restart: %s" % res)
    res = client(TARGET4, PORT, "still-watched")
    check(went_through_agent(res, TARGET4, PORT), "remaining target lost after restart")
    check(a.stop() == 0, "agent exit status")


@test
def runs_as_unprivileged_user_when_configured():
    a = lib.Agent(TMP, CG.path, name="asuser",
                  extra="target_addresses: [%s]\nfail_mode: closed\nuser: nobody\n%s" % (TARGET4, RELAY)).start()
    with open("/proc/%d/status" % a.proc.pid) as f:
        st = dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)
    check(st["Uid"].split()[:3] == ["65534"] * 3, "agent uid %s, want nobody" % st["Uid"])
    check(st["CapEff"] == "%016x" % (1 << 19 | 1 << 5), "caps as nobody: %s" % st["CapEff"])
    res = client(TARGET4, PORT, "as-user", uid=60001)
    check(res.get("reply_tail") == "as-user" and went_through_agent(res, TARGET4, PORT), "relay as nobody: %s" % res)
    evs = a.wait_events(lambda e: e.get("pid") == res["pid"], kind="connection")
    check(evs and evs[0]["exe"] == os.path.realpath(PY) and evs[0]["uid"] == 60001,
          "identity of another user's process not resolved: %s" % evs)
    check(a.stop() == 0, "agent running as nobody did not exit 0")
    check(not os.path.exists(a.pin_dir) or not os.listdir(a.pin_dir), "pins left by an agent running as nobody")


@test
def check_flag_reports_file_and_line():
    bad = os.path.join(TMP, "bad.yaml")
    with open(bad, "w") as f:
        f.write("listen: 127.0.0.1:15001\nfail_mode: maybe\n")
    p = subprocess.run([lib.AGENT, "--check", "--config", bad], capture_output=True, text=True)
    check(p.returncode == 2, "--check exit %d for a bad config" % p.returncode)
    check(p.stderr.startswith(bad + ":2: "), "--check did not name file:line: %r" % p.stderr)
    p = subprocess.run([lib.AGENT, "--check", "--config", AGENT.config], capture_output=True, text=True)
    check(p.returncode == 0, "--check refused a good config: %s" % p.stderr)


@test
def help_documents_options():
    p = subprocess.run([lib.AGENT, "--help"], capture_output=True, text=True)
    check(p.returncode == 0, "--help exit %d" % p.returncode)
    for opt in ("--config", "--check", "--log-level", "--version", "--help"):
        check(opt in p.stdout, "--help lacks %s" % opt)


if __name__ == "__main__":
    lib.main()
