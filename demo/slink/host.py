"""The host of the slink demo: runs its plugin statically linked, straight from its source.

``demo/slink/run.sh`` generates the glue with ``hotswap build --staticLinking`` into this
folder (``hotswap_static_plugins.py`` defines ``HOTSWAP_STATIC_PLUGINS``) and starts the host,
which hands it to ``PluginManagerSwapper(static_plugins=...)``. The plugin is imported under
its real name from its own files, so debuggers and IDE breakpoints work on them.

Static linking is for debugging: there is no artifact to swap in, so ``reload()`` is refused.
The host watches a signal file (``demo/slink/reload.sh`` touches it), tries to reload, shows the
refusal, and keeps serving the code it started with; restart it to run changed code.

With ``--map-sources`` (``demo/slink/run.sh --map-sources``) the host loads built artifacts
instead, with ``PluginManagerSwapper(..., map_sources=True)``: the signal file's reloads then
swap in each new build, and a breakpoint on the plugin's source file still stops in every
hot-loaded version built from it.
"""

from __future__ import annotations

import bdb
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from demo import common
from hotswap_runtime import HotswapError, PluginManagerSwapper

log = logging.getLogger("demo.slink")

#: seconds between two looks at the signal file
POLL_INTERVAL = 0.2


def watch_signal_file(path: Path, on_touch: Callable[[], None]) -> Callable[[], None]:
    """Call ``on_touch`` in a background thread each time ``path`` is created or touched.

    Returns:
        a function that stops watching.
    """
    stopping = threading.Event()

    def stamp() -> int | None:
        try:
            return path.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def watch() -> None:
        last = stamp()
        while not stopping.wait(POLL_INTERVAL):
            now = stamp()
            if now is not None and now != last:
                on_touch()
            last = now

    thread = threading.Thread(target=watch, name="slink-signal-file", daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join()

    return stop


MAP_SOURCES = ("--map-sources", "load the built artifacts (run.sh --map-sources builds them) "
               "with map_sources=True, so reloads work and breakpoints on the plugin's source "
               "hit in every hot-loaded version")


def try_reload(swapper: PluginManagerSwapper) -> None:
    """Reload on request: under static linking the runtime refuses, and the host says why;
    with ``--map-sources`` the new build is swapped in (a failed reload keeps the old one)."""
    log.info("signal file touched: reloading")
    try:
        details = swapper.reload(None)
    except HotswapError as exc:
        if not swapper.static_linking_mode:
            log.error("reload failed, still serving the old version: %s", exc)
            return
        log.warning("reload refused: %s. Static linking runs the plugins from source for "
                    "debugging and cannot swap them; still serving the version loaded at start-up "
                    "(restart demo/slink/run.sh to run changed code, or build artifacts to hot-swap)",
                    exc)
    else:
        log.info("reloaded: %s", details)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the statically linked plugins until SIGINT or SIGTERM; return the exit status."""
    args, interval, stop = common.start("slink", argv, flags=[MAP_SOURCES])
    args.plugin_dir.mkdir(parents=True, exist_ok=True)
    # the variable too: Python 3.13.0's pdb takes options after -m MODULE as its own
    if args.map_sources or os.environ.get("SLINK_MAP_SOURCES") == "1":
        # artifacts, hot-swappable; breakpoints on demo/slink/plugin/*/ still hit
        swapper = PluginManagerSwapper(args.plugin_dir, free_delay=1.0, map_sources=True)
    else:
        try:
            from demo.slink.hotswap_static_plugins import HOTSWAP_STATIC_PLUGINS
        except ImportError as exc:
            log.error("no static-linking glue (%s): generate it with demo/slink/run.sh", exc)
            return 1
        swapper = PluginManagerSwapper(args.plugin_dir, free_delay=1.0,
                                       static_plugins=HOTSWAP_STATIC_PLUGINS)
    try:
        try:
            details = swapper.load_plugins(None)
        except HotswapError as exc:
            return common.cannot_load("slink", exc)
        if not details:
            return common.nothing_built("slink", args.plugin_dir)
        log.info("loaded (static linking mode: %s): %s", swapper.static_linking_mode, details)

        signal_file = args.plugin_dir / "reload.signal"
        stop_watching = watch_signal_file(signal_file, lambda: try_reload(swapper))
        log.info("touch %s to ask for a reload", signal_file)
        try:
            with common.pid_file(args.pid_file):
                for tick in common.heartbeats(stop, interval):
                    fib = swapper.current().find_plugin("fib")
                    if fib is None:
                        log.error("no fib plugin among %s",
                                  ", ".join(p.name for p in swapper.current().plugins()))
                    else:
                        try:
                            answer = fib.invoke_func("fib", tick)
                        except bdb.BdbQuit:  # q at a (Pdb) prompt in the plugin: quit
                            raise
                        except Exception:
                            log.exception("fib failed")
                        else:
                            common.say(f"heartbeat {tick}: {answer}")
        finally:
            stop_watching()
    finally:
        swapper.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
