#!/usr/bin/env bash
# Build the livex plugins into demo/livex/bin, then start the host (Ctrl-C stops it).
# Usage: demo/livex/run.sh [STAMP]      (STAMP: the CompileTimeString to build with; default v1)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source demo/_lib.sh

serve_fresh livex "${1:-v1}"
