"""The host of the extension demo: serves the pages its plugins put in a host-defined router.

``extension_factory=Router`` gives every manager its own ``Router`` (``vault.extension``);
the plugins fill it in ``on_init``. The heartbeat renders every page of the current manager's
router, so after ``demo/extension/reload.sh`` the pages of the new version show.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from hotswap_runtime import HotswapError, PluginManagerSwapper
from hotswap_runtime.triggers import reload_on_signal

from demo import common
from demo.extension.shared import Router

log = logging.getLogger("demo.extension")


def serve(router: Router, tick: int) -> None:
    """Render every page of ``router``, one heartbeat line each."""
    for path in router.paths():
        try:
            page = router.get(path)
        except Exception:  # a broken page must not stop the host
            log.exception("GET %s failed", path)
            continue
        print(f"heartbeat {tick}: GET {path} -> {page}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the router of the current manager until SIGINT or SIGTERM; return the exit status."""
    args = common.parse_args("extension", argv)
    common.configure_logging()
    interval = common.heartbeat_interval()
    stop = common.stop_event()

    swapper = PluginManagerSwapper(args.plugin_dir, free_delay=1.0, extension_factory=Router)
    try:
        try:
            details = swapper.load_plugins(None)
        except HotswapError as exc:
            log.error("cannot load the plugins: %s", exc)
            return 1
        if not details:
            log.error("no plugins in %s: build them first with demo/extension/run.sh",
                      args.plugin_dir)
            return 1

        stop_reloading = reload_on_signal(swapper)
        try:
            with common.pid_file(args.pid_file):
                tick = 0
                while not stop.is_set():
                    tick += 1
                    manager = swapper.current()
                    if manager is not None:
                        serve(manager.vault.extension, tick)
                    stop.wait(interval)
        finally:
            stop_reloading()
    finally:
        swapper.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
