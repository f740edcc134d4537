#!/usr/bin/env bash
# Rebuild alpha ALONE with a new CompileTimeString and tell the running host to reload: the
# runtime re-wires beta and gamma to the new alpha by itself.
# Usage: demo/trine/reload.sh [STAMP]   (default: the current UTC time)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source demo/_lib.sh

build_plugins trine "$(new_stamp "${1:-}")" alpha
signal_host trine
