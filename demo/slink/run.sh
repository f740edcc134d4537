#!/usr/bin/env bash
# Generate the static-linking glue of the slink plugins into demo/slink, then start the host,
# which runs the plugins from their source files (Ctrl-C stops it).
# With --map-sources: build artifacts instead and start the host with map_sources=True, so
# reload.sh --map-sources hot-swaps them and breakpoints on the plugin's files still hit.
# Usage: demo/slink/run.sh [--map-sources] [STAMP]   (STAMP: the CompileTimeString; default v1)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source demo/_lib.sh

bin="$(demo_bin slink)"
mkdir -p "$bin"
if [[ ${1:-} == --map-sources ]]; then
  build_plugins slink "${2:-v1}"
  exec "$PY" -m demo.slink.host --plugin-dir "$bin" --map-sources
fi
link_plugins "${1:-v1}"
exec "$PY" -m demo.slink.host --plugin-dir "$bin"
