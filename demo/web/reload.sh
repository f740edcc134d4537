#!/usr/bin/env bash
# Rebuild the web demo's plugins with a new CompileTimeString and tell the running host to
# reload them (SIGUSR1); requests and websockets keep being served throughout.
# Usage: demo/web/reload.sh [STAMP]   (default: the current UTC time)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if [[ -x .venv/bin/hotswap ]]; then HOTSWAP=.venv/bin/hotswap; else HOTSWAP=hotswap; fi
if ! command -v "$HOTSWAP" >/dev/null 2>&1; then
  echo "error: no hotswap command: run 'make install' in $(pwd), or pip install the package" >&2
  exit 1
fi

bin="${HOTSWAP_DEMO_BIN:-demo/web/bin}"
pidfile="$bin/host.pid"
if [[ ! -s $pidfile ]]; then
  echo "error: $pidfile not found: is the host running? start it with demo/web/run.sh" >&2
  exit 1
fi
stamp="${1:-}"
if [[ -z $stamp ]]; then stamp="$(date -u +%Y%m%d-%H%M%S)"; fi
for init in demo/web/plugin/*/__init__.py; do
  "$HOTSWAP" build "$(dirname "$init")" "$bin" -- -X "CompileTimeString=$stamp"
done
kill -USR1 "$(cat "$pidfile")"
echo "sent SIGUSR1 to the web host (pid $(cat "$pidfile")): it reloads its plugins now (stamp $stamp)"
