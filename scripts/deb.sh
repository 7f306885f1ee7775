#!/usr/bin/env bash
# make deb: a Debian package of the built binaries, the example
# configuration (as conffiles: an admin's edits survive upgrades) and the
# systemd units, with its library dependencies computed by dpkg-shlibdeps
# from the binaries themselves. Usage: deb.sh [OUTDIR]   (default: $BUILD)
#
# The package installs and enables nothing on its own: the agent needs an
# interception CA and the collector an enrollment CA first (README,
# scripts/install-agent.sh). Removing it stops the services; purging also
# removes the spool and logs (unsent audit events go with them).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
out=${1:-$BUILD}
version=$(sed -n 's/^#define VIGIL_VERSION "\(.*\)"$/\1/p' agent/main.c)
arch=$(dpkg --print-architecture)
[ -n "$version" ] || { echo "deb.sh: cannot read VIGIL_VERSION from agent/main.c" >&2; exit 2; }
for b in vigil-agent vigil-collector vigil; do
	[ -x "$BUILD/$b" ] || { echo "deb.sh: $BUILD/$b missing: run make first" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/vigil-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/vigil
BUILD=$BUILD bash scripts/install.sh "$stage" /usr >/dev/null
# Debian ships stripped binaries (debug symbols would go to a -dbgsym package).
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
	"$stage/usr/sbin/vigil-agent" "$stage/usr/bin/vigil-collector" "$stage/usr/bin/vigil"
install -d -m 0755 "$stage/DEBIAN" "$stage/usr/share/doc/vigil"
install -m 0644 /dev/null "$stage/usr/share/doc/vigil/copyright"
printf 'Vigil. Copyright the Vigil authors.\n' >"$stage/usr/share/doc/vigil/copyright"

# Library dependencies of the binaries, as Debian itself would compute them.
mkdir -p "$work/debian"
printf 'Source: vigil\n\nPackage: vigil\nArchitecture: any\n' >"$work/debian/control"
deps=$(cd "$work" && dpkg-shlibdeps -O -e vigil/usr/sbin/vigil-agent -e vigil/usr/bin/vigil-collector \
	-e vigil/usr/bin/vigil 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$deps" ] || { echo "deb.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
rm -rf "$work/debian"

size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: vigil
Version: $version
Architecture: $arch
Maintainer: Vigil <vigil@localhost>
Section: net
Priority: optional
Installed-Size: $size
Depends: $deps
Recommends: ca-certificates, libnss3-tools
Description: zero-trust control of LLM API calls
 vigil-agent steers every connection to a known LLM API (eBPF, cgroup
 hooks) into a local proxy that terminates TLS with the enterprise CA,
 finds PII, secrets and prompt injection, enforces policy per user, group,
 executable and model, and ships signed audit events. vigil-collector
 stores and verifies them; vigil queries them.
EOF
(cd "$stage" && find etc -type f | sed 's|^|/|' | sort) >"$stage/DEBIAN/conffiles"

cat >"$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
	install -d -m 0700 /var/lib/vigil /var/lib/vigil/spool
	install -d -m 0750 /var/log/vigil
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
		# An upgrade restarts what was running; a first install starts nothing.
		for u in vigil-agent vigil-collector; do
			if systemctl -q is-active "$u.service"; then systemctl restart "$u.service" || true; fi
		done
	fi
fi
exit 0
EOF
cat >"$stage/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	for u in vigil-agent vigil-collector; do
		systemctl stop "$u.service" 2>/dev/null || true
		systemctl disable "$u.service" 2>/dev/null || true
	done
fi
exit 0
EOF
cat >"$stage/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
	rm -rf /var/lib/vigil /var/log/vigil
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
EOF
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"

mkdir -p "$out"
deb=$out/vigil_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
