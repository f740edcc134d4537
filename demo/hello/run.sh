#!/usr/bin/env bash
# Build the hello plugins into demo/hello/bin, then start the host (Ctrl-C stops it).
# Usage: demo/hello/run.sh [STAMP]      (STAMP: the CompileTimeString to build with; default v1)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source demo/_lib.sh

serve_fresh hello "${1:-v1}"
