#!/usr/bin/env bash
# Fleet installer for the Vigil agent: non-interactive, idempotent, and
# reversible. For configuration management tools (Ansible, Intune, Jamf...).
#
#   install-agent.sh --ca-dir DIR [--enroll DIR] [--collector HOST:PORT]
#                    [--fail-mode open|closed] [--policy FILE] [--bin-dir DIR]
#                    [--root R] [--no-start]
#   install-agent.sh --uninstall [--root R]
#
#   --ca-dir DIR      interception CA (intercept.crt + intercept.key, from
#                     `vigil ca init`, usually an intermediate of the
#                     enterprise root)
#   --enroll DIR      enrollment bundle from `vigil-collector enroll`
#                     (agent.crt, agent.key, ca.crt)
#   --collector H:P   collector ingest address (needs --enroll)
#   --bin-dir DIR     where vigil-agent, vigil, vigil-collector are (default:
#                     this checkout's build/)
#   --root R          install under R instead of / (staging, tests): no
#                     systemctl, no update-ca-certificates
#   --no-start        install but do not enable/start the service
#   --packaged        the binaries and unit come from the vigil Debian
#                     package (`make deb`, /usr/sbin, /usr/bin): configure
#                     only (CA, enrollment, config, trust, service)
#
# It writes /etc/vigil/agent.yaml (managed: rewritten on every run), keeps an
# existing /etc/vigil/policy.yaml, installs keys at mode 0600 in 0700
# directories, trusts the CA system-wide (`vigil ca trust`), and enables
# vigil-agent.service. --uninstall stops the service and removes exactly
# what it installed, restoring the trust store.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
root=/ ca_dir= enroll= collector= fail_mode=open policy= bin_dir=$here/build start=1 uninstall=0 packaged=0
die() { echo "install-agent.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
	case "$1" in
	--ca-dir) ca_dir=$2; shift 2 ;;
	--enroll) enroll=$2; shift 2 ;;
	--collector) collector=$2; shift 2 ;;
	--fail-mode) fail_mode=$2; shift 2 ;;
	--policy) policy=$2; shift 2 ;;
	--bin-dir) bin_dir=$2; shift 2 ;;
	--root) root=$2; shift 2 ;;
	--no-start) start=0; shift ;;
	--packaged) packaged=1; shift ;;
	--uninstall) uninstall=1; shift ;;
	-h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown option $1 (see --help)" ;;
	esac
done
[ "$(id -u)" -eq 0 ] || die "must run as root"
R=${root%/}
live=0; [ -z "$R" ] && live=1
has_systemd=0; [ "$live" = 1 ] && [ -d /run/systemd/system ] && has_systemd=1
sbin=$R/usr/local/sbin bin=$R/usr/local/bin etc=$R/etc/vigil unit=$R/lib/systemd/system/vigil-agent.service
if [ "$packaged" = 1 ]; then sbin=$R/usr/sbin bin=$R/usr/bin bin_dir=$R/usr/sbin; fi
manifest=$etc/install-agent.manifest

if [ "$uninstall" = 1 ]; then
	if [ "$has_systemd" = 1 ]; then
		systemctl disable --now vigil-agent.service >/dev/null 2>&1 || true
	fi
	vig=$bin/vigil
	[ -x "$vig" ] || vig=$R/usr/bin/vigil   # installed with --packaged
	if [ -x "$vig" ]; then "$vig" ca untrust --root "${R:-/}" >/dev/null; fi
	if [ -f "$manifest" ]; then
		while read -r f; do rm -f "$R$f"; done <"$manifest"
		rm -f "$manifest"
	fi
	for d in "$etc/ca" "$etc/pki" "$etc"; do rmdir "$d" 2>/dev/null || true; done
	[ "$has_systemd" = 1 ] && systemctl daemon-reload
	echo "Vigil agent removed${R:+ from $R}"
	exit 0
fi

[ -n "$ca_dir" ] || die "--ca-dir is required"
[ -f "$ca_dir/intercept.crt" ] && [ -f "$ca_dir/intercept.key" ] || die "$ca_dir lacks intercept.crt/intercept.key"
case "$fail_mode" in open|closed) ;; *) die "--fail-mode must be open or closed" ;; esac
if [ -n "$collector" ]; then
	[ -n "$enroll" ] || die "--collector needs --enroll"
	for f in agent.crt agent.key ca.crt; do [ -f "$enroll/$f" ] || die "$enroll lacks $f"; done
fi
if [ "$packaged" = 1 ]; then
	for b in "$sbin/vigil-agent" "$bin/vigil" "$unit"; do
		[ -e "$b" ] || die "$b not found: install the vigil package first"
	done
else
	for b in vigil-agent vigil; do [ -x "$bin_dir/$b" ] || die "$bin_dir/$b not found (build first, or --bin-dir)"; done
fi

installed=()
put() { # put MODE SRC DEST
	install -D -m "$1" "$2" "$3"
	installed+=("${3#"$R"}")
}
umask 077
install -d -m 0755 "$etc" "$sbin" "$bin" "$(dirname "$unit")"
install -d -m 0700 "$etc/ca" "$etc/pki"
if [ "$packaged" = 0 ]; then
	put 0755 "$bin_dir/vigil-agent" "$sbin/vigil-agent"
	put 0755 "$bin_dir/vigil" "$bin/vigil"
fi
put 0644 "$ca_dir/intercept.crt" "$etc/ca/intercept.crt"
put 0600 "$ca_dir/intercept.key" "$etc/ca/intercept.key"
if [ -n "$enroll" ]; then
	put 0644 "$enroll/agent.crt" "$etc/pki/agent.crt"
	put 0600 "$enroll/agent.key" "$etc/pki/agent.key"
	put 0644 "$enroll/ca.crt" "$etc/pki/ca.crt"
fi
if [ -n "$policy" ]; then
	put 0644 "$policy" "$etc/policy.yaml"
elif [ ! -f "$etc/policy.yaml" ] && [ -f "$here/scripts/policy.example.yaml" ]; then
	put 0644 "$here/scripts/policy.example.yaml" "$etc/policy.yaml"
fi
tmp=$(mktemp)
{
	echo "# Managed by install-agent.sh: rewritten on every run."
	echo "listen: 127.0.0.1:15001"
	echo "cgroup: auto"
	echo "fail_mode: $fail_mode"
	echo "ca_cert: /etc/vigil/ca/intercept.crt"
	echo "ca_key: /etc/vigil/ca/intercept.key"
	echo "upstream_ca: system"
	echo "policy: /etc/vigil/policy.yaml"
	echo "audit_log: /var/log/vigil/events.jsonl"
	echo "spool_dir: /var/lib/vigil/spool"
	if [ -n "$collector" ]; then
		echo "collector:"
		echo "  address: $collector"
		echo "  ca: /etc/vigil/pki/ca.crt"
		echo "  cert: /etc/vigil/pki/agent.crt"
		echo "  key: /etc/vigil/pki/agent.key"
	fi
} >"$tmp"
put 0644 "$tmp" "$etc/agent.yaml"
rm -f "$tmp"
if [ "$packaged" = 0 ]; then
	sed -e "s|@BINDIR@|/usr/local/bin|g" -e "s|@SBINDIR@|/usr/local/sbin|g" \
		-e "s|@DOCDIR@|/usr/local/share/doc/vigil|g" "$here/scripts/systemd/vigil-agent.service" >"$unit"
	chmod 0644 "$unit"
	installed+=("${unit#"$R"}")
fi
if [ "$live" = 1 ]; then "$sbin/vigil-agent" --check --config "$etc/agent.yaml" >/dev/null; fi
"$bin/vigil" ca trust --dir "$etc/ca" --root "${R:-/}" >/dev/null
# The manifest accumulates over runs: a file installed by an earlier run
# (the example policy) is still ours to remove.
{ cat "$manifest" 2>/dev/null || true; printf '%s\n' "${installed[@]}"; } | sort -u >"$manifest.new"
mv "$manifest.new" "$manifest"
chmod 0600 "$manifest"
if [ "$has_systemd" = 1 ]; then
	systemctl daemon-reload
	if [ "$start" = 1 ]; then systemctl enable --now vigil-agent.service; fi
fi
echo "Vigil agent installed${R:+ under $R} (fail_mode $fail_mode${collector:+, collector $collector})"
