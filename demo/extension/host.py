"""The host of the extension demo: serves the pages its plugins put in a host-defined router.

``extension_factory=Router`` gives every manager its own ``Router`` (``vault.extension``);
the plugins fill it in ``on_init``. The heartbeat renders every page of the current manager's
router, so after ``demo/extension/reload.sh`` the pages of the new version show.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from demo import common
from demo.extension.shared import Router
from hotswap_runtime import HotswapError, PluginManagerSwapper
from hotswap_runtime.triggers import reload_on_signal

log = logging.getLogger("demo.extension")


def serve(router: Router, tick: int) -> None:
    """Render every page of ``router``, one heartbeat line each."""
    for path in router.paths():
        try:
            page = router.get(path)
        except Exception:  # a broken page must not stop the host
            log.exception("GET %s failed", path)
            continue
        common.say(f"heartbeat {tick}: GET {path} -> {page}")


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the router of the current manager until SIGINT or SIGTERM; return the exit status."""
    args, interval, stop = common.start("extension", argv)

    swapper = PluginManagerSwapper(args.plugin_dir, free_delay=1.0, extension_factory=Router)
    try:
        try:
            details = swapper.load_plugins(None)
        except HotswapError as exc:
            return common.cannot_load("extension", exc)
        if not details:
            return common.nothing_built("extension", args.plugin_dir)

        stop_reloading = reload_on_signal(swapper)
        try:
            with common.pid_file(args.pid_file):
                for tick in common.heartbeats(stop, interval):
                    manager = swapper.current()
                    if manager is not None:
                        serve(manager.vault.extension, tick)
        finally:
            stop_reloading()
    finally:
        swapper.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
