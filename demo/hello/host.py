"""The host of the hello demo: loads the plugins at start-up, greets through them, reloads.

Run ``demo/hello/run.sh`` (it builds the plugins, then runs ``python -m demo.hello.host``), then
``demo/hello/reload.sh`` from another terminal: the host reloads on SIGUSR1 and the heartbeat
shows the new ``CompileTimeString`` without a restart. Ctrl-C (or SIGTERM) stops it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from demo import common
from demo.hello.shared import Heartbeat
from hotswap_runtime import HotswapError, PluginManager, PluginManagerSwapper
from hotswap_runtime.triggers import reload_on_signal

log = logging.getLogger("demo.hello")


def log_versions(new_manager: PluginManager, old_manager: PluginManager | None) -> None:
    """Reload callback, run before the swap: say which stamp of each plugin will serve."""
    served = ", ".join(f"{p.name} {p.lookup('CompileTimeString')}" for p in new_manager.plugins())
    log.info("%s: about to serve %s", "start-up" if old_manager is None else "reload", served)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the hello plugins until SIGINT or SIGTERM; return the exit status."""
    args, interval, stop = common.start("hello", argv)

    # free_delay=1: a replaced version's on_free runs a second after the reload, so you see it
    swapper = PluginManagerSwapper(args.plugin_dir, free_delay=1.0, reload_callback=log_versions)
    try:
        try:
            details = swapper.load_plugins({"host": "hello"})
        except HotswapError as exc:
            return common.cannot_load("hello", exc)
        if not details:
            return common.nothing_built("hello", args.plugin_dir)

        # SIGUSR1 reloads in a background thread; a failed reload is logged and the old
        # version keeps serving
        stop_reloading = reload_on_signal(swapper, {"host": "hello"})
        try:
            with common.pid_file(args.pid_file):
                for tick in common.heartbeats(stop, interval):
                    beat = Heartbeat(tick)
                    manager = swapper.current()
                    if manager is not None:
                        manager.invoke_each("heartbeat", beat)
                    for line in beat.lines:
                        common.say(line)
        finally:
            stop_reloading()
    finally:
        swapper.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
