#!/usr/bin/env python3
"""make demo: Vigil doing its main job on one machine, self-contained.

Starts a fake LLM provider on loopback (standing in for api.openai.com and
api.anthropic.com, with its own "public web" CA), creates an interception
CA, loads the agent's eBPF programs into a scratch cgroup, and runs real
clients in that cgroup, unmodified: curl, Python's urllib, and the official
openai and @anthropic-ai/sdk Node packages. Their connections are steered
into the agent by the kernel, decrypted, inspected, forwarded, streamed
back and audited. The demo then prints what a SOC analyst sees.
Everything it starts, it stops; nothing outside the scratch cgroup is
affected.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.join(ROOT, "tests", "fakes"))
import lib  # noqa: E402
import testpki  # noqa: E402

PY = "/usr/bin/python3"
AWS_KEY = "AKIA" + "Z7QW3RT5YU2IO4PL"   # a made-up key, split so this file is not itself a finding
DEMO_POLICY = """version: 1
default: allow
redaction: { default: redact, EMAIL: tokenize, CREDIT_CARD: mask }
budgets:
  - { name: daily-tokens, per: user, tokens: 200k, window: day }
rules:
  - name: no-secrets
    when: { finding: ['@all_secrets'] }
    action: block
  - name: personal-data
    when: { finding: ['@all_pii'] }
    action: redact
"""
BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def say(msg):
    print("\n%s==> %s%s" % (BOLD, msg, RESET), flush=True)


def main():
    tmp = tempfile.mkdtemp(prefix="vigil-demo-")
    os.chmod(tmp, 0o755)
    lib.at_cleanup(lambda: shutil.rmtree(tmp, ignore_errors=True))
    clients = os.path.join(ROOT, "tests", "clients")

    say("Installing the official SDK clients (npm, pinned lock file)")
    subprocess.run(["bash", os.path.join(clients, "install.sh")], check=True)

    say("Creating the interception CA (vigil ca init)")
    ca_dir = os.path.join(tmp, "ca")
    subprocess.run([os.path.join(lib.BUILD, "vigil"), "ca", "init", "--dir", ca_dir], check=True)
    os.chmod(ca_dir, 0o755)
    ca = os.path.join(ca_dir, "intercept.crt")
    os.chmod(ca, 0o644)

    say("Starting a fake LLM provider on 127.0.0.2:443 (speaks the OpenAI and Anthropic APIs, SSE included)")
    pki = testpki.make_pki(os.path.join(tmp, "pki"))
    record = os.path.join(tmp, "provider-received.jsonl")
    fake = lib.spawn([PY, os.path.join(ROOT, "tests", "fakes", "fake_provider.py"), "--listen", "127.0.0.2:443",
                      "--cert", pki["good_cert"], "--key", pki["good_key"], "--record", record],
                     stdout=subprocess.PIPE, text=True)
    while "fake-provider ready" not in fake.stdout.readline():
        pass
    # An ordinary web site on an address no watched endpoint uses: the
    # agent never sees it (the first-flight guard reads its SNI and lets it go).
    site = lib.spawn([PY, os.path.join(ROOT, "tests", "fakes", "fake_provider.py"), "--listen", "127.0.0.3:443",
                      "--cert", pki["good_cert"], "--key", pki["good_key"],
                      "--record", os.path.join(tmp, "site-received.jsonl")], stdout=subprocess.PIPE, text=True)
    while "fake-provider ready" not in site.stdout.readline():
        pass

    say("Starting vigil-collector (SQLite store): PKI, enrollment of this workstation's agent")
    collector = os.path.join(lib.BUILD, "vigil-collector")
    cdir = os.path.join(tmp, "collector")
    os.makedirs(cdir)
    subprocess.run([collector, "pki", "init", "--dir", os.path.join(cdir, "pki")], check=True, capture_output=True)
    ingest_port, api_port = lib.free_port(), lib.free_port()
    token = "demo-soc-token-" + os.urandom(8).hex()
    ccfg = os.path.join(cdir, "collector.yaml")
    with open(ccfg, "w") as f:
        f.write("listen: 127.0.0.1:%d\napi: 127.0.0.1:%d\nstore: sqlite:%s/events.db\n"
                "tls_cert: %s/pki/server.crt\ntls_key: %s/pki/server.key\nclient_ca: %s/pki/ca.crt\n"
                "log_level: warning\ntokens:\n  - { name: soc, role: analyst, token: %s }\n"
                % (ingest_port, api_port, cdir, cdir, cdir, cdir, token))
    col = lib.spawn([collector, "--config", ccfg], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while "vigil-collector ready" not in col.stderr.readline():
        if col.poll() is not None:
            raise SystemExit("vigil-collector did not start")
    threading.Thread(target=lambda: col.stderr.read(), daemon=True).start()   # keep its log pipe drained
    bundle = os.path.join(tmp, "enroll")
    subprocess.run([collector, "enroll", "--agent-id", "demo-workstation", "--out", bundle, "--config", ccfg],
                   check=True, capture_output=True)
    policy = os.path.join(tmp, "policy.yaml")
    with open(policy, "w") as f:
        f.write(DEMO_POLICY)
    print("%spolicy: %s%s" % (DIM, policy, RESET))

    cg = lib.Scratch("demo")
    hosts = lib.hosts_file({"api.openai.com": "127.0.0.2", "api.anthropic.com": "127.0.0.2",
                            "example.org": "127.0.0.3"}, tmp)
    say("Starting vigil-agent: eBPF programs attached to the scratch cgroup %s" % cg.path)
    agent = lib.Agent(tmp, cg.path, extra="""ca_cert: %s
ca_key: %s
upstream_ca: %s
target_addresses: [127.0.0.2]
endpoints: [api.openai.com, api.anthropic.com]
policy: %s
agent_id: demo-workstation
ship_interval: 200ms
collector:
  address: 127.0.0.1:%d
  ca: %s/ca.crt
  cert: %s/agent.crt
  key: %s/agent.key
""" % (ca, os.path.join(ca_dir, "intercept.key"), pki["ca_cert"], policy, ingest_port, bundle, bundle, bundle),
        log_level="warning")
    agent.start()
    print("%sconfig: %s%s" % (DIM, agent.config, RESET))

    chat = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Summarize our Q3 plan"}]})
    runs = [
        ("curl, as user nobody", ["curl", "-sS", "--cacert", ca, "https://api.openai.com/v1/chat/completions",
                                  "-H", "Authorization: Bearer sk-demo", "-H", "Content-Type: application/json",
                                  "-d", chat], lib.NOBODY, {}),
        ("Python urllib, as user nobody", [PY, os.path.join(tmp, "py_client.py"), "--url",
                                           "https://api.openai.com/v1/chat/completions", "--json", chat,
                                           "--header", "Authorization: Bearer sk-demo"], lib.NOBODY,
         {"SSL_CERT_FILE": ca}),
        ("official openai SDK (Node), streaming", ["node", os.path.join(clients, "openai_chat.mjs"),
                                                   "--message", "Write a haiku about kernels", "--stream"],
         None, {"NODE_EXTRA_CA_CERTS": ca}),
        ("official @anthropic-ai/sdk (Node)", ["node", os.path.join(clients, "anthropic_msg.mjs"),
                                               "--message", "Hello Claude"], None, {"NODE_EXTRA_CA_CERTS": ca}),
        ("official openai SDK, streaming, prompt with an e-mail address (tokenized, restored in the answer)",
         ["node", os.path.join(clients, "openai_chat.mjs"), "--message",
          "Draft a reply to maria.garcia@example.com about the invoice", "--stream"], None,
         {"NODE_EXTRA_CA_CERTS": ca}),
        ("curl, prompt with a card number (masked)", ["curl", "-sS", "--cacert", ca,
         "https://api.openai.com/v1/chat/completions", "-H", "Authorization: Bearer sk-demo",
         "-H", "Content-Type: application/json", "-d",
         json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content":
                     "Refund card 4111 1111 1111 1111 please"}]})], lib.NOBODY, {}),
        ("official @anthropic-ai/sdk, prompt with an AWS key (blocked: never leaves the machine)",
         ["node", os.path.join(clients, "anthropic_msg.mjs"), "--message", "Why does %s fail?" % AWS_KEY], None,
         {"NODE_EXTRA_CA_CERTS": ca}),
        ("curl to a site that is NOT watched (untouched: never decrypted, not even redirected)",
         ["curl", "-sS", "-k", "-o", "/dev/null", "-w", "HTTP %{http_code}\n", "https://example.org/",
          "-H", "Connection: close"], lib.NOBODY, {}),
    ]
    shutil.copy(os.path.join(clients, "py_client.py"), os.path.join(tmp, "py_client.py"))
    os.chmod(os.path.join(tmp, "py_client.py"), 0o755)
    for title, argv, uid, env in runs:
        say("Client: %s" % title)
        p = lib.run(argv, cgroup=cg.path, uid=uid, hosts=hosts, env=env, timeout=60)
        out = (p.stdout.strip() or p.stderr.strip())
        print("%s%s%s" % (DIM, out[:400], RESET))

    say("What the provider actually received (the fake provider's record)")
    with open(record) as f:
        for line in f:
            r = json.loads(line)
            try:
                msgs = json.loads(r["body"]).get("messages", [])
                text = msgs[-1]["content"] if msgs else ""
            except (ValueError, KeyError, IndexError, TypeError):
                text = r["body"][:80]
            print("%s%-22s %s%s" % (DIM, r["path"], str(text)[:90], RESET))

    time.sleep(0.5)
    agent.stop()
    time.sleep(1)
    vigil = os.path.join(lib.BUILD, "vigil")
    soc = ["--server", "https://127.0.0.1:%d" % api_port, "--token", token, "--cacert",
           os.path.join(cdir, "pki", "ca.crt")]
    say("SOC: vigil query --since 1h   (the collector's view: signed, hash-chained, shipped over mTLS)")
    subprocess.run([vigil, "query", "--since", "1h", "--kind", "request"] + soc)
    say("SOC: vigil query --top findings --since 1h")
    subprocess.run([vigil, "query", "--top", "findings", "--since", "1h"] + soc)
    say("SOC: vigil verify   (every agent's chain and signatures, end to end)")
    subprocess.run([vigil, "verify"] + soc)
    say("What the SOC sees: the agent's audit events (%s)" % agent.audit_log)
    cols = [("kind", 10), ("user", 7), ("exe", 18), ("sni", 18), ("provider", 9), ("model", 17),
            ("action", 11), ("status", 6), ("tokens", 9), ("bytes", 12)]
    print(BOLD + " ".join(n.ljust(w) for n, w in cols) + RESET)
    for ev in agent.events():
        if ev["kind"] in ("agent_start", "agent_stop"):
            continue
        tokens = "" if ev.get("prompt_tokens") is None else "%s/%s" % (ev["prompt_tokens"], ev["completion_tokens"])
        row = [ev["kind"], ev.get("user") or "", os.path.basename(ev.get("exe") or ""), ev.get("sni") or "",
               ev.get("provider") or "", ev.get("model") or "", ev.get("action") or "",
               str(ev.get("status") or ""), tokens, "%d/%d" % (ev["bytes_up"], ev["bytes_down"])]
        print(" ".join(str(v)[:w].ljust(w) for v, (_, w) in zip(row, cols)))
    say("One full event as JSON (hash-chained: prev_hash -> hash)")
    reqs = agent.events("request")
    print(json.dumps(reqs[0] if reqs else agent.events()[-1], indent=2))
    say("Done: everything stopped, scratch cgroup removed.")


if __name__ == "__main__":
    try:
        main()
    finally:
        lib._run_cleanups()
