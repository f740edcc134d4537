"""The longest event-loop stall while reloading a 100-module plugin: ``areload`` vs ``reload``.

A ticker task sleeps 1 ms in a loop and records the longest gap beyond its nominal sleep; the
loop meanwhile awaits ``swapper.areload()`` (the reload runs in a worker thread), or calls the
synchronous ``swapper.reload()`` right in the loop (which blocks it for the whole reload).
Each reload loads a fresh version (two builds with different stamps, alternated). The figures
are medians over runs of the longest stall of each run.

    .venv/bin/python bench/loop_stall.py [--runs 7] [--modules 100] [--quick] [--json]
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _util

TICK = 0.001


async def _longest_stall(action: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """Run ``action`` while a ticker measures; (longest stall, action's duration) in seconds."""
    longest = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal longest
        while not stop:
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            longest = max(longest, time.perf_counter() - before - TICK)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)   # the ticker is running before the reload starts
    longest = 0.0
    started = time.perf_counter()
    await action()
    took = time.perf_counter() - started
    await asyncio.sleep(0.005)
    stop = True
    await task
    return longest, took


class _GcPauses:
    """The longest garbage collection pass while ``recording`` (a ``gc.callbacks`` entry)."""

    def __init__(self) -> None:
        self.recording = False
        self.longest = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self.recording:
            self.longest = max(self.longest, time.perf_counter() - self._started)


async def measure(runs: int, modules: int) -> dict[str, float]:
    from hotswap_runtime import PluginManagerSwapper
    quiet = logging.getLogger("bench.loop_stall.hotswap")
    quiet.setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="hotswap-bench-stall-") as tmp:
        root = Path(tmp)
        plugin = _util.make_plugin(root / "src", "big", modules)
        dirs = [root / "a", root / "b"]
        for stamp, folder in zip("ab", dirs, strict=True):
            _util.build(plugin, folder, stamp)
        swapper = PluginManagerSwapper(dirs[0], logger=quiet, free_delay=0.05)
        swapper.load_plugins()
        flip = [1]

        def next_dir() -> None:
            swapper.reset_plugin_dir(dirs[flip[0] % 2])
            flip[0] += 1

        async def areload() -> None:
            next_dir()
            await swapper.areload()

        async def reload() -> None:
            next_dir()
            swapper.reload()   # blocking, on purpose: the baseline areload avoids

        stalls: dict[str, list[float]] = {"areload": [], "reload": []}
        took: dict[str, list[float]] = {"areload": [], "reload": []}
        pauses = _GcPauses()
        gc.callbacks.append(pauses)
        for _ in range(runs):
            for name, action in (("areload", areload), ("reload", reload)):
                pauses.recording = name == "areload"
                stall, duration = await _longest_stall(action)
                pauses.recording = False
                stalls[name].append(stall)
                took[name].append(duration)
                await asyncio.sleep(0.1)   # let the replaced version be freed
        gc.callbacks.remove(pauses)
        swapper.close()
    _util.log("stalls (ms): " + "; ".join(
        f"{name} " + " ".join(f"{v * 1000:.1f}" for v in values) for name, values in stalls.items()))
    return {
        "areload_stall_ms": _util.median(stalls["areload"]) * 1000,
        "reload_stall_ms": _util.median(stalls["reload"]) * 1000,
        "areload_stall_max_ms": max(stalls["areload"]) * 1000,
        "areload_gc_max_ms": pauses.longest * 1000,
        f"areload_{modules}_ms": _util.median(took["areload"]) * 1000,
        f"sync_reload_{modules}_ms": _util.median(took["reload"]) * 1000,
    }


def main() -> None:
    parser = _util.parser(__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--modules", type=int, default=100)
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="sys.setswitchinterval (s) for the run: how long the loop thread "
                             "may wait for the GIL the reload thread holds [default: Python's, "
                             "0.005]")
    args = parser.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    if args.quick:
        args.runs, args.modules = 1, 3
    _util.log(f"loop_stall: {args.runs} runs, {args.modules}-module plugin")
    _util.emit(asyncio.run(measure(args.runs, args.modules)), args.json)


if __name__ == "__main__":
    main()
