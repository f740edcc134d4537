"""A reload under contention: a 100-module plugin reloaded while 8 threads call ``invoke_func``.

Each run reloads a fresh version (two builds with different stamps, alternated) with
``await swapper.areload()`` (the reload runs in a worker thread), once idle and once while 8 threads
call ``plugin.invoke_func`` in a loop (2 cores: the reload's fair share of the GIL is 1/9, so
~9x is the floor). Idle and contended runs take turns so machine noise hits both; the figures
are medians of 15 pairs (a single pair varies several-fold on a shared machine), with the
quartiles of the per-pair ratios as the spread. ``reload_contended_ratio`` is median contended
/ median idle (goal <= 12).

    .venv/bin/python bench/contended.py [--runs 15] [--modules 100] [--threads 8] [--quick] [--json]
"""

from __future__ import annotations

import asyncio
import gc
import logging
import statistics
import tempfile
import threading
import time
from pathlib import Path

import _util


def _areload(swapper: object) -> float:
    """Seconds of one ``await swapper.areload()`` from an event loop in this thread."""

    async def run() -> float:
        started = time.perf_counter()
        await swapper.areload()  # type: ignore[attr-defined]  # swapper is typed loosely here
        return time.perf_counter() - started

    return asyncio.run(run())


def measure(modules: int, threads: int, runs: int) -> dict[str, float]:
    from hotswap_runtime import PluginManagerSwapper

    with tempfile.TemporaryDirectory(prefix="hotswap-contended-") as tmp:
        root = Path(tmp)
        source = _util.make_plugin(root / "src", "busy", modules)
        builds = []
        for stamp in ("a", "b"):
            artifact = _util.build(source, root / f"out-{stamp}", stamp)
            builds.append(artifact.read_bytes())
        plugins = root / "plugins"
        plugins.mkdir()
        target = plugins / "busy.hsp"
        target.write_bytes(builds[0])
        swapper = PluginManagerSwapper(plugins, free_delay=0)
        swapper.load_plugins()
        stop = threading.Event()
        calls = [0] * threads

        def caller(slot: int) -> None:
            while not stop.is_set():
                manager = swapper.current()
                assert manager is not None
                plugin = manager.plugins()[0]
                for _ in range(100):
                    plugin.invoke_func("version")
                calls[slot] += 100

        idle: list[float] = []
        busy: list[float] = []
        n = 0
        try:
            for _ in range(runs):
                for contended in (False, True):
                    n += 1
                    tmp_path = plugins / ".busy.swap"
                    tmp_path.write_bytes(builds[n % 2])
                    tmp_path.replace(target)
                    gc.collect()
                    workers: list[threading.Thread] = []
                    if contended:
                        stop.clear()
                        workers = [threading.Thread(target=caller, args=(i,), daemon=True)
                                   for i in range(threads)]
                        for worker in workers:
                            worker.start()
                        time.sleep(0.05)  # every caller is spinning before the reload starts
                    took = _areload(swapper)
                    stop.set()
                    for worker in workers:
                        worker.join()
                    (busy if contended else idle).append(took)
                    # the replaced version is freed (free_delay=0) before the next run
                    deadline = time.monotonic() + 5
                    while (gc.collect() or len(swapper.stats()) > 1) and time.monotonic() < deadline:
                        time.sleep(0.002)
        finally:
            swapper.close()
    _util.log("idle ms", [round(x * 1e3) for x in idle], "contended ms", [round(x * 1e3) for x in busy])
    idle_s, busy_s = _util.median(idle), _util.median(busy)
    # the spread: each contended run over the idle run just before it, quartiles of those
    pairs = sorted(b / i for i, b in zip(idle, busy, strict=True))
    quartiles = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else [pairs[0]] * 3
    return {"reload_idle_ms": idle_s * 1e3, "reload_contended_ms": busy_s * 1e3,
            "reload_contended_ratio": busy_s / idle_s,
            "reload_contended_ratio_p25": quartiles[0], "reload_contended_ratio_p75": quartiles[2]}


def main() -> None:
    parser = _util.parser(__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--modules", type=int, default=100)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    logging.getLogger("hotswap").setLevel(logging.WARNING)
    if args.quick:
        args.runs, args.modules, args.threads = 1, 5, 2
    _util.log(f"reload of a {args.modules}-module plugin, idle vs {args.threads} threads "
              f"calling invoke_func: {args.runs} interleaved runs")
    results = measure(args.modules, args.threads, args.runs)
    _util.emit(results, args.json)


if __name__ == "__main__":
    main()
