#!/usr/bin/env bash
# Build the trine plugins into demo/trine/bin, then start the host (Ctrl-C stops it).
# Usage: demo/trine/run.sh [STAMP]      (STAMP: the CompileTimeString to build with; default v1)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source demo/_lib.sh

serve_fresh trine "${1:-v1}"
