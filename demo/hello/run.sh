#!/usr/bin/env bash
# Build the hello plugins into demo/hello/bin, then start the host (Ctrl-C stops it).
# Usage: demo/hello/run.sh [STAMP]      (STAMP: the CompileTimeString to build with; default v1)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source demo/_lib.sh

bin="$(demo_bin hello)"
mkdir -p "$bin"
rm -f "$bin"/*.hsp
build_plugins hello "${1:-v1}"
exec "$PY" -m demo.hello.host --plugin-dir "$bin"
