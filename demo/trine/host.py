"""The host of the trine demo: calls gamma, which calls beta, which calls alpha.

The plugins are wired by ``export``/``import_``. ``demo/trine/reload.sh`` rebuilds alpha
alone; at the reload the runtime gives beta and gamma fresh versions wired to the new alpha
(Details: ``alpha: ok, beta: ok, gamma: ok``), and the heartbeat shows the new alpha's stamp
through the unchanged gamma and beta code.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from demo import common
from hotswap_runtime import HotswapError, PluginManager, PluginManagerSwapper
from hotswap_runtime.triggers import reload_on_signal

log = logging.getLogger("demo.trine")


def log_wiring(new_manager: PluginManager, old_manager: PluginManager | None) -> None:
    """Reload callback: show the load order and what each plugin got."""
    log.info("load order: %s", ", ".join(
        f"{p.name} ({p.note}, imports {', '.join(p.deps) or 'nothing'})"
        for p in new_manager.plugins()))


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the chain until SIGINT or SIGTERM; return the exit status."""
    args, interval, stop = common.start("trine", argv)

    swapper = PluginManagerSwapper(args.plugin_dir, free_delay=1.0, reload_callback=log_wiring)
    try:
        try:
            details = swapper.load_plugins(None)
        except HotswapError as exc:
            return common.cannot_load("trine", exc)
        if not details:
            return common.nothing_built("trine", args.plugin_dir)

        stop_reloading = reload_on_signal(swapper)
        try:
            with common.pid_file(args.pid_file):
                for tick in common.heartbeats(stop, interval):
                    manager = swapper.current()
                    gamma = manager.find_plugin("gamma")
                    if gamma is None:
                        log.error("no gamma plugin in %s", args.plugin_dir)
                    else:
                        notes = ", ".join(f"{p.name} {p.note}" for p in manager.plugins())
                        try:
                            path = gamma.invoke_func("path")
                        except Exception:
                            log.exception("gamma failed")
                        else:
                            common.say(f"heartbeat {tick}: {path} "
                                       f"[reload {swapper.reload_counter}: {notes}]")
        finally:
            stop_reloading()
    finally:
        swapper.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
