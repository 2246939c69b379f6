#!/usr/bin/env bash
# Build the web UI (ui/) into apiary/control/webui/, which the control plane serves.
#   scripts/build_ui.sh             build; fail if it cannot be built
#   scripts/build_ui.sh --optional  build if possible; else say why and exit 0 (make up)
# Steps: npm ci (only when package-lock.json changed), both planes' OpenAPI specs dumped
# from the Python apps, TypeScript types generated from them (openapi-typescript),
# type-check (tsc, strict), vite build. `make ui` runs this only when a source changed.
set -euo pipefail
cd "$(dirname "$0")/.."
optional=0
[ "${1:-}" = "--optional" ] && optional=1

skip() {
  if [ "$optional" = 1 ]; then
    echo "the web UI was not built: $1 (the API starts without it; see docs/ui.md)" >&2
    exit 0
  fi
  echo "cannot build the web UI: $1" >&2
  exit 1
}

command -v node >/dev/null 2>&1 || skip "Node.js is not installed (Node 20 or newer and npm are needed)"
command -v npm >/dev/null 2>&1 || skip "npm is not installed"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || skip "Node.js $(node --version) is too old (20 or newer is needed)"

lock_sum=$(cksum ui/package-lock.json | cut -d' ' -f1)
if [ ! -f "ui/node_modules/.apiary-ci-$lock_sum" ]; then
  echo "web UI: npm ci"
  (cd ui && npm ci --no-audit --no-fund --loglevel=error) || skip "npm ci failed (is the npm registry reachable?)"
  touch "ui/node_modules/.apiary-ci-$lock_sum"
fi
echo "web UI: OpenAPI types, type-check, vite build"
mkdir -p ui/generated
.venv/bin/python scripts/dump_openapi.py ui/generated || skip "the OpenAPI specs could not be dumped"
(cd ui && npm run --silent gen >/dev/null && npm run --silent build) || skip "the build failed"
echo "web UI: built into apiary/control/webui/"
