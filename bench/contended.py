"""A reload under contention: a 100-module plugin reloaded while 8 threads call ``invoke_func``.

Each run reloads a fresh version (two builds with different stamps, alternated) with
``await swapper.areload()`` (the reload runs in a worker thread), once idle and once while 8 threads
call ``plugin.invoke_func`` in a loop (2 cores: the reload's fair share of the GIL is 1/9, so
~9x is the floor). Idle and contended runs take turns so machine noise hits both; the figures
are medians of 15 pairs (a single pair varies several-fold on a shared machine), with the
quartiles of the per-pair ratios as the spread. ``reload_contended_ratio`` is median contended
/ median idle (goal <= 12). Beside it, in the same turns, the floor: a bare
``importlib.import_module`` of the same modules from a warm ``__pycache__`` (no framework), run
the same way (in a worker thread an event loop awaits), idle and among the same 8 threads:
``import_contended_ratio`` is how much the same load slows that import when it runs with the
switch interval a load sets (``yielding.prompt_gil``): the limit a reload cannot beat, since
it imports the same modules; ``reload_contended_vs_import`` compares the two under load.
``import_plain_contended_ratio`` is the same import under the interpreter's default switch
interval (3 pairs: each takes seconds), what ``importlib`` alone would pay.

    .venv/bin/python bench/contended.py [--runs 15] [--modules 100] [--threads 8] [--quick] [--json]
"""

from __future__ import annotations

import asyncio
import compileall
import gc
import importlib
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import _util

#: pairs of plain imports (the default switch interval) measured: each takes seconds under load
PLAIN_RUNS = 3


def _areload(swapper: object) -> float:
    """Seconds of one ``await swapper.areload()`` from an event loop in this thread."""

    async def run() -> float:
        started = time.perf_counter()
        await swapper.areload()  # type: ignore[attr-defined]  # swapper is typed loosely here
        return time.perf_counter() - started

    return asyncio.run(run())


def _import(name: str, prompt: bool) -> float:
    """Seconds of a fresh import of package ``name`` (with its submodules) from disk, run in a
    worker thread that an event loop in this thread awaits, as ``areload`` runs a reload; with
    ``prompt``, under the switch interval a load runs with (``yielding.prompt_gil``)."""
    from hotswap_runtime.yielding import prompt_gil

    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]
    gc.collect()

    def load() -> None:
        if prompt:
            with prompt_gil():
                importlib.import_module(name)
        else:
            importlib.import_module(name)

    async def run() -> float:
        started = time.perf_counter()
        await asyncio.to_thread(load)
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
        compileall.compile_dir(str(root / "src" / "busy"), quiet=1)  # the floor's warm cache
        sys.path.insert(0, str(root / "src"))
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
        floor_idle: list[float] = []
        floor_busy: list[float] = []
        plain: list[tuple[bool, float]] = []
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
                    floor = _import("busy", prompt=True)  # among the same threads, spinning
                    if len(plain) < PLAIN_RUNS * 2:  # ~10 s each under load: a few only
                        plain.append((contended, _import("busy", prompt=False)))
                    stop.set()
                    for worker in workers:
                        worker.join()
                    (busy if contended else idle).append(took)
                    (floor_busy if contended else floor_idle).append(floor)
                    # the replaced version is freed (free_delay=0) before the next run
                    deadline = time.monotonic() + 5
                    while (gc.collect() or len(swapper.stats()) > 1) and time.monotonic() < deadline:
                        time.sleep(0.002)
        finally:
            swapper.close()
            sys.path.remove(str(root / "src"))
            for key in [k for k in sys.modules if k == "busy" or k.startswith("busy.")]:
                del sys.modules[key]
    _util.log("idle ms", [round(x * 1e3) for x in idle], "contended ms", [round(x * 1e3) for x in busy])
    _util.log("import idle ms", [round(x * 1e3) for x in floor_idle],
              "import contended ms", [round(x * 1e3) for x in floor_busy])
    idle_s, busy_s = _util.median(idle), _util.median(busy)
    floor_idle_s, floor_busy_s = _util.median(floor_idle), _util.median(floor_busy)
    # the spread: each contended run over the idle run just before it, quartiles of those
    pairs = sorted(b / i for i, b in zip(idle, busy, strict=True))
    quartiles = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else [pairs[0]] * 3
    return {"reload_idle_ms": idle_s * 1e3, "reload_contended_ms": busy_s * 1e3,
            "reload_contended_ratio": busy_s / idle_s,
            "reload_contended_ratio_p25": quartiles[0], "reload_contended_ratio_p75": quartiles[2],
            "import_idle_ms": floor_idle_s * 1e3, "import_contended_ms": floor_busy_s * 1e3,
            "import_contended_ratio": floor_busy_s / floor_idle_s,
            "reload_contended_vs_import": busy_s / floor_busy_s,
            "import_plain_contended_ratio": (_util.median([t for c, t in plain if c])
                                             / _util.median([t for c, t in plain if not c]))}


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
