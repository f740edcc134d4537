#!/usr/bin/env bash
# Build the extension plugins into demo/extension/bin, then start the host (Ctrl-C stops it).
# Usage: demo/extension/run.sh [STAMP]      (STAMP: the CompileTimeString to build with; default v1)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source demo/_lib.sh

serve_fresh extension "${1:-v1}"
