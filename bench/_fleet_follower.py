"""A light host of ``bench/fleet_nats.py``: one swapper and one follower, nothing else.

    python bench/_fleet_follower.py CHANNEL INSTANCE CACHE_DIR

Prints ``ready`` once started (a release live, or none published yet) and follows CHANNEL
until SIGTERM. Its reports go to the channel's status bucket, which the benchmark watches.
"""

from __future__ import annotations

import logging
import signal
import sys
import tempfile
import threading

import _util  # noqa: F401 - puts the repository on sys.path

from hotswap_runtime import PluginManagerSwapper
from hotswap_runtime.fleet import Follower


def main() -> int:
    channel, instance, cache = sys.argv[1:4]
    logging.basicConfig(level=logging.WARNING, format=f"{instance} %(levelname)s %(name)s: %(message)s")
    logging.getLogger("hotswap_runtime.fleet.nats").setLevel(logging.ERROR)   # 50 hosts x "reconnecting"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as plugin_dir:
        swapper = PluginManagerSwapper(plugin_dir, free_delay=0.2)
        try:
            # a long heartbeat: the figures are about releases, not about heartbeat traffic
            follower = Follower(swapper, channel, instance=instance, cache_dir=cache, heartbeat=30.0)
            follower.start(timeout=30)
            print("ready", flush=True)
            stop.wait()
            follower.stop()
        finally:
            swapper.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
