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
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.join(ROOT, "tests", "fakes"))
import lib  # noqa: E402
import testpki  # noqa: E402

PY = "/usr/bin/python3"
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

    cg = lib.Scratch("demo")
    hosts = lib.hosts_file({"api.openai.com": "127.0.0.2", "api.anthropic.com": "127.0.0.2",
                            "example.org": "127.0.0.2"}, tmp)
    say("Starting vigil-agent: eBPF programs attached to the scratch cgroup %s" % cg.path)
    agent = lib.Agent(tmp, cg.path, extra="""ca_cert: %s
ca_key: %s
upstream_ca: %s
target_addresses: [127.0.0.2]
endpoints: [api.openai.com, api.anthropic.com]
""" % (ca, os.path.join(ca_dir, "intercept.key"), pki["ca_cert"]), log_level="warning")
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
        ("curl to a host that is NOT watched (passed through, never decrypted)",
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

    time.sleep(0.5)
    agent.stop()
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
