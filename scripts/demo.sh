#!/usr/bin/env bash
# make demo: see scripts/demo.py. Needs root (BPF, cgroups, port 443 on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
	echo "make demo needs root: it loads eBPF programs into a scratch cgroup" >&2
	exit 1
fi
exec python3 scripts/demo.py
