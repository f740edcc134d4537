"""A host process for the fleet tests: a swapper and a follower, and a probe of its plugins.

    python tests/fleet/fleet_host.py CHANNEL --instance ID --cache DIR --probe FILE
        [--heartbeat S] [--async] [--trusted-key PUB]...

It follows CHANNEL (thread form, or asyncio form with --async) and, every few milliseconds,
calls ``beta.invoke_func("probe")`` on the current manager: beta checks that the alpha it is
wired to carries its own stamp, so a mix of two releases raises. Every 50 ms it writes FILE
(atomically): the last stamp served, how many probes ran, the distinct stamps seen and any
probe errors. It prints ``ready`` once the follower's first release is live (or it serves
nothing yet), and exits 0 on SIGTERM after ``swapper.close()``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from hotswap_runtime import PluginManagerSwapper
from hotswap_runtime.fleet import Follower


class Probe:
    def __init__(self, swapper: PluginManagerSwapper, out: Path) -> None:
        self.swapper, self.out = swapper, out
        self.count, self.tag, self.tags, self.errors = 0, None, [], []
        self.last_write = 0.0

    def once(self) -> None:
        manager = self.swapper.current()
        if manager is not None and manager.find_plugin("beta") is not None:
            try:
                tag = manager.find_plugin("beta").invoke_func("probe")
            except Exception as exc:  # a mix: beta and alpha of two releases
                if len(self.errors) < 20:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                self.count += 1
                self.tag = tag
                if tag not in self.tags:
                    self.tags.append(tag)
        now = time.monotonic()
        if now - self.last_write > 0.05:
            self.write()
            self.last_write = now

    def write(self) -> None:
        data = json.dumps({"tag": self.tag, "count": self.count, "tags": self.tags,
                           "errors": self.errors, "pid": os.getpid()})
        fd, tmp = tempfile.mkstemp(dir=self.out.parent, prefix=".probe")
        with os.fdopen(fd, "w") as handle:
            handle.write(data)
        os.replace(tmp, self.out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("channel")
    parser.add_argument("--instance", required=True)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--probe", required=True, type=Path)
    parser.add_argument("--heartbeat", type=float, default=0.3)
    parser.add_argument("--async", dest="use_async", action="store_true")
    parser.add_argument("--trusted-key", action="append", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {args.instance} %(levelname)s %(name)s: %(message)s")
    empty = tempfile.mkdtemp(prefix="fleet-host-")
    swapper = PluginManagerSwapper(empty, free_delay=0.2, trusted_keys=args.trusted_key)
    follower = Follower(swapper, args.channel, instance=args.instance, cache_dir=args.cache,
                        heartbeat=args.heartbeat, labels={"role": "test"})
    probe = Probe(swapper, args.probe)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    if args.use_async:
        async def run() -> None:
            live = await follower.astart(timeout=1.0)
            print("ready" if live else "ready (nothing live yet)", flush=True)
            while not stop.is_set():
                probe.once()
                await asyncio.sleep(0.002)
            swapper.close()

        asyncio.run(run())
    else:
        live = follower.start(timeout=1.0)
        print("ready" if live else "ready (nothing live yet)", flush=True)
        while not stop.is_set():
            probe.once()
            time.sleep(0.002)
        swapper.close()
    probe.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
