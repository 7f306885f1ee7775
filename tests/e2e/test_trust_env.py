#!/usr/bin/env python3
"""End-to-end: what `vigil ca trust` gives programs started outside a login
shell (system services, and through them cron daemons and launchers).

No systemd runs as PID 1 here, so a service's environment is built the
way systemd builds it: an empty environment (`env -i`) plus exactly the
assignments of the installed DefaultEnvironment= drop-in, parsed from the
file trust wrote. trust runs against a staging root (--root), never this
machine's /etc; the staging root's system bundle is made by the real
update-ca-certificates pointed at the staging directories, and the client
sees the staging /etc/ssl/certs and /usr/local/share/ca-certificates in a
private mount namespace, i.e. the paths the drop-in names resolve to what
trust installed. The clients go through the real BPF redirect into the
intercepting agent; each success case has a control without the drop-in
that must fail, so a test that passed without trust would be caught.
"""
import json
import os
import shlex
import shutil
import subprocess
import sys

import lib
from lib import check, test
import rig as rigmod

GOOD = "127.51.0.2"
RIG = rigmod.Rig("trustenv", {"api.openai.com": GOOD}, {"good": (GOOD, "good", 0)},
                 endpoints=["api.openai.com"])
AGENT, TMP = RIG.agent, RIG.tmp
AGENT.start()
VIGIL = os.path.join(lib.BUILD, "vigil")
STAGE = os.path.join(TMP, "stage")
NODE = shutil.which("node")
CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "from a service"}]})
DROPINS = ("etc/systemd/system.conf.d/90-vigil-ca.conf", "etc/systemd/user.conf.d/90-vigil-ca.conf")


def trust_stage():
    os.makedirs(os.path.join(STAGE, "etc/ssl/certs"), exist_ok=True)
    p = subprocess.run([VIGIL, "ca", "trust", "--dir", RIG.ca_dir, "--root", STAGE], capture_output=True,
                       text=True, timeout=30)
    check(p.returncode == 0, "vigil ca trust: %s" % p.stderr)
    # What trust leaves to update-ca-certificates on the target, done by the
    # real tool on the staging directories (the system's own CA list).
    hooks = os.path.join(TMP, "no-hooks")
    os.makedirs(hooks, exist_ok=True)
    p = subprocess.run(["update-ca-certificates", "--certsconf", "/etc/ca-certificates.conf",
                        "--certsdir", "/usr/share/ca-certificates",
                        "--localcertsdir", os.path.join(STAGE, "usr/local/share/ca-certificates"),
                        "--etccertsdir", os.path.join(STAGE, "etc/ssl/certs"), "--hooksdir", hooks],
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "update-ca-certificates on the stage: %s" % p.stderr)


def dropin_env(rel):
    """The assignments of DefaultEnvironment= in [Manager], systemd's way:
    space-separated, each optionally quoted; later ones win."""
    env, section = {}, None
    with open(os.path.join(STAGE, rel)) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
                continue
            key, _, val = line.partition("=")
            if section == "[Manager]" and key.strip() == "DefaultEnvironment":
                for a in shlex.split(val):
                    k, eq, v = a.partition("=")
                    check(eq and k, "bad assignment %r in %s" % (a, rel))
                    env[k] = v
    return env


trust_stage()
SERVICE_ENV = dropin_env(DROPINS[0])


def as_service(argv, env, staged=True, uid=None):
    """argv in the agent's cgroup, with the staging trust store mounted at
    the real paths (unless staged is False: this machine's own store),
    started with env -i plus env (a service's view), as uid if given (the
    mounts need root, so the switch comes after them)."""
    if uid is not None:
        argv = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups", "--"] + argv
    mounts = ('mount --bind "$1" /etc/ssl/certs && mount --bind "$2" /usr/local/share/ca-certificates '
              '&& shift 2 && exec "$@"') if staged else 'shift 2 && exec "$@"'
    inner = ["sh", "-c", mounts, "sh", os.path.join(STAGE, "etc/ssl/certs"),
             os.path.join(STAGE, "usr/local/share/ca-certificates"), "env", "-i"]
    inner += ["%s=%s" % kv for kv in sorted(env.items())] + argv
    return lib.run(inner, cgroup=RIG.cg.path, hosts=RIG.hosts, timeout=60)


@test
def dropins_installed_for_system_and_user_managers():
    for rel in DROPINS:
        env = dropin_env(rel)
        check(env == {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
                      "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
                      "NODE_EXTRA_CA_CERTS": "/usr/local/share/ca-certificates/vigil-intercept.crt"},
              "%s sets %s" % (rel, env))
    if shutil.which("systemd-analyze"):
        # systemd's own loader finds the drop-in among system.conf's parts.
        p = subprocess.run(["systemd-analyze", "cat-config", "--root=" + STAGE, "systemd/system.conf"],
                           capture_output=True, text=True, timeout=30)
        check("90-vigil-ca.conf" in p.stdout and "DefaultEnvironment=" in p.stdout,
              "systemd-analyze cat-config does not show the drop-in: %s %s" % (p.stdout[-300:], p.stderr[-300:]))


def node_chat(env, message):
    p = as_service([NODE, os.path.join(rigmod.CLIENTS, "openai_chat.mjs"), "--message", message], env)
    lines = p.stdout.strip().splitlines()
    return (json.loads(lines[-1]) if lines else {"error": p.stderr[-400:]}), p


@test
def node_sdk_as_service_trusts_the_ca():
    res, p = node_chat({}, "no trust")
    check("error" in res, "control: Node without the drop-in's variables accepted the interception CA: %s" % res)
    res, p = node_chat(SERVICE_ENV, "service node")
    check("error" not in res, "Node with the service environment failed: %s %s" % (res, p.stderr[-400:]))
    check(res["content"] == "echo: service node", "content %r" % res.get("content"))
    evs = RIG.request_events(lambda e: e["path"] == "/v1/chat/completions" and (e["exe"] or "").endswith("node"))
    check(evs and evs[-1]["status"] == 200, "the agent did not audit the intercepted Node call: %s" % evs[-1:])


PY_REQUESTS = r"""
import json, sys, requests, certifi
r = requests.post("https://api.openai.com/v1/chat/completions", data=sys.argv[1],
                  headers={"Authorization": "Bearer sk-test", "Content-Type": "application/json"}, timeout=20)
print(json.dumps({"status": r.status_code, "body": r.json(), "certifi": certifi.where()}))
"""


def py_requests(env):
    return as_service([sys.executable, "-c", PY_REQUESTS, CHAT], env)


@test
def python_requests_certifi_as_service_trusts_the_ca():
    # requests verifies against certifi's own bundle (pip's certifi, not the
    # system store) unless REQUESTS_CA_BUNDLE says otherwise.
    p = py_requests({})
    check(p.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in p.stderr,
          "control: requests without the drop-in's variables did not refuse the CA: %s %s"
          % (p.stdout[-300:], p.stderr[-300:]))
    p = py_requests(SERVICE_ENV)
    check(p.returncode == 0, "requests with the service environment failed: %s" % p.stderr[-500:])
    res = json.loads(p.stdout.strip().splitlines()[-1])
    check(res["status"] == 200 and res["body"]["choices"][0]["message"]["content"] == "echo: from a service",
          "requests answer %s" % res)
    got = [r for r in RIG.received() if r["path"] == "/v1/chat/completions"]
    check(got and json.loads(got[-1]["body"]) == json.loads(CHAT), "the provider did not receive the request")


@test
def python_stdlib_as_service_trusts_the_ca():
    script = os.path.join(TMP, "py_client.py")
    shutil.copy(os.path.join(rigmod.CLIENTS, "py_client.py"), script)
    argv = [rigmod.PY, script, "--url", "https://api.openai.com/v1/chat/completions", "--json", CHAT,
            "--header", "Authorization: Bearer sk-test"]
    p = as_service(argv, SERVICE_ENV)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    check(res.get("status") == 200, "urllib with the service environment: %s %s" % (res, p.stderr[-300:]))
    # The control: the same environment over this machine's own store (no
    # anchor installed by the staging trust) refuses. OpenSSL also reads the
    # hashed /etc/ssl/certs directory, so the system store is what counts.
    p = as_service(argv, SERVICE_ENV, staged=False)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    check("error" in res, "control: urllib trusted the CA with a bundle that lacks it: %s" % res)


def gnutls_get(staged):
    req = "GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\nAuthorization: Bearer sk-test\r\nConnection: close\r\n\r\n"
    argv = ["timeout", "8", shutil.which("gnutls-cli"), "--port", "443", "api.openai.com"]
    mounts = ('mount --bind "$1" /etc/ssl/certs && mount --bind "$2" /usr/local/share/ca-certificates '
              '&& shift 2 && exec "$@"') if staged else 'shift 2 && exec "$@"'
    inner = ["sh", "-c", mounts, "sh", os.path.join(STAGE, "etc/ssl/certs"),
             os.path.join(STAGE, "usr/local/share/ca-certificates"), "env", "-i"] + argv
    return lib.run(inner, cgroup=RIG.cg.path, hosts=RIG.hosts, timeout=30, input=req)


@test
def gnutls_trusts_the_ca_through_the_system_store():
    check(shutil.which("gnutls-cli"), "gnutls-cli (gnutls-bin) is not installed")
    p = gnutls_get(staged=False)
    check("HTTP/1.1 200" not in p.stdout, "control: GnuTLS trusted the CA without the staged store")
    p = gnutls_get(staged=True)
    check("HTTP/1.1 200" in p.stdout, "GnuTLS with the system store after trust: %s %s"
          % (p.stdout[-300:], p.stderr[-300:]))


JAVA_CLIENT = r"""
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

public class JavaClient {
    public static void main(String[] a) throws Exception {
        HttpClient c = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
        HttpRequest r = HttpRequest.newBuilder(URI.create("https://api.openai.com/v1/chat/completions"))
            .header("Authorization", "Bearer sk-test").header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(a[0])).build();
        HttpResponse<String> resp = c.send(r, HttpResponse.BodyHandlers.ofString());
        System.out.println(resp.statusCode());
        System.out.println(resp.body());
    }
}
"""
CA_JAVA_JAR = "/usr/share/ca-certificates-java/ca-certificates-java.jar"


@test
def java_via_ca_certificates_java_trusts_the_ca():
    java = shutil.which("java")
    check(java and os.path.exists(CA_JAVA_JAR), "java or ca-certificates-java is not installed")
    src = os.path.join(TMP, "JavaClient.java")
    with open(src, "w") as f:
        f.write(JAVA_CLIENT)
    os.makedirs(os.path.join(STAGE, "etc/ssl/certs/java"), exist_ok=True)
    shutil.copy("/etc/ssl/certs/java/cacerts", os.path.join(STAGE, "etc/ssl/certs/java/cacerts"))
    p = as_service([java, src, CHAT], SERVICE_ENV)
    check(p.returncode != 0 and "PKIX" in p.stderr,
          "control: Java trusted the CA before its keystore had it: %s %s" % (p.stdout[-200:], p.stderr[-300:]))
    # What Debian's update-ca-certificates hook leads to (its dpkg trigger
    # runs this jar on the pending "+cert" lines): run by hand on the
    # staged store, never through dpkg on this machine.
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        'mount --bind "$1" /etc/ssl/certs && mount --bind "$2" /usr/local/share/ca-certificates '
                        '&& exec "$3" -Xmx64m -jar "$4" -storepass changeit', "sh",
                        os.path.join(STAGE, "etc/ssl/certs"), os.path.join(STAGE, "usr/local/share/ca-certificates"),
                        java, CA_JAVA_JAR],
                       input="+/etc/ssl/certs/vigil-intercept.pem\n", capture_output=True, text=True, timeout=120)
    check(p.returncode == 0, "ca-certificates-java: %s" % p.stderr[-400:])
    p = as_service([java, src, CHAT], SERVICE_ENV)
    out = p.stdout.strip().splitlines()
    check(p.returncode == 0 and out and out[0] == "200" and "echo: from a service" in p.stdout,
          "Java after the keystore update: rc=%d %s %s" % (p.returncode, p.stdout[-200:], p.stderr[-400:]))


GO_CLIENT = r"""
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// POSTs argv[1] as a chat completion and prints {"status","body"} or
// {"error"}: the status line of the test's judgement, nothing else.
func main() {
	out := map[string]interface{}{}
	req, err := http.NewRequest("POST", "https://api.openai.com/v1/chat/completions", strings.NewReader(os.Args[1]))
	if err == nil {
		req.Header.Set("Authorization", "Bearer sk-test")
		req.Header.Set("Content-Type", "application/json")
		var resp *http.Response
		if resp, err = http.DefaultClient.Do(req); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			out["status"] = resp.StatusCode
			out["body"] = string(body)
		}
	}
	if err != nil {
		out["error"] = err.Error()
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
"""


def go_build():
    """Builds GO_CLIENT with the standard library only, in the test's temp
    dir, with nothing fetched (GOPROXY=off) and nothing outside TMP written."""
    go = shutil.which("go")
    check(go, "go (golang-go) is not installed")
    d = os.path.join(TMP, "goclient")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "go.mod"), "w") as f:
        f.write("module vigiltrust/goclient\n\ngo 1.19\n")
    with open(os.path.join(d, "main.go"), "w") as f:
        f.write(GO_CLIENT)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.path.join(d, "home"),
           "GOCACHE": os.path.join(d, "cache"), "GOPATH": os.path.join(d, "gopath"),
           "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOTOOLCHAIN": "local"}
    exe = os.path.join(d, "gochat")
    p = subprocess.run([go, "build", "-o", exe, "."], cwd=d, env=env, capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, "go build: %s" % p.stderr[-600:])
    os.chmod(exe, 0o755)
    return exe


def go_chat(exe, content, staged=True):
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]})
    p = as_service([exe, body], SERVICE_ENV, staged=staged, uid=lib.NOBODY)
    lines = p.stdout.strip().splitlines()
    return (json.loads(lines[-1]) if lines else {"error": "no output: " + p.stderr[-400:]}), p


@test
def go_net_http_as_service_trusts_the_ca():
    # Go's crypto/x509 reads SSL_CERT_FILE (the drop-in sets it to the
    # system bundle) and the /etc/ssl/certs directory: run as nobody with a
    # service's environment through the real redirect, a clean prompt goes
    # through, an e-mail reaches the provider redacted, a key is blocked.
    exe = go_build()
    res, p = go_chat(exe, "no trust", staged=False)
    check("error" in res and "certificate" in res["error"],
          "control: Go trusted the CA with a bundle that lacks it: %s %s" % (res, p.stderr[-300:]))
    res, p = go_chat(exe, "service go")
    check(res.get("status") == 200, "Go with the service environment: %s %s" % (res, p.stderr[-300:]))
    check(json.loads(res["body"])["choices"][0]["message"]["content"] == "echo: service go", "answer %s" % res)
    evs = RIG.request_events(lambda e: e["path"] == "/v1/chat/completions" and (e["exe"] or "").endswith("gochat"))
    check(evs and evs[-1]["status"] == 200 and evs[-1]["uid"] == lib.NOBODY,
          "the agent did not audit the Go call as nobody: %s" % evs[-1:])
    email = "jane.doe" + "@example.com"
    res, p = go_chat(exe, "mail %s please" % email)
    check(res.get("status") == 200, "Go e-mail prompt: %s" % res)
    got = [r for r in RIG.received() if r["path"] == "/v1/chat/completions"]
    check(got and "[EMAIL_1]" in got[-1]["body"] and email not in got[-1]["body"],
          "the provider did not receive the e-mail redacted: %s" % (got[-1:] and got[-1]["body"][:300]))
    key = "AKIA" + "Z7QW3RT5YU2IO4PL"
    before = len(RIG.received())
    res, p = go_chat(exe, "key %s" % key)
    check(res.get("status") == 403, "Go secret prompt not blocked: %s" % res)
    check(not any(key in r["body"] for r in RIG.received()[before:]), "the key reached the provider")
    evs = RIG.request_events(lambda e: (e["exe"] or "").endswith("gochat") and e["action"] == "block")
    check(evs and {"type": "AWS_ACCESS_KEY", "count": 1} in evs[-1]["findings"], "block event %s" % evs[-1:])


RUST_MAIN = r"""
// POSTs argv[1] as a chat completion; prints "STATUS BODY" or "error WHY".
fn main() {
    let body = std::env::args().nth(1).unwrap_or_default();
    match ureq::post("https://api.openai.com/v1/chat/completions")
        .set("Authorization", "Bearer sk-test")
        .set("Content-Type", "application/json")
        .send_string(&body)
    {
        Ok(r) => { let s = r.status(); println!("{} {}", s, r.into_string().unwrap_or_default()); }
        Err(ureq::Error::Status(s, r)) => println!("{} {}", s, r.into_string().unwrap_or_default()),
        Err(e) => println!("error {}", e),
    }
}
"""
# ureq over rustls with rustls-native-certs (openssl-probe: SSL_CERT_FILE,
# else the system bundle); webpki-roots is left out so only native roots count.
RUST_CARGO = """[package]
name = "rschat"
version = "0.1.0"
edition = "2021"

[dependencies]
ureq = { version = "2", default-features = false, features = ["tls", "native-certs"] }
"""
# Debian's librust-*-dev packages are a crate directory source: nothing fetched.
RUST_SOURCES = """[source.crates-io]
replace-with = "debian"
[source.debian]
directory = "/usr/share/cargo/registry"
[net]
offline = true
"""


def rust_build():
    """Builds the ureq client with Debian's cargo/rustc (not a rustup
    toolchain that may be on PATH) from Debian's crate packages only."""
    check(os.path.exists("/usr/bin/cargo") and os.path.isdir("/usr/share/cargo/registry/ureq-2.6.2"),
          "cargo or librust-ureq-dev (Debian) is not installed")
    d = os.path.join(TMP, "rsclient")
    for sub, name, text in (("src", "main.rs", RUST_MAIN), ("", "Cargo.toml", RUST_CARGO),
                            (".cargo", "config.toml", RUST_SOURCES)):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
        with open(os.path.join(d, sub, name), "w") as f:
            f.write(text)
    env = {"PATH": "/usr/bin:/bin", "HOME": os.path.join(d, "home"), "CARGO_HOME": os.path.join(d, "cargohome"),
           "RUSTC": "/usr/bin/rustc"}
    p = subprocess.run(["/usr/bin/cargo", "build", "--offline", "-q"], cwd=d, env=env, capture_output=True,
                       text=True, timeout=600)
    check(p.returncode == 0, "cargo build: %s" % p.stderr[-600:])
    return os.path.join(d, "target", "debug", "rschat")


@test
def rust_rustls_native_certs_as_service_trusts_the_ca():
    exe = rust_build()
    os.chmod(os.path.join(TMP, "rsclient"), 0o755)
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "service rust"}]})
    p = as_service([exe, body], SERVICE_ENV, staged=False, uid=lib.NOBODY)
    check(p.stdout.startswith("error") and "UnknownIssuer" in p.stdout,
          "control: Rust trusted the CA with a bundle that lacks it: %s %s" % (p.stdout[-300:], p.stderr[-300:]))
    p = as_service([exe, body], SERVICE_ENV, uid=lib.NOBODY)
    status, _, answer = p.stdout.strip().partition(" ")
    check(status == "200" and "echo: service rust" in answer, "Rust with the service environment: %s %s"
          % (p.stdout[-300:], p.stderr[-300:]))
    evs = RIG.request_events(lambda e: (e["exe"] or "").endswith("rschat"))
    check(evs and evs[-1]["status"] == 200 and evs[-1]["uid"] == lib.NOBODY, "not audited: %s" % evs[-1:])


@test
def untrust_removes_the_dropins():
    p = subprocess.run([VIGIL, "ca", "untrust", "--root", STAGE], capture_output=True, text=True, timeout=30)
    check(p.returncode == 0, "untrust: %s" % p.stderr)
    for rel in DROPINS:
        check(not os.path.exists(os.path.join(STAGE, rel)), "%s left behind" % rel)
        check(not os.path.exists(os.path.dirname(os.path.join(STAGE, rel))), "%s/ left behind" % os.path.dirname(rel))


if __name__ == "__main__":
    lib.main()
