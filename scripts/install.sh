#!/usr/bin/env bash
# make install: binaries, example configuration under /etc/vigil (never
# overwriting an admin's files), systemd units. Usage: install.sh DESTDIR PREFIX
set -euo pipefail
cd "$(dirname "$0")/.."
DESTDIR=${1:-}
PREFIX=${2:-/usr/local}
BUILD=${BUILD:-build}
bindir=$PREFIX/bin
sbindir=$PREFIX/sbin
unitdir=${UNITDIR:-/lib/systemd/system}

install -d -m 0755 "$DESTDIR$bindir" "$DESTDIR$sbindir" "$DESTDIR$unitdir" "$DESTDIR$PREFIX/share/doc/vigil"
install -m 0755 "$BUILD/vigil-agent" "$DESTDIR$sbindir/vigil-agent"
install -m 0755 "$BUILD/vigil-collector" "$DESTDIR$bindir/vigil-collector"
install -m 0755 "$BUILD/vigil" "$DESTDIR$bindir/vigil"
install -m 0644 README.md "$DESTDIR$PREFIX/share/doc/vigil/README.md"

install -d -m 0755 "$DESTDIR/etc/vigil"
install -d -m 0700 "$DESTDIR/etc/vigil/ca" "$DESTDIR/etc/vigil/pki"
for f in agent.yaml:scripts/etc/agent.yaml policy.yaml:scripts/policy.example.yaml \
	 collector.yaml:scripts/etc/collector.yaml; do
	name=${f%%:*} src=${f#*:}
	[ -f "$src" ] || continue
	if [ -e "$DESTDIR/etc/vigil/$name" ]; then
		install -m 0644 "$src" "$DESTDIR/etc/vigil/$name.example"
	else
		install -m 0644 "$src" "$DESTDIR/etc/vigil/$name"
	fi
done
for u in vigil-agent vigil-collector; do
	sed -e "s|@BINDIR@|$bindir|g" -e "s|@SBINDIR@|$sbindir|g" -e "s|@DOCDIR@|$PREFIX/share/doc/vigil|g" \
		"scripts/systemd/$u.service" \
		>"$DESTDIR$unitdir/$u.service"
	chmod 0644 "$DESTDIR$unitdir/$u.service"
done
echo "installed Vigil under ${DESTDIR:-/} (prefix $PREFIX, units in $unitdir)"
