#!/usr/bin/env bash
# Rebuild the web demo's plugins with a new CompileTimeString and tell the running host to
# reload them (SIGUSR1); requests and websockets keep being served throughout.
# Usage: demo/web/reload.sh [STAMP]   (default: the current UTC time)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source demo/_lib.sh

bin="$(demo_bin web)"
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
