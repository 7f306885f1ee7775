#!/usr/bin/env python3
"""Run a command that sees a private /etc/hosts (the "hosts trick").

Owns: starting a command in a new private mount namespace (`unshare -m
--propagation private`) where a bind mount puts a generated hosts file over
/etc/hosts, so the SDKs' default hosts (api.openai.com, ...) resolve to a
loopback address where the fake provider listens. Resolution stays the
system's own (getaddrinfo reads /etc/hosts first: nsswitch `hosts: files
dns`), so Node, Python, curl and the agent behave as with real DNS.
Must never: change the machine's /etc/hosts or mount table (the bind mount
lives and dies with the namespace), or touch the network namespace.

Module use:
    from nsrun import hosts_cmd, run_with_hosts, popen_with_hosts, PROVIDER_HOSTS
    r = run_with_hosts(["node", "openai_chat.mjs", ...], {"api.openai.com": "127.0.0.9"},
                       capture_output=True, text=True)
Command line:
    nsrun.py [--map HOST=IP ...] [--ip IP] -- CMD ARGS...
    (--ip maps every PROVIDER_HOSTS name to IP; --map adds or overrides one)
"""
import os
import subprocess
import sys
import tempfile

PROVIDER_HOSTS = [
    "api.openai.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
    "myres.openai.azure.com",
    "bedrock-runtime.us-east-1.amazonaws.com",
    "api.mistral.ai",
]

# sh receives the hosts file as $0 and the command as "$@".
_SCRIPT = 'mount --bind "$0" /etc/hosts && exec "$@"'


def write_hosts(mapping, path=None):
    """Write a hosts file: localhost lines plus one line per name -> ip."""
    if path is None:
        fd, path = tempfile.mkstemp(prefix="vigil-hosts-", suffix=".txt")
        os.close(fd)
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost"]
    lines += ["%s %s" % (ip, name) for name, ip in mapping.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, 0o644)
    return path


def hosts_cmd(cmd, mapping=None, ip=None, hosts_file=None):
    """The argv that runs cmd with the private hosts file; returns (argv, path).

    mapping: name -> ip; ip: map every PROVIDER_HOSTS name to this address
    (mapping entries win). The hosts file is left for the caller to delete
    (it must outlive a Popen'd child's start-up).
    """
    m = {h: ip for h in PROVIDER_HOSTS} if ip else {}
    m.update(mapping or {})
    path = write_hosts(m, hosts_file)
    return (["unshare", "-m", "--propagation", "private", "sh", "-c", _SCRIPT, path]
            + list(cmd), path)


def run_with_hosts(cmd, mapping=None, ip=None, **kw):
    """subprocess.run(cmd) inside the private-hosts namespace."""
    argv, path = hosts_cmd(cmd, mapping, ip)
    try:
        return subprocess.run(argv, **kw)
    finally:
        os.unlink(path)


def popen_with_hosts(cmd, mapping=None, ip=None, **kw):
    """subprocess.Popen(cmd) inside the namespace; returns (proc, hosts_path).
    Delete hosts_path once the process has ended."""
    argv, path = hosts_cmd(cmd, mapping, ip)
    return subprocess.Popen(argv, **kw), path


def main(argv):
    mapping, ip = {}, None
    i = 0
    while i < len(argv) and argv[i] != "--":
        if argv[i] == "--map" and i + 1 < len(argv) and "=" in argv[i + 1]:
            k, v = argv[i + 1].split("=", 1)
            mapping[k] = v
            i += 2
        elif argv[i] == "--ip" and i + 1 < len(argv):
            ip = argv[i + 1]
            i += 2
        else:
            sys.stderr.write(__doc__.split("Command line:")[1])
            return 2
    cmd = argv[i + 1:]
    if not cmd:
        sys.stderr.write("nsrun: no command\n")
        return 2
    return run_with_hosts(cmd, mapping, ip).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
