# Sourced by demo/*/run.sh and demo/*/reload.sh once they have cd'ed to the repository root.
# Picks the venv in use ($VIRTUAL_ENV: an activated one, or the test suite's) when hotswap is
# installed in it, else the checkout's .venv (make install / make demo create it), else PATH.

if [[ -n ${VIRTUAL_ENV:-} && -x $VIRTUAL_ENV/bin/hotswap ]]; then
  PY=$VIRTUAL_ENV/bin/python; HOTSWAP=$VIRTUAL_ENV/bin/hotswap
elif [[ -x .venv/bin/hotswap ]]; then
  PY=.venv/bin/python; HOTSWAP=.venv/bin/hotswap
else
  PY=python3; HOTSWAP=hotswap
fi
if ! command -v "$HOTSWAP" >/dev/null 2>&1; then
  echo "error: no hotswap command: run 'make install' in $(pwd), or pip install the package" >&2
  exit 1
fi

# demo_bin DEMO: the folder the demo's plugins are built into ($HOTSWAP_DEMO_BIN overrides it)
demo_bin() {
  echo "${HOTSWAP_DEMO_BIN:-demo/$1/bin}"
}

# build_plugins DEMO STAMP [PLUGIN...]: build the named plugins (default: all of them) of DEMO
# into its bin folder, stamping CompileTimeString=STAMP
build_plugins() {
  local demo=$1 stamp=$2
  shift 2
  local names=("$@")
  if [[ ${#names[@]} -eq 0 ]]; then
    local init
    for init in demo/"$demo"/plugin/*/__init__.py; do
      names+=("$(basename "$(dirname "$init")")")
    done
  fi
  local name
  for name in "${names[@]}"; do
    "$HOTSWAP" build "demo/$demo/plugin/$name" "$(demo_bin "$demo")" -- -X "CompileTimeString=$stamp"
  done
}

# signal_host DEMO: send SIGUSR1 to the running host of DEMO, which reloads its plugins
signal_host() {
  local pidfile
  pidfile="$(demo_bin "$1")/host.pid"
  if [[ ! -s $pidfile ]]; then
    echo "error: $pidfile not found: is the host running? start it with demo/$1/run.sh" >&2
    exit 1
  fi
  kill -USR1 "$(cat "$pidfile")"
  echo "sent SIGUSR1 to the $1 host (pid $(cat "$pidfile")): it reloads its plugins now"
}

# new_stamp [STAMP]: the stamp to build with: STAMP when given, else the current UTC time
new_stamp() {
  if [[ $# -gt 0 && -n $1 ]]; then echo "$1"; else date -u +%Y%m%d-%H%M%S; fi
}

# link_plugins STAMP: generate the static-linking glue of every slink plugin into demo/slink
link_plugins() {
  local init
  for init in demo/slink/plugin/*/__init__.py; do
    "$HOTSWAP" build --staticLinking "$(dirname "$init")" demo/slink -- -X "CompileTimeString=$1"
  done
}

# serve_fresh DEMO STAMP: empty DEMO's bin folder, build all its plugins with STAMP into it, then
# replace this shell with the demo's host (python -m demo.DEMO.host) serving that folder
serve_fresh() {
  local bin
  bin="$(demo_bin "$1")"
  mkdir -p "$bin"
  rm -f "$bin"/*.hsp
  build_plugins "$1" "$2"
  exec "$PY" -m "demo.$1.host" --plugin-dir "$bin"
}
