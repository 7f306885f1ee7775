"""Offline checks of scripts/k8s/vigil-agent.yaml (no Kubernetes here).

`kubectl --dry-run=client` needs an API server even with --validate=false
(it asks for the REST mapping), so what can be checked offline is checked
here: the manifest parses, the DaemonSet has the host namespaces, mounts,
capabilities and probes the agent needs (and no privileged mode), the
ConfigMap's agent config and policy pass `vigil-agent --check` once its
paths point at this machine, the probe's port is the config's metrics port,
and every path the config names is one the pod mounts. That the capability
list is enough is shown by tests/e2e/test_netns.py, which runs the agent
with exactly that bounding set.
"""
import os
import re
import subprocess
import tempfile

import yaml

import lib
from lib import check, test

MANIFEST = os.path.join(lib.ROOT, "scripts", "k8s", "vigil-agent.yaml")
CAPS = ["BPF", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "SETPCAP", "KILL"]


def docs():
    with open(MANIFEST) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def one(kind):
    found = [d for d in docs() if d.get("kind") == kind]
    check(len(found) == 1, "%d %s objects in the manifest" % (len(found), kind))
    return found[0]


def agent_config():
    return one("ConfigMap")["data"]["agent.yaml"]


@test
def daemonset_host_namespaces_and_least_capabilities():
    ds = one("DaemonSet")
    check(ds["apiVersion"] == "apps/v1", "apiVersion %s" % ds["apiVersion"])
    tpl = ds["spec"]["template"]
    check(ds["spec"]["selector"]["matchLabels"].items() <= tpl["metadata"]["labels"].items(),
          "selector does not match the pod labels")
    pod = tpl["spec"]
    check(pod.get("hostPID") is True and pod.get("hostNetwork") is True, "hostPID/hostNetwork not both set")
    check(pod.get("automountServiceAccountToken") is False, "the agent needs no API token")
    (c,) = pod["containers"]
    sc = c["securityContext"]
    check(sc.get("privileged") is False and sc.get("allowPrivilegeEscalation") is False,
          "privileged or privilege escalation allowed: %s" % sc)
    check(sc["capabilities"].get("drop") == ["ALL"], "capabilities not dropped first: %s" % sc["capabilities"])
    check(sorted(sc["capabilities"]["add"]) == sorted(CAPS),
          "capabilities %s, want exactly %s" % (sc["capabilities"]["add"], CAPS))
    check(sc.get("readOnlyRootFilesystem") is True, "root filesystem writable")


@test
def daemonset_mounts_config_secret_and_host_paths():
    pod = one("DaemonSet")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    vols = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    host = {v["hostPath"]["path"]: n for n, v in vols.items() if "hostPath" in v}
    for p in ("/sys/fs/bpf", "/sys/fs/cgroup"):
        check(p in host, "no hostPath volume for %s" % p)
    check(any(m["name"] == host["/sys/fs/bpf"] and m["mountPath"] == "/sys/fs/bpf" for m in mounts.values()),
          "bpffs not mounted at /sys/fs/bpf")
    cfg = yaml.safe_load(agent_config())
    cg_mount = [m for m in mounts.values() if m["name"] == host["/sys/fs/cgroup"]]
    check(cg_mount and cg_mount[0]["mountPath"] == cfg["cgroup"],
          "config cgroup %s is not where the node's cgroup2 is mounted (%s)" % (cfg["cgroup"], cg_mount))
    cm = one("ConfigMap")
    check(any(v.get("configMap", {}).get("name") == cm["metadata"]["name"] for v in vols.values()),
          "the ConfigMap is not a volume")
    secret = [n for n, v in vols.items() if "secret" in v]
    check(secret and vols[secret[0]]["secret"]["defaultMode"] == 0o400, "CA secret missing or not 0400")
    ca_dir = [m["mountPath"] for m in mounts.values() if m["name"] == secret[0]][0]
    for k in ("ca_cert", "ca_key"):
        check(os.path.dirname(cfg[k]) == ca_dir, "%s %s is not in the secret mount %s" % (k, cfg[k], ca_dir))
    args = c["args"]
    conf = args[args.index("--config") + 1]
    check(conf in mounts and mounts[conf].get("subPath") == "agent.yaml", "--config %s is not mounted" % conf)
    check(cfg["policy"] in mounts and mounts[cfg["policy"]].get("subPath") == "policy.yaml",
          "policy %s not mounted" % cfg["policy"])
    for k in ("spool_dir", "audit_log"):
        check(any(cfg[k].startswith(p + "/") for p, m in mounts.items() if not m.get("readOnly")),
              "%s %s is not on a writable mount" % (k, cfg[k]))


@test
def probes_ask_the_agents_ready_endpoint():
    (c,) = one("DaemonSet")["spec"]["template"]["spec"]["containers"]
    port = int(yaml.safe_load(agent_config())["metrics"].rsplit(":", 1)[1])
    for probe in ("readinessProbe", "livenessProbe"):
        g = c[probe]["httpGet"]
        check(g["path"] == "/ready" and g["port"] == port and g["host"] == "127.0.0.1",
              "%s %s, want 127.0.0.1:%d/ready" % (probe, g, port))


@test
def configmap_config_and_policy_pass_agent_check():
    cm = one("ConfigMap")["data"]
    tmp = tempfile.mkdtemp(prefix="vigil-k8s-")
    lib.at_cleanup(lambda: subprocess.run(["rm", "-rf", tmp]))
    subprocess.run([os.path.join(lib.BUILD, "vigil"), "ca", "init", "--dir", os.path.join(tmp, "ca")], check=True,
                   capture_output=True)
    with open(os.path.join(tmp, "policy.yaml"), "w") as f:
        f.write(cm["policy.yaml"])
    # The node's paths, pointed at this machine's equivalents.
    subst = {"/host/sys/fs/cgroup": lib.cgroup2_root(), "/etc/vigil/ca": os.path.join(tmp, "ca"),
             "/etc/vigil/policy.yaml": os.path.join(tmp, "policy.yaml"), "/var/lib/vigil": tmp,
             "/var/log/vigil": tmp, "/sys/fs/bpf/vigil": "/sys/fs/bpf/vigil-k8s-check-%d" % os.getpid()}
    text = cm["agent.yaml"]
    for a, b in subst.items():
        text = text.replace(a, b)
    live = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
    check(not re.search(r"(^|\s)/(etc|host|var)/", live), "unsubstituted node path in %s" % live)
    conf = os.path.join(tmp, "agent.yaml")
    with open(conf, "w") as f:
        f.write(text)
    p = subprocess.run([lib.AGENT, "--check", "--config", conf], capture_output=True, text=True)
    check(p.returncode == 0, "vigil-agent --check: %s %s" % (p.stdout, p.stderr))


if __name__ == "__main__":
    lib.main()
