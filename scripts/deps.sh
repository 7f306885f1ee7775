#!/usr/bin/env bash
# Installs the Debian packages Vigil builds and tests with. Idempotent: does
# nothing (and touches no network) when everything is already installed.
# Usage: scripts/deps.sh [build|test|bench]   (default: test)
set -euo pipefail

build_pkgs=(
  make gcc clang llvm pkg-config bpftool libbpf-dev libelf-dev zlib1g-dev
  libssl-dev libhyperscan-dev libprotobuf-c-dev protobuf-c-compiler
  libnl-3-dev libnl-idiag-3-dev libnl-route-3-dev libzstd-dev libyaml-dev
  libsqlite3-dev libcurl4-openssl-dev
  libnghttp2-dev libbrotli-dev
)
test_pkgs=(
  curl python3 openssl iproute2 util-linux procps ca-certificates
  sqlite3 zstd clickhouse-server slowhttptest testssl.sh libclang-rt-14-dev dpkg-dev
  nghttp2-client python3-h2 python3-yaml libnss3-tools chromium firefox-esr gnutls-bin openjdk-17-jre-headless ca-certificates-java golang-go
  cargo rustc librust-ureq-dev
  zookeeper
)
bench_pkgs=( nginx-light mitmproxy libpcre2-dev wrk )

want=("${build_pkgs[@]}")
case "${1:-test}" in
  build) ;;
  test) want+=("${test_pkgs[@]}") ;;
  bench) want+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: $0 [build|test|bench]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' \
    || missing+=("$p")
done
# Node and npm often come from outside Debian (and Debian's npm conflicts
# with such a nodejs): accept any working pair on PATH.
if [ "${1:-test}" != build ] && ! { command -v node && command -v npm; } >/dev/null; then
  missing+=(nodejs npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "deps.sh: missing packages (${missing[*]}); run as root" >&2
  exit 1
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
