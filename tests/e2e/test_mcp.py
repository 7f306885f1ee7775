"""End-to-end: remote MCP servers under control, through the real BPF
redirect.

A host listed only under `mcp_servers:` (not under endpoints) is
intercepted. The official MCP client (`@modelcontextprotocol/sdk`, Streamable
HTTP) lists and calls tools through the agent against a fake MCP server
answering in JSON and in SSE. A call with a credential in its arguments is
refused with a JSON-RPC error the client shows, and never reaches the
server; a forbidden tool is refused by a `tool` rule; a result carrying a
prompt injection, or a credential, is replaced by an error result. Every
tools/call gets one audit event of kind mcp with the server, method, tool
and session, the decision and the findings (types and counts, never
values). `vigil policy explain --mcp-server` shows the same decision. The
events reach a collector, where `vigil query` filters and groups them by
MCP server, method, tool and session.
"""
import base64
import csv
import io
import json
import os
import re
import signal
import subprocess
import time

import lib
from lib import check, test
import rig as rigmod
from collector_tools import Collector
from colrig import enroll_rig

LLM_ADDR = "127.61.0.2"
MCP_ADDR = "127.61.0.3"
MCP_HOST = "mcp.example.com"
MCP_URL = "https://%s/mcp" % MCP_HOST
MCP_SSE_URL = "https://%s/mcp-sse" % MCP_HOST
AWS_KEY = "AKIAQ3EGRTWXJ7NPLK2M"
JUSTIFY_TTL_S = 4
OTHER_UID = 60171
FAKE_MCP = os.path.join(lib.ROOT, "tests", "fakes", "fake_mcp.py")

POLICY = """version: 1
default: allow
rules:
  - name: no-fs-server
    when: { mcp_server: ['@modelcontextprotocol/server-filesystem', corp-tools-server], mcp_method: [stdio_launch] }
    action: block
  - name: no-shell-tools
    when: { mcp_server: ['*.example.com'], mcp_method: [tools/call], tool: [run_shell, 'exec_*'] }
    action: block
  - name: no-secrets
    when: { finding: [AWS_ACCESS_KEY, PRIVATE_KEY] }
    action: block
  - name: no-shell-from-models
    when: { tool: [run_shell] }
    action: block
  - name: coach-unapproved-model
    when: { model: [gpt-4o-unapproved] }
    action: warn
    message: gpt-4o-unapproved is not approved for company code
  - name: injection-in-results
    when: { mcp_server: [mcp.example.com], injection_score: 0.5 }
    action: block
  - name: coach-contact-results
    when: { mcp_server: [mcp.example.com], finding: [EMAIL] }
    action: warn
  - name: coach-answers-email
    when: { output_finding: [EMAIL] }
    action: warn
"""

RIG = rigmod.Rig("mcp", {MCP_HOST: MCP_ADDR, "api.anthropic.com": LLM_ADDR, "api.openai.com": LLM_ADDR},
                 {"good": (LLM_ADDR, "good", 0)}, endpoints=["api.anthropic.com", "api.openai.com"],
                 extra_targets=[MCP_ADDR], agent_extra="mcp_servers: [%s]\njustify_ttl: %ds\nmcp_commands: [corp-tools-server]\n"
                 % (MCP_HOST, JUSTIFY_TTL_S))
JUSTIFY_SOCK = os.path.join(RIG.tmp, "justify.sock")
RECORD = os.path.join(RIG.tmp, "fake-mcp.jsonl")
POLICY_PATH = os.path.join(RIG.tmp, "policy.yaml")
with open(POLICY_PATH, "w") as f:
    f.write(POLICY)
with open(RIG.agent.config, "a") as f:
    f.write("policy: %s\njustify_socket: %s\n" % (POLICY_PATH, JUSTIFY_SOCK))
# A collector (SQLite) the SOC questions are asked of.
COL = Collector(RIG.tmp, host="127.86.0.2")
COL.start()
enroll_rig(COL, RIG, "e2e-mcp")


def start_fake_mcp():
    p = lib.spawn([rigmod.PY, FAKE_MCP, "--listen", "%s:443" % MCP_ADDR, "--cert", RIG.pki["good_cert"],
                   "--key", RIG.pki["good_key"], "--record", RECORD], stdout=subprocess.PIPE, text=True)
    check("fake-mcp ready" in p.stdout.readline(), "fake MCP server did not start")


start_fake_mcp()
RIG.agent.start()


def mcp(url, *calls, uid=lib.NOBODY, sse=False):
    args = ["--url", url] + (["--sse"] if sse else [])
    for name, a in calls:
        args += ["--call", name, json.dumps(a)]
    env = dict(NODE_EXTRA_CA_CERTS=RIG.ca)
    p = lib.run(["node", os.path.join(rigmod.CLIENTS, "mcp_client.mjs")] + args, cgroup=RIG.cg.path,
                hosts=RIG.hosts, env=env, uid=uid, timeout=60)
    check(p.stdout.strip(), "mcp_client printed nothing: %s" % p.stderr[-600:])
    out = json.loads(p.stdout.strip().splitlines()[-1])
    check("error" not in out, "MCP session failed: %s %s" % (out.get("error"), p.stderr[-400:]))
    return out


def received():
    return RIG.read_jsonl(RECORD)


def mcp_events(pred=lambda e: True, n=1):
    return RIG.agent.wait_events(lambda e: e.get("kind") == "mcp" and pred(e), timeout=5.0) or []


def text_of(call):
    return "".join(c.get("text", "") for c in call["result"].get("content", []))


@test
def mcp_servers_key_is_validated():
    """A bad mcp_servers entry is a file:line error from --check."""
    bad = os.path.join(RIG.tmp, "bad.yaml")
    with open(bad, "w") as f:
        f.write("listen: 127.0.0.1:15999\nmcp_servers: [good.example, 'bad host!']\n")
    p = subprocess.run([lib.AGENT, "--config", bad, "--check"], capture_output=True, text=True)
    check(p.returncode == 2, "exit %s" % p.returncode)
    check("bad.yaml:2:" in p.stderr and "bad host!" in p.stderr, "no file:line reason: %r" % p.stderr)


@test
def sdk_lists_and_calls_tools_json_and_sse():
    """The official SDK works through the agent, with JSON and SSE
    answers; each tools/call is one kind mcp event with server, method,
    tool and the server's session id."""
    for url, word in ((MCP_URL, "hello-json"), (MCP_SSE_URL, "hello-sse")):
        out = mcp(url, ("echo", {"text": word}))
        check(sorted(out["tools"]) == ["echo", "fetch_page", "read_config"], "tools: %s" % out["tools"])
        c = out["calls"][0]
        check("result" in c and text_of(c) == word, "%s: echo answered %s" % (url, c))
        evs = mcp_events(lambda e, w=url: e.get("path") == "/" + w.rsplit("/", 1)[1] and e.get("tool") == "echo")
        check(evs, "no mcp event for %s: %s" % (url, RIG.agent.events()[-3:]))
        e = evs[-1]
        check(e["sni"] == MCP_HOST and e["mcp_method"] == "tools/call" and e["action"] == "allow",
              "event: %s" % e)
        check(e.get("mcp_session") and e["mcp_session"] == out["session"],
              "session %r vs client's %r" % (e.get("mcp_session"), out["session"]))
        check(e.get("exe") and e.get("uid") == lib.NOBODY, "identity missing: %s" % e)
        check(not e.get("reason"), "an allowed call has a reason: %s" % e.get("reason"))
    # tools/list and initialize are requests on the MCP server, not kind mcp
    reqs = RIG.agent.events("request")
    check(any(r.get("mcp_method") == "tools/list" for r in reqs), "tools/list not audited as a request")


@test
def key_in_arguments_is_refused_with_jsonrpc_error():
    """A credential in a tool's arguments never reaches the server: the
    client gets a JSON-RPC error naming the rule, the event says block."""
    before = len(received())
    out = mcp(MCP_URL, ("echo", {"text": "deploy with %s please" % AWS_KEY}))
    c = out["calls"][0]
    check("error" in c, "the call went through: %s" % c)
    check(c["error"]["code"] == -32001 and "no-secrets" in c["error"]["message"],
          "error not JSON-RPC -32001 naming the rule: %s" % c["error"])
    check(AWS_KEY not in json.dumps(received()[before:]), "the key reached the MCP server")
    e = mcp_events(lambda e: e.get("action") == "block" and e.get("rule") == "no-secrets")
    check(e, "no block event")
    check({"type": "AWS_ACCESS_KEY", "count": 1} in e[-1]["findings"], "findings: %s" % e[-1]["findings"])
    check(e[-1]["status"] == 200, "event status %s, the client got 200 (a JSON-RPC error)" % e[-1]["status"])
    check(AWS_KEY not in open(RIG.agent.audit_log).read(), "the key is in the audit log")


@test
def forbidden_tool_is_refused():
    """A `tool` rule on an MCP server refuses the call (SSE transport)."""
    out = mcp(MCP_SSE_URL, ("exec_command", {"cmd": "id"}), ("echo", {"text": "still-works"}))
    c0, c1 = out["calls"]
    check("error" in c0 and "no-shell-tools" in c0["error"]["message"], "exec_command: %s" % c0)
    check("result" in c1 and text_of(c1) == "still-works", "the next call failed: %s" % c1)
    check(not any(r["message"].get("params", {}).get("name") == "exec_command" for r in received()),
          "the forbidden call reached the server")
    check(mcp_events(lambda e: e.get("tool") == "exec_command" and e.get("rule") == "no-shell-tools"),
          "no event for the refused tool")


@test
def forbidden_tool_in_lenient_json_is_refused():
    """A tools/call its server's parser takes but the agent's strict one
    does not (NaN in the arguments: Python's json.loads reads it) must not
    slip past a tool rule because its tool name went unread."""
    before = len(received())
    msg = ('{"jsonrpc": "2.0", "id": 41, "method": "tools/call", '
           '"params": {"name": "exec_command", "arguments": {"cmd": "id", "n": NaN}}}')
    code, out, p = RIG.curl(MCP_URL, msg, extra=["-H", "Accept: application/json, text/event-stream"])
    check(not any(r["message"].get("params", {}).get("name") == "exec_command" for r in received()[before:]),
          "the forbidden call in lenient JSON reached the server: %s %s" % (code, out[:200]))
    check("cannot read as JSON-RPC" in out, "the refusal does not say why: %s %s" % (code, out[:200]))
    evs = RIG.agent.wait_events(lambda e: e.get("rule") == "default:fail_closed" and e.get("action") == "block" and
                                e.get("sni") == MCP_HOST)
    check(evs and evs[-1]["status"] == 400, "the unreadable MCP message was not audited: %s" % evs[-1:])


@test
def injection_in_result_is_replaced():
    """A tool result carrying a prompt injection is replaced by an error
    result naming the rule, in JSON and in SSE answers."""
    for url in (MCP_URL, MCP_SSE_URL):
        out = mcp(url, ("fetch_page", {"url": "https://docs.example/x"}))
        c = out["calls"][0]
        check("result" in c and c["result"].get("isError") is True, "%s: not an error result: %s" % (url, c))
        t = text_of(c)
        check("injection-in-results" in t and "ignore all previous" not in t.lower(),
              "%s: replacement text %r" % (url, t))
    e = mcp_events(lambda e: e.get("tool") == "fetch_page" and e.get("action") == "block")
    check(e and e[-1]["injection_score"] >= 0.5 and e[-1]["rule"] == "injection-in-results", "event: %s" % e[-1:])
    check(any(f["type"] == "PROMPT_INJECTION" for f in e[-1]["output_findings"]),
          "output_findings: %s" % e[-1]["output_findings"])


@test
def key_in_result_is_replaced():
    """A result carrying a credential does not reach the client (the
    model would send it to its provider next)."""
    out = mcp(MCP_URL, ("read_config", {"path": "~/.aws/credentials"}))
    c = out["calls"][0]
    check(c["result"].get("isError") is True and AWS_KEY not in json.dumps(c), "result: %s" % c)
    e = mcp_events(lambda e: e.get("tool") == "read_config")
    check(e and e[-1]["rule"] == "no-secrets" and
          {"type": "AWS_ACCESS_KEY", "count": 1} in e[-1]["output_findings"], "event: %s" % e[-1:])


@test
def uninspectable_result_is_replaced():
    """A result the agent cannot parse (a hostile server's truncated JSON)
    is withheld, not passed on uninspected; the session goes on."""
    out = mcp(MCP_URL, ("broken", {}), ("echo", {"text": "after"}))
    c0, c1 = out["calls"]
    check("result" in c0 and c0["result"].get("isError") is True and "could not be inspected" in text_of(c0),
          "broken result: %s" % c0)
    check("result" in c1 and text_of(c1) == "after", "the session broke: %s" % c1)
    e = mcp_events(lambda e: e.get("tool") == "broken")
    check(e and e[-1]["action"] == "block" and e[-1]["rule"] == "default:fail_closed", "event: %s" % e[-1:])


@test
def sse_answer_keeps_server_messages_and_event_ids():
    """In an SSE answer the server's own messages (a log notification)
    pass on, event ids are kept, and the result follows (raw curl client)."""
    call = json.dumps({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                       "params": {"name": "echo", "arguments": {"text": "raw-sse"}}})
    code, body, _ = RIG.curl(MCP_SSE_URL, call, extra=["-H", "Accept: application/json, text/event-stream"])
    check(code == 200, "status %s" % code)
    check("id: n0" in body and "notifications/message" in body and "working on it" in body,
          "the notification was lost: %r" % body[:400])
    check("id: r0" in body and '"raw-sse"' in body and body.index("n0") < body.index("r0"), "result: %r" % body[:400])


@test
def old_http_sse_transport_calls_and_results():
    """The older HTTP+SSE transport (SDK SSEClientTransport): calls posted
    to /messages are audited and decided; results come back on the GET
    stream, where an injected one is replaced under the response's id."""
    out = mcp("https://%s/sse" % MCP_HOST, ("echo", {"text": "old-sse"}), ("fetch_page", {"url": "x"}),
              ("echo", {"text": "key %s" % AWS_KEY}), sse=True)
    c0, c1, c2 = out["calls"]
    check("result" in c0 and text_of(c0) == "old-sse", "echo: %s" % c0)
    check(c1.get("result", {}).get("isError") is True and "injection" in text_of(c1), "fetch_page: %s" % c1)
    check("error" in c2 and "no-secrets" in c2["error"]["message"], "key in arguments: %s" % c2)
    evs = mcp_events(lambda e: e.get("path") == "/messages" and e.get("tool") == "echo")
    check(evs, "no kind mcp event for a call on /messages")


@test
def policy_explain_knows_mcp_conditions():
    """`vigil policy explain --mcp-server` evaluates mcp_server,
    mcp_method and tool as the agent does; check accepts the file."""
    body = os.path.join(RIG.tmp, "call.json")
    with open(body, "w") as f:
        json.dump({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": "exec_command", "arguments": {"cmd": "id"}}}, f)
    vigil = os.path.join(lib.BUILD, "vigil")
    p = subprocess.run([vigil, "policy", "check", POLICY_PATH], capture_output=True, text=True)
    check(p.returncode == 0, "check: %s" % p.stderr)
    p = subprocess.run([vigil, "policy", "explain", "--policy", POLICY_PATH, "--request", body,
                        "--mcp-server", MCP_HOST, "--path", "/mcp"], capture_output=True, text=True)
    check("decision: block" in p.stdout and "rule: no-shell-tools" in p.stdout and
          "tool: exec_command" in p.stdout, "explain: %s %s" % (p.stdout, p.stderr))
    p = subprocess.run([vigil, "policy", "explain", "--policy", POLICY_PATH, "--request", body,
                        "--host", MCP_HOST, "--path", "/mcp"], capture_output=True, text=True)
    check("decision: allow" in p.stdout, "without --mcp-server the MCP rule matched: %s" % p.stdout)


def anthropic(tool, stream):
    args = ["--message", "what is the weather", "--header", "x-fake-tool-call: %s" % tool]
    if stream:
        args.append("--stream")
    p = lib.run(["node", os.path.join(rigmod.CLIENTS, "anthropic_msg.mjs")] + args, cgroup=RIG.cg.path,
                hosts=RIG.hosts, env=dict(NODE_EXTRA_CA_CERTS=RIG.ca), uid=lib.NOBODY, timeout=60)
    check(p.stdout.strip(), "anthropic_msg printed nothing: %s" % p.stderr[-600:])
    return json.loads(p.stdout.strip().splitlines()[-1]), p


@test
def streamed_tool_use_is_recorded_and_a_forbidden_one_refused():
    """The tools a model asks to run are in the event (names and counts);
    a streamed answer whose tool_use is forbidden ends with an error event
    the SDK raises, and the call's bytes never reach the client."""
    out, _ = anthropic("get_weather", True)
    check("error" not in out, "an allowed tool call was refused: %s" % out)
    ev = RIG.request_events(lambda e: e.get("tool_calls") == "get_weather:1" and e.get("stream"))
    check(ev and ev[-1]["action"] == "allow", "no event with tool_calls: %s" % RIG.agent.events("request")[-1:])
    out, p = anthropic("run_shell", True)
    check("error" in out, "the forbidden tool call went through: %s" % out)
    check("no-shell-from-models" in json.dumps(out["error"]), "the error does not name the rule: %s" % out)
    check("toolu_fake1" not in p.stdout + p.stderr, "the forbidden call's bytes reached the client")
    ev = RIG.request_events(lambda e: e.get("tool_calls") == "run_shell:1")
    check(ev and ev[-1]["action"] == "block" and ev[-1]["rule"] == "no-shell-from-models" and
          ev[-1]["reason"] == "tool_call_refused", "event: %s" % ev[-1:])
    check("what is the weather" not in json.dumps(ev[-1]), "arguments in the event")


@test
def json_answer_with_forbidden_tool_call_is_cut():
    """A whole JSON answer calling a forbidden tool never reaches the
    client (its head is out already: the client sees a cut answer); an
    allowed one passes and is recorded (OpenAI chat tool_calls)."""
    out, _ = anthropic("run_shell", False)
    check("error" in out, "the forbidden tool call went through: %s" % out)
    code, body, _ = RIG.curl("https://api.openai.com/v1/chat/completions",
                             json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
                             extra=["-H", "x-fake-tool-call: get_weather"])
    check(code == 200 and "get_weather" in body, "allowed call: %s %s" % (code, body[:200]))
    ev = RIG.request_events(lambda e: e.get("provider") == "openai" and e.get("tool_calls") == "get_weather:1")
    check(ev, "no OpenAI event with tool_calls")


def chat_unapproved(uid):
    return RIG.curl("https://api.openai.com/v1/chat/completions",
                    json.dumps({"model": "gpt-4o-unapproved", "messages": [{"role": "user", "content": "hi"}]}),
                    uid=uid)


def justify(wid, reason, uid):
    return lib.run([os.path.join(lib.BUILD, "vigil"), "justify", "--socket", JUSTIFY_SOCK, wid, reason], uid=uid,
                   timeout=20)


@test
def justify_keys_are_validated():
    bad = os.path.join(RIG.tmp, "bad-justify.yaml")
    with open(bad, "w") as f:
        f.write("listen: 127.0.0.1:15999\njustify_ttl: 0s\n")
    p = subprocess.run([lib.AGENT, "--config", bad, "--check"], capture_output=True, text=True)
    check(p.returncode == 2 and "bad-justify.yaml:2:" in p.stderr, "justify_ttl 0: %s %r" % (p.returncode, p.stderr))


@test
def warn_then_justify_lets_the_retry_through_until_it_expires():
    """A warn rule refuses with a provider-shaped 403 saying why and how to
    continue; another user cannot justify it; the warned user can, the
    retry passes (audited as justified), other users stay warned, and the
    exemption expires after justify_ttl."""
    code, body, _ = chat_unapproved(lib.NOBODY)
    check(code == 403, "status %s: %s" % (code, body[:200]))
    err = json.loads(body)["error"]
    check("not approved for company code" in err["message"] and "vigil justify" in err["message"],
          "message: %s" % err["message"])
    m = re.search(r"vigil justify ([0-9a-f]{16})", err["message"])
    check(m, "no id in %s" % err["message"])
    wid = m.group(1)
    ev = RIG.request_events(lambda e: e.get("reason") == "warned: %s" % wid)
    check(ev and ev[-1]["action"] == "warn" and ev[-1]["rule"] == "coach-unapproved-model", "warn event: %s" % ev)
    p = justify(wid, "I am someone else", OTHER_UID)
    check(p.returncode == 1 and "another user" in p.stderr, "another user justified: %s %s" % (p.returncode, p.stderr))
    check(chat_unapproved(lib.NOBODY)[0] == 403, "another user's justification lifted the warning")
    p = justify(wid, "evaluating it for ticket SEC-42", lib.NOBODY)
    check(p.returncode == 0 and "coach-unapproved-model" in p.stdout, "justify: %s %s" % (p.stdout, p.stderr))
    j = RIG.agent.wait_events(lambda e: e.get("action") == "allow", kind="justification")
    check(j and j[-1]["uid"] == lib.NOBODY and j[-1]["rule"] == "coach-unapproved-model" and
          "SEC-42" in j[-1]["reason"], "justification event: %s" % j)
    refused = RIG.agent.events("justification")
    check(any(e["uid"] == OTHER_UID and e["action"] == "block" for e in refused), "the refused attempt is not audited")
    code, body, _ = chat_unapproved(lib.NOBODY)
    check(code == 200, "the retry after justify: %s %s" % (code, body[:200]))
    ev = RIG.request_events(lambda e: (e.get("reason") or "").startswith("justified: "))
    check(ev and ev[-1]["action"] == "allow", "justified request event: %s" % ev[-1:])
    check(chat_unapproved(OTHER_UID)[0] == 403, "the exemption covered another user")
    time.sleep(JUSTIFY_TTL_S + 1)
    code, body, _ = chat_unapproved(lib.NOBODY)
    check(code == 403 and "vigil justify" in body, "the exemption did not expire: %s" % code)


# Local (stdio) MCP servers: fake launchers and servers, shell scripts that
# say they ran (stdout and a marker file) as a real server would speak on
# its stdout. Named like the real ones: the agent knows them by name only.
LAUNCH_BIN = os.path.join(RIG.tmp, "launch-bin")
MARKS = os.path.join(RIG.tmp, "launch-marks")
SECRET_ARG = "sk-launch-" + "Q9x7Zr4T"
GH_TOKEN = "ghp_" + "R8x2Kd9QwLm4Tz7Vb1Nc5Hy3Pj6Fg0Ua2Se8"


def fake_program(name):
    os.makedirs(LAUNCH_BIN, exist_ok=True)
    os.makedirs(MARKS, exist_ok=True)
    os.chmod(MARKS, 0o777)
    path = os.path.join(LAUNCH_BIN, name)
    with open(path, "w") as f:
        f.write('#!/bin/sh\necho "spoke %s"\ntouch "%s/%s"\n' % (name, MARKS, name))
    os.chmod(path, 0o755)


def launch(cmdline):
    """cmdline run by a shell in the watched cgroup (an MCP client's spawn)."""
    for n in ("npx", "uvx", "docker", "mcp-server-fakefs", "corp-tools-server"):
        fake_program(n)
    return lib.run(["/bin/sh", "-c", "PATH=%s:$PATH; %s; echo exit=$?" % (LAUNCH_BIN, cmdline)],
                   cgroup=RIG.cg.path, uid=lib.NOBODY, timeout=30)


def launch_events(server):
    return RIG.agent.wait_events(lambda e: e.get("kind") == "mcp" and e.get("mcp_method") == "stdio_launch" and
                                 e.get("mcp_server") == server, timeout=5.0)


def spool_bytes():
    """Every spool segment of the agent, concatenated (records are the
    encoded events, uncompressed: a string in an event is in these bytes)."""
    d = os.path.join(RIG.agent.dir, "spool")
    data = b""
    for root, _, files in os.walk(d):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                data += fh.read()
    return data


@test
def stdio_server_launches_are_audited_with_secrets_replaced():
    """A stdio MCP server started in the watched cgroup (a program named
    mcp-server-*, an npx MCP package, a docker mcp/ image) is one kind mcp
    event, method stdio_launch, with the package and the program, the
    user, the client that launched it, and its command line: a token a
    detector knows shows as [GITHUB_TOKEN] (counted in findings), a value
    of --token, --token= or -e NAME_TOKEN= as [REDACTED] (or the type a
    detector gives it, SECRET_ASSIGNMENT); the raw values
    are nowhere in the audit log, the spool or the agent's log. It runs. A
    launcher running something else is not an event."""
    for cmd, server, program, shown in (
            ("mcp-server-fakefs --token %s /srv" % SECRET_ARG, "mcp-server-fakefs", "mcp-server-fakefs",
             "mcp-server-fakefs --token [REDACTED] /srv"),
            ("npx -y @modelcontextprotocol/server-github@2025.1 --token=%s" % SECRET_ARG,
             "@modelcontextprotocol/server-github", "npx",
             "npx -y @modelcontextprotocol/server-github@2025.1 --token=[*]"),
            ("npx -y @modelcontextprotocol/server-github %s --owner octo" % GH_TOKEN,
             "@modelcontextprotocol/server-github", "npx",
             "npx -y @modelcontextprotocol/server-github [GITHUB_TOKEN] --owner octo"),
            ("docker run -i --rm -e GITHUB_TOKEN=%s mcp/github:latest" % SECRET_ARG, "mcp/github", "docker",
             "docker run -i --rm -e GITHUB_TOKEN=[*] mcp/github:latest")):
        p = launch(cmd)
        check("spoke " + program in p.stdout and "exit=0" in p.stdout, "%s did not run: %r %r" % (program, p.stdout, p.stderr))
        # [*]: [REDACTED] by the name, or a detector's type (SECRET_ASSIGNMENT)
        want = re.compile(re.escape(shown).replace(r"\[\*\]", r"\[[A-Z_]+\]") + "$")
        evs = [e for e in launch_events(server) if want.search(e.get("command", ""))]
        check(evs, "no stdio_launch event for %s with command ...%r: %s" % (server, shown, RIG.agent.events("mcp")[-2:]))
        e = evs[-1]
        check(e["action"] == "allow" and e["comm"] == program and e["uid"] == lib.NOBODY and e["user"] == "nobody",
              "event: %s" % e)
        check(e.get("parent_exe", "").endswith("sh"), "parent_exe %r, want the shell that launched it" % e.get("parent_exe"))
        # the fake launchers are scripts: the kernel ran their interpreter
        check(e["command"].startswith("/bin/sh %s/" % LAUNCH_BIN), "command %r" % e["command"])
        if GH_TOKEN in cmd:
            check({"type": "GITHUB_TOKEN", "count": 1} in e.get("findings", []), "findings %s" % e.get("findings"))
    p = launch("npx cowsay moo")
    check("spoke npx" in p.stdout, "a non-MCP npx did not run: %r" % p.stdout)
    check(not launch_events("cowsay"), "npx cowsay was audited as an MCP server")
    log, spool = open(RIG.agent.audit_log).read(), spool_bytes()
    check(b"server-github [GITHUB_TOKEN] --owner octo" in spool,
          "the redacted command line is not in the spool: the grep below would prove nothing")
    for raw in (SECRET_ARG, GH_TOKEN, GH_TOKEN[4:20]):
        check(raw not in log, "a raw launch argument reached the audit log")
        check(raw.encode() not in spool, "a raw launch argument reached the spool")
        check(raw not in RIG.agent.log_tail(400), "a raw launch argument reached the agent's log")
    # the SOC sees the command lines per user at the collector
    rows = [r for r in col_rows("--mcp-method", "stdio_launch", "--kind", "mcp", "--user", "nobody", n=4)
            if "[GITHUB_TOKEN] --owner octo" in (r.get("command") or "")]
    check(rows and rows[0]["mcp_server"] == "@modelcontextprotocol/server-github",
          "vigil query: no launch with its command line: %s" % COL.query_json("--mcp-method", "stdio_launch")[:1])


@test
def stdio_server_launch_refused_by_policy_never_runs():
    """A policy rule on mcp_server (the package) with mcp_method
    stdio_launch kills the launch before its first line runs (no output,
    no marker file), npx and a configured mcp_commands program alike; the
    event says block with the rule. Rules written for LLM traffic do not
    touch launches."""
    for cmd, server, program in (
            ("npx -y @modelcontextprotocol/server-filesystem@1.2 /home --api-key=%s" % SECRET_ARG,
             "@modelcontextprotocol/server-filesystem", "npx"),
            ("corp-tools-server --stdio", "corp-tools-server", "corp-tools-server")):
        mark = os.path.join(MARKS, program)
        if os.path.exists(mark):
            os.unlink(mark)
        p = launch(cmd)
        check("spoke" not in p.stdout, "%s ran: %r" % (program, p.stdout))
        check("exit=137" in p.stdout, "%s was not killed: %r %r" % (program, p.stdout, p.stderr))
        check(not os.path.exists(mark), "%s ran a line before it was killed" % program)
        evs = launch_events(server)
        check(evs and evs[-1]["action"] == "block" and evs[-1]["rule"] == "no-fs-server" and
              evs[-1]["comm"] == program, "event: %s" % evs[-1:])
    check(SECRET_ARG not in open(RIG.agent.audit_log).read(), "a launch argument reached the audit log")
    # The same user's LLM traffic and other servers are unaffected.
    p = launch("uvx mcp-server-time --local-timezone UTC")
    check("spoke uvx" in p.stdout, "an allowed uvx server did not run: %r" % p.stdout)
    check(launch_events("mcp-server-time"), "no event for uvx mcp-server-time")
    # `vigil policy explain --stdio-launch` decides a command line as the agent does.
    vigil = os.path.join(lib.BUILD, "vigil")
    p = subprocess.run([vigil, "policy", "explain", "--policy", POLICY_PATH, "--stdio-launch",
                        "npx -y @modelcontextprotocol/server-filesystem@1.2 /home"], capture_output=True, text=True)
    check("decision: block" in p.stdout and "rule: no-fs-server" in p.stdout and
          "mcp_server: @modelcontextprotocol/server-filesystem" in p.stdout, "explain: %s %s" % (p.stdout, p.stderr))
    p = subprocess.run([vigil, "policy", "explain", "--policy", POLICY_PATH, "--stdio-launch", "uvx mcp-server-time"],
                       capture_output=True, text=True)
    check("decision: allow" in p.stdout, "explain of an allowed launch: %s" % p.stdout)


def col_rows(*args, n=1, timeout=30):
    deadline = time.time() + timeout
    while True:
        rows = COL.query_json(*args)
        if len(rows) >= n or time.time() > deadline:
            return rows
        time.sleep(0.3)


@test
def soc_queries_mcp_calls_by_server_tool_and_session():
    """The SOC asks the collector which programs of which users called
    which tools on which servers: `vigil query --mcp-server/--mcp-method/
    --tool/--mcp-session` filter the kind mcp events, `--top tools` and
    `--top mcp_servers` group them, CSV carries the columns."""
    out = mcp(MCP_URL, ("echo", {"text": "for-the-soc"}), ("echo", {"text": "again"}),
              ("exec_command", {"cmd": "id"}))
    sess = out["session"]
    rows = col_rows("--mcp-session", sess, "--kind", "mcp", n=3)
    check(len(rows) == 3 and all(r["mcp_session"] == sess for r in rows),
          "--mcp-session %s: %d rows %s; collector: %s" % (sess, len(rows), rows[:1], COL.tail(5)))
    check(all(r["kind"] == "mcp" and r["mcp_server"] == MCP_HOST and r["mcp_method"] == "tools/call" and
              r["uid"] == lib.NOBODY and r["exe"] for r in rows), "rows: %s" % rows)
    rows = COL.query_json("--mcp-session", sess, "--tool", "exec_command")
    check(len(rows) == 1 and rows[0]["action"] == "block" and rows[0]["rule"] == "no-shell-tools",
          "--tool exec_command: %s" % rows)
    rows = COL.query_json("--mcp-server", MCP_HOST, "--tool", "echo", "--kind", "mcp")
    check(len(rows) >= 2 and all(r["tool"] == "echo" and r["mcp_server"] == MCP_HOST for r in rows),
          "--mcp-server --tool echo: %s" % rows[:2])
    check(COL.query_json("--mcp-server", "other.example.com") == [], "--mcp-server matched another server")
    check(COL.query_json("--mcp-method", "tools/list", "--mcp-session", sess, "--kind", "request"),
          "--mcp-method tools/list: the session's tools/list request is not found")
    p = COL.vigil("query", "--top", "tools", "--mcp-server", MCP_HOST, "--json")
    top = {t["key"]: t for t in (json.loads(l) for l in p.stdout.splitlines())}
    check(p.returncode == 0 and top.get("echo", {}).get("events", 0) >= 2 and
          top.get("exec_command", {}).get("blocked", 0) >= 1, "--top tools: %s %s" % (top, p.stderr))
    p = COL.vigil("query", "--top", "mcp_servers", "--json")
    top = {t["key"]: t for t in (json.loads(l) for l in p.stdout.splitlines())}
    check(p.returncode == 0 and top.get(MCP_HOST, {}).get("events", 0) >= 3 and "api.anthropic.com" not in top,
          "--top mcp_servers: %s %s" % (top, p.stderr))
    p = COL.vigil("query", "--top", "mcp_sessions", "--tool", "exec_command")
    check(p.returncode == 0 and sess in p.stdout, "--top mcp_sessions: %s %s" % (p.stdout, p.stderr))
    p = COL.vigil("query", "--csv", "--mcp-session", sess, "--tool", "exec_command")
    table = list(csv.DictReader(io.StringIO(p.stdout)))
    check(len(table) == 1 and table[0]["tool"] == "exec_command" and table[0]["mcp_server"] == MCP_HOST and
          table[0]["mcp_session"] == sess, "csv: %s" % table)
    p = COL.vigil("query", "--top", "tool")
    check(p.returncode != 0 and "mcp_servers" in (p.stdout + p.stderr), "a bad --top: %s %s" % (p.stdout, p.stderr))


@test
def warn_on_a_tool_result_passes_it_and_audits():
    """A tool result matched by a warn rule (an e-mail address only the
    result carries) reaches the client unchanged; the call's event says
    warn with the rule, and the result's findings."""
    out = mcp(MCP_URL, ("lookup_contact", {"name": "jane"}))
    c = out["calls"][0]
    check("result" in c and not c["result"].get("isError") and "jane.roe@example.org" in text_of(c),
          "the warned result did not pass unchanged: %s" % c)
    e = mcp_events(lambda e: e.get("tool") == "lookup_contact")
    check(e and e[-1]["action"] == "warn" and e[-1]["rule"] == "coach-contact-results" and
          (e[-1].get("reason") or "").startswith("mcp_result_warned"), "event: %s" % e[-1:])
    check({"type": "EMAIL", "count": 1} in e[-1]["output_findings"], "output_findings: %s" % e[-1]["output_findings"])
    check("jane.roe" not in open(RIG.agent.audit_log).read(), "the address reached the audit log")


@test
def warn_answer_rule_lets_the_answer_through_and_audits():
    """An answer rule with action warn: the model's answer carrying its
    type reaches the client unchanged (nothing redacted, no error); the
    event says warn, the rule and the types and counts found. An answer
    without the type is a plain allow."""
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "who to ask?"}]})
    code, text, _ = RIG.curl("https://api.openai.com/v1/chat/completions", body,
                             extra=["-H", lib.fake_answer("ask carol@example.net")])
    check(code == 200 and "carol@example.net" in text, "the warned answer did not pass unchanged: %s %s" % (code, text[:300]))
    evs = RIG.agent.wait_events(lambda e: e.get("rule") == "coach-answers-email", kind="request")
    check(evs and evs[-1]["action"] == "warn" and "answer warned by rule 'coach-answers-email': EMAIL 1" in evs[-1]["reason"]
          and evs[-1]["output_redacted"] == [], "event: %s" % evs[-1:])
    # streamed: the address split across events still reaches the client whole
    n = len(RIG.agent.events("request"))
    sbody = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "who?"}]})
    code, text, _ = RIG.curl("https://api.openai.com/v1/chat/completions", sbody,
                             extra=["-H", lib.fake_answer("ask carol@example.net"),
                                    "-H", "x-fake-split: 3"])
    deltas = "".join(json.loads(l[6:])["choices"][0]["delta"].get("content", "") for l in text.splitlines()
                     if l.startswith("data: {") and json.loads(l[6:]).get("choices"))
    check(code == 200 and "carol@example.net" in deltas, "streamed warned answer: %s %r" % (code, deltas))
    ev = wait_more("request", n)
    check(ev and ev[-1]["action"] == "warn" and ev[-1]["stream"] and "EMAIL 1" in ev[-1]["reason"],
          "streamed event: %s" % ev[-1:])
    n = len(RIG.agent.events("request"))
    code, text, _ = RIG.curl("https://api.openai.com/v1/chat/completions", body,
                             extra=["-H", lib.fake_answer("ask the front desk")])
    check(code == 200, "plain answer: %s" % code)
    plain = wait_more("request", n)
    check(plain and plain[-1]["action"] == "allow", "an answer without the type: %s" % plain[-1:])


def wait_more(kind, n, timeout=5.0):
    """The events of kind after the first n, once there is one."""
    deadline = time.time() + timeout
    while len(RIG.agent.events(kind)) <= n and time.time() < deadline:
        time.sleep(0.05)
    return RIG.agent.events(kind)[n:]


def sighup_with(old, new):
    with open(RIG.agent.config) as f:
        text = f.read()
    check(old in text, "config has no %r" % old)
    with open(RIG.agent.config, "w") as f:
        f.write(text.replace(old, new))
    before = RIG.agent.log_tail(2000).count("configuration reloaded")
    RIG.agent.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while RIG.agent.log_tail(2000).count("configuration reloaded") <= before:
        check(time.time() < deadline, "no reload after SIGHUP: %s" % RIG.agent.log_tail(5))
        time.sleep(0.05)


@test
def mcp_servers_and_commands_reload_on_sighup():
    """SIGHUP applies mcp_servers and mcp_commands like the domains: a
    server taken off the list is no longer treated as MCP (its calls are
    not kind mcp events), one put back is again; a program added to
    mcp_commands is audited as a stdio server from then on."""
    fake_program("other-tool-srv")
    was = "mcp_servers: [%s]" % MCP_HOST
    sighup_with(was, "mcp_servers: [other-mcp.example.net]")
    sighup_with("mcp_commands: [corp-tools-server]", "mcp_commands: [corp-tools-server, other-tool-srv]")
    n = len(RIG.agent.events("mcp"))
    out = mcp(MCP_URL, ("echo", {"text": "off-the-list"}))
    check(text_of(out["calls"][0]) == "off-the-list", "the call failed: %s" % out["calls"][0])
    time.sleep(1.0)
    check(len(RIG.agent.events("mcp")) == n, "a server taken off mcp_servers still gives kind mcp events: %s"
          % RIG.agent.events("mcp")[n:])
    p = lib.run(["/bin/sh", "-c", "%s/other-tool-srv --stdio; echo exit=$?" % LAUNCH_BIN], cgroup=RIG.cg.path,
                uid=lib.NOBODY, timeout=30)
    check("spoke other-tool-srv" in p.stdout, "other-tool-srv did not run: %r" % p.stdout)
    check(launch_events("other-tool-srv"), "a program added to mcp_commands by SIGHUP is not audited")
    sighup_with("mcp_servers: [other-mcp.example.net]", was)
    out = mcp(MCP_URL, ("echo", {"text": "back-on-the-list"}))
    check(text_of(out["calls"][0]) == "back-on-the-list", "the call failed: %s" % out["calls"][0])
    back = wait_more("mcp", n)
    check(back and back[-1].get("tool") == "echo" and back[-1]["mcp_server"] == MCP_HOST,
          "the server put back on mcp_servers gives no kind mcp event: %s" % back[-1:])


@test
def agent_exits_cleanly():
    rc = RIG.agent.stop()
    COL.stop()
    log = RIG.agent.log_tail(400)
    check(rc == 0, "agent exit status %s: %s" % (rc, log[-1500:]))
    check("runtime error" not in log and "AddressSanitizer" not in log and "LeakSanitizer" not in log,
          "sanitizer report: %s" % log[-1500:])


if __name__ == "__main__":
    lib.main()
