#!/usr/bin/env bash
# Regenerate the slink glue with a new CompileTimeString and touch the host's signal file: the
# host tries to reload, shows that static linking mode refuses it, and keeps serving.
# Usage: demo/slink/reload.sh [STAMP]   (default: the current UTC time)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source demo/_lib.sh

link_plugins "$(new_stamp "${1:-}")"
touch "$(demo_bin slink)/reload.signal"
echo "touched $(demo_bin slink)/reload.signal: the slink host tries to reload now"
