#!/usr/bin/env bash
# Generate the static-linking glue of the slink plugins into demo/slink, then start the host,
# which runs the plugins from their source files (Ctrl-C stops it).
# Usage: demo/slink/run.sh [STAMP]      (STAMP: the CompileTimeString to build with; default v1)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source demo/_lib.sh

bin="$(demo_bin slink)"
mkdir -p "$bin"
link_plugins "${1:-v1}"
exec "$PY" -m demo.slink.host --plugin-dir "$bin"
