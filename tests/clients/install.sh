#!/usr/bin/env bash
# Installs the pinned SDK clients (package-lock.json) into tests/clients/node_modules.
# Runs `npm ci` only when node_modules is missing or was installed from a
# different lock (a stamp holds the lock's sha256), so repeated test runs do
# not touch the network. Needs only the npm registry. node_modules is never
# committed (.gitignore). Exit non-zero when node/npm are missing or npm ci fails.
set -euo pipefail
cd "$(dirname "$0")"
command -v node >/dev/null && command -v npm >/dev/null || {
	echo "install.sh: node and npm are required (scripts/deps.sh test)" >&2; exit 1; }
stamp=node_modules/.vigil-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
	&& [ -d node_modules/openai ] && [ -d node_modules/@anthropic-ai/sdk ] \
	&& [ -d node_modules/@modelcontextprotocol/sdk ] && [ -d node_modules/puppeteer-core ] \
	&& [ -d node_modules/ws ] && [ -d node_modules/@grpc/grpc-js ]; then
	exit 0
fi
echo "install.sh: npm ci in $(pwd)" >&2
# The SDK pins are exact; engines warnings (openai asks for node >= 22) are
# informational: the selftest proves the clients work on the node we have.
npm ci --no-audit --no-fund --loglevel=error >&2
echo "$want" >"$stamp"
