#!/usr/bin/env bash
# Build the livex plugins into demo/livex/bin, then start the host (Ctrl-C stops it).
# Usage: demo/livex/run.sh [STAMP]      (STAMP: the CompileTimeString to build with; default v1)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source demo/_lib.sh

bin="$(demo_bin livex)"
mkdir -p "$bin"
rm -f "$bin"/*.hsp
build_plugins livex "${1:-v1}"
exec "$PY" -m demo.livex.host --plugin-dir "$bin"
