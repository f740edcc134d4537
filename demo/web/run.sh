#!/usr/bin/env bash
# Build the web demo's plugins into demo/web/bin, then serve them on 127.0.0.1 (Ctrl-C stops).
# Usage: demo/web/run.sh [STAMP]    (STAMP: the CompileTimeString to build with; default v1)
# The port is $HOTSWAP_WEB_PORT (default 8000; 0 picks a free one and prints it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source demo/_lib.sh

bin="$(demo_bin web)"
mkdir -p "$bin"
rm -f "$bin"/*.hsp
build_plugins web "${1:-v1}"
exec "$PY" -m demo.web.host --plugin-dir "$bin" --pid-file "$bin/host.pid"
