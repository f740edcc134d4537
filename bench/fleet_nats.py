"""A fleet on one NATS server: how long until every follower runs a new release.

50 light hosts (processes, each a swapper and a follower) follow one channel on one
``nats-server`` (JetStream, 127.0.0.1). Each round publishes a new release (the artifacts
alternate between two builds, so every host really reloads) and watches the status bucket: an
instance has converged when it reports the new revision with state ``ok``. The time is counted
from the start of ``publish`` (artifacts stored, release written) to each report's arrival.
``nats_converge_p50_s`` / ``nats_converge_max_s`` are the median over rounds of each round's
median and slowest instance (goal: max < 2 s). Then the server is SIGKILLed and restarted on the
same store, and once it is healthy a release is published again: ``nats_restart_converge_*``
are the same figures for that round (the hosts reconnect and re-arm their watch meanwhile).

    .venv/bin/python bench/fleet_nats.py [--hosts 50] [--rounds 5] [--restarts 2] [--quick] [--json]
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _util

CHANNEL = "bench"


async def watch_convergence(url: str, revision: int, instances: set[str], started: float,
                            timeout: float) -> dict[str, float]:
    """Seconds from ``started`` (perf_counter) until each instance reports ``revision`` ok."""
    import nats

    nc = await nats.connect(url)
    seen: dict[str, float] = {}
    try:
        kv = await nc.jetstream().key_value(f"hotswap-status-{CHANNEL}")
        watcher = await kv.watchall()
        deadline = time.perf_counter() + timeout
        while len(seen) < len(instances) and time.perf_counter() < deadline:
            try:
                entry = await watcher.updates(max(0.05, deadline - time.perf_counter()))
            except Exception:  # noqa: BLE001 - nats' timeout: the deadline check ends the loop
                continue
            if entry is None or not entry.value:
                continue
            report = json.loads(entry.value)
            name = report.get("instance")
            if name in instances and name not in seen and report.get("revision") == revision \
                    and report.get("state") == "ok":
                seen[name] = time.perf_counter() - started
        await watcher.stop()
    finally:
        await nc.close()
    return seen


def one_round(channel: object, server_url: str, artifact: Path, revision: int, instances: set[str],
              timeout: float = 60.0) -> list[float]:
    """Publish ``artifact`` as ``revision`` and return every instance's convergence time."""
    import threading

    from hotswap_runtime.fleet import ops

    result: dict[str, float] = {}
    ready = threading.Event()
    started = [0.0]

    def watch() -> None:
        async def go() -> None:
            ready.set()
            while not started[0]:
                await asyncio.sleep(0.001)
            result.update(await watch_convergence(server_url, revision, instances, started[0], timeout))
        asyncio.run(go())

    thread = threading.Thread(target=watch)
    thread.start()
    ready.wait()
    time.sleep(0.3)                  # the watcher is subscribed before the publish starts
    begin = time.perf_counter()
    started[0] = begin
    published = ops.publish(channel, [artifact])
    assert published.revision == revision, (published.revision, revision)
    thread.join(timeout + 10)
    missing = sorted(instances - set(result))
    if missing:
        raise RuntimeError(f"{len(missing)} instances never reported revision {revision}: {missing[:5]}")
    return sorted(result.values())


def measure(hosts: int, rounds: int, restarts: int) -> dict[str, float]:
    from hotswap_runtime.fleet import ops
    from hotswap_runtime.fleet.nats import NatsChannel
    from hotswap_runtime.fleet.nats_server import NatsServer

    with tempfile.TemporaryDirectory(prefix="hotswap-fleet-nats-") as tmp:
        root = Path(tmp)
        plugin = _util.make_plugin(root / "src", "bench", 3)
        builds = [_util.build(plugin, root / f"b{i}", f"v{i}") for i in range(2)]
        server = NatsServer(root / "nats").start()
        url = server.channel_url(CHANNEL)
        channel = NatsChannel(url)
        procs: list[subprocess.Popen[str]] = []
        try:
            revision = ops.publish(channel, [builds[0]]).revision
            instances = {f"bench-{i:03d}" for i in range(hosts)}
            started = time.perf_counter()
            for name in sorted(instances):
                procs.append(subprocess.Popen(
                    [sys.executable, str(Path(__file__).with_name("_fleet_follower.py")), url, name,
                     str(root / "cache" / name)], stdout=subprocess.PIPE, text=True))
            for proc in procs:
                if proc.stdout is None or proc.stdout.readline().strip() != "ready":
                    raise RuntimeError("a light host did not start")
            _util.log(f"{hosts} light hosts ready in {time.perf_counter() - started:.1f} s")
            p50s, maxes = [], []
            for index in range(rounds):
                revision += 1
                times = one_round(channel, server.url, builds[revision % 2], revision, instances)
                p50s.append(_util.median(times))
                maxes.append(times[-1])
                _util.log(f"round {index + 1}: revision {revision}: p50 {p50s[-1]:.3f} s, max {maxes[-1]:.3f} s")
            restart_p50s, restart_maxes = [], []
            for index in range(restarts):
                server.kill()
                time.sleep(1.0)                           # the hosts notice and start reconnecting
                server.start()
                revision += 1
                times = one_round(channel, server.url, builds[revision % 2], revision, instances)
                restart_p50s.append(_util.median(times))
                restart_maxes.append(times[-1])
                _util.log(f"after restart {index + 1}: revision {revision}: p50 {restart_p50s[-1]:.3f} s, "
                          f"max {restart_maxes[-1]:.3f} s")
            figures = {"nats_hosts": float(hosts),
                       "nats_converge_p50_s": _util.median(p50s),
                       "nats_converge_max_s": _util.median(maxes)}
            if restarts:
                figures["nats_restart_converge_p50_s"] = _util.median(restart_p50s)
                figures["nats_restart_converge_max_s"] = _util.median(restart_maxes)
            return figures
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            channel.close()
            server.stop()


def main() -> None:
    parser = _util.parser(__doc__)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--restarts", type=int, default=2)
    args = parser.parse_args()
    logging.getLogger("hotswap").setLevel(logging.WARNING)
    logging.getLogger("hotswap_runtime").setLevel(logging.ERROR)
    if args.quick:
        args.hosts, args.rounds, args.restarts = 3, 1, 1
    _util.log(f"{args.hosts} followers on one nats-server: {args.rounds} releases, then "
              f"{args.restarts} after a SIGKILL and restart (machine: {os.cpu_count()} cores)")
    results = measure(args.hosts, args.rounds, args.restarts)
    _util.emit(results, args.json)


if __name__ == "__main__":
    main()
