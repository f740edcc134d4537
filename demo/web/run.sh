#!/usr/bin/env bash
# Build the web demo's plugins into demo/web/bin, then serve them on 127.0.0.1 (Ctrl-C stops).
# Usage: demo/web/run.sh [STAMP]    (STAMP: the CompileTimeString to build with; default v1)
# The port is $HOTSWAP_WEB_PORT (default 8000; 0 picks a free one and prints it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
if [[ -x .venv/bin/hotswap ]]; then HOTSWAP=.venv/bin/hotswap; else HOTSWAP=hotswap; fi
if ! command -v "$HOTSWAP" >/dev/null 2>&1; then
  echo "error: no hotswap command: run 'make install' in $(pwd), or pip install the package" >&2
  exit 1
fi

bin="${HOTSWAP_DEMO_BIN:-demo/web/bin}"
mkdir -p "$bin"
rm -f "$bin"/*.hsp
for init in demo/web/plugin/*/__init__.py; do
  "$HOTSWAP" build "$(dirname "$init")" "$bin" -- -X "CompileTimeString=${1:-v1}"
done
exec "$PY" -m demo.web.host --plugin-dir "$bin" --pid-file "$bin/host.pid"
