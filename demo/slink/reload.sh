#!/usr/bin/env bash
# Regenerate the slink glue with a new CompileTimeString and touch the host's signal file: the
# host tries to reload, shows that static linking mode refuses it, and keeps serving.
# With --map-sources (a host started by run.sh --map-sources): rebuild the artifacts instead;
# the host swaps the new version in.
# Usage: demo/slink/reload.sh [--map-sources] [STAMP]   (default: the current UTC time)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source demo/_lib.sh

if [[ ${1:-} == --map-sources ]]; then
  build_plugins slink "$(new_stamp "${2:-}")"
else
  link_plugins "$(new_stamp "${1:-}")"
fi
touch "$(demo_bin slink)/reload.signal"
echo "touched $(demo_bin slink)/reload.signal: the slink host tries to reload now"
