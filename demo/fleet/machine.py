"""One "machine" of the fleet demo: N worker processes, each a swapper and a follower.

    python -m demo.fleet.machine CHANNEL --name NAME [--workers N] [--cache DIR] [--heartbeat S]

Each worker is an instance of its own (``NAME:PID``, label ``machine=NAME``), like each worker
of a gunicorn or ``uvicorn --workers`` host: it follows CHANNEL, serves the ``greeting`` plugin
(calls it every 0.2 s) and logs each change of what it serves. The workers of a machine share
one artifact cache (by sha256), so a release is fetched once per machine, not once per
worker. SIGTERM (or Ctrl-C) stops the workers and the machine.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from hotswap_runtime import PluginManagerSwapper
from hotswap_runtime.fleet import Follower

log = logging.getLogger("demo.fleet")


def worker(channel: str, machine: str, cache: str, heartbeat: float) -> None:
    """One worker process: follow the channel and serve until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    instance = f"{machine}:{os.getpid()}"
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, force=True,
                        format=f"%(asctime)s {instance} %(message)s", datefmt="%H:%M:%S")
    swapper = PluginManagerSwapper(tempfile.mkdtemp(prefix="fleet-demo-"), free_delay=0.2)
    follower = Follower(swapper, channel, instance=instance, labels={"machine": machine},
                        cache_dir=cache, heartbeat=heartbeat)
    follower.start(timeout=10)
    serving = None
    try:
        while not stop.wait(0.2):
            manager = swapper.current()
            plugin = manager.find_plugin("greeting") if manager is not None else None
            answer = plugin.invoke_func("greet", "fleet") if plugin is not None else None
            if answer != serving:
                log.info("serving: %s", answer)
                serving = answer
    finally:
        swapper.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("channel", help="nats://HOST:PORT/NAME or a channel folder")
    parser.add_argument("--name", required=True, help="the machine's name (instance ids NAME:PID)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cache", help="the artifact cache the workers share (default: a temporary folder)")
    parser.add_argument("--heartbeat", type=float, default=2.0)
    args = parser.parse_args(argv)
    cache = args.cache or tempfile.mkdtemp(prefix=f"fleet-{args.name}-cache-")
    Path(cache).mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=worker, args=(args.channel, args.name, cache, args.heartbeat),
                             name=f"{args.name}-worker-{i}") for i in range(args.workers)]
    for proc in procs:
        proc.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        if not any(p.is_alive() for p in procs):
            break
    for proc in procs:
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)
    for proc in procs:
        proc.join(15)
    return 0 if all(p.exitcode == 0 for p in procs) else 1


if __name__ == "__main__":
    sys.exit(main())
