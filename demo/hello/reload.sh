#!/usr/bin/env bash
# Rebuild the hello plugins with a new CompileTimeString and tell the running host to reload.
# Usage: demo/hello/reload.sh [STAMP]   (default: the current UTC time)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source demo/_lib.sh

build_plugins hello "$(new_stamp "${1:-}")"
signal_host hello
