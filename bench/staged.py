"""Staged reloads (SPEC 8.1): what drain-awareness costs the hot path, the in-flight check, rollback.

Run: ``.venv/bin/python bench/staged.py``. Prints:

- dispatch: ns per call of ``add(1)`` (direct), ``vault.live_funcs['live_add'](1)`` and
  ``swapper.current().find_plugin(..).invoke_func('add', 1)``, the two ratios to the direct call
  (``dispatch_live_ratio``, ``dispatch_invoke_ratio``), and the same invoke chain on a plain
  object whose attribute is the raw hook: the drain machinery adds nothing there when the
  difference is noise (``plugin.invoke_func is hooks['invoke_func']`` is printed too);
- the in-flight check (``inflight.scan``, what the freer runs at free time) with 50 threads and
  1000 pending tasks alive (half of each inside the version's code), timed on the freer's side,
  and the part of it that runs on the event loop's thread;
- ``rollback()``.

It ends with one ``key value`` line per figure for ``bench/run.py``. ``--quick`` runs tiny
sizes (for the smoke test; its numbers mean nothing). Measures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _plugins import build_stamped, make_plugin  # noqa: E402

from hotswap_runtime import (
    PluginManagerSwapper,  # noqa: E402
    inflight,  # noqa: E402
)

NUMBER = 100_000
REPEAT = 21
THREADS = 50
TASKS = 1000
ROLLBACKS = 2001
FIGURES: dict[str, float] = {}

EXTRA = '''
import threading as _threading

def live_hold(event):
    event.wait()

async def live_await(event):
    await event.wait()
'''


class _RawPlugin:
    """Holds the raw hook as an instance attribute, as ``Plugin`` does."""

    def __init__(self, fn: object) -> None:
        self.invoke_func = fn


class _PlainManager:
    """``find_plugin`` shaped like ``PluginManager.find_plugin``, on plain objects."""

    def __init__(self, plugin: object) -> None:
        self._by_name = {"disp": plugin}

    def find_plugin(self, name: str) -> object:
        try:
            return self._by_name[name]
        except KeyError:
            return self._by_name.get(name.lower())


class _PlainSwapper:
    def __init__(self, manager: _PlainManager) -> None:
        self._current = manager

    def current(self) -> _PlainManager:
        return self._current


def per_call(rows: list[tuple[str, str]], namespace: dict) -> list[tuple[str, float]]:
    timers = [timeit.Timer(stmt, globals=namespace) for _, stmt in rows]
    runs: list[list[float]] = [[] for _ in rows]
    for _ in range(REPEAT):
        for timer, out in zip(timers, runs):
            out.append(timer.timeit(NUMBER))
    return [(label, statistics.median(out) / NUMBER * 1e9) for (label, _), out in zip(rows, runs)]


def dispatch(swapper: PluginManagerSwapper) -> None:
    manager = swapper.current()
    plugin = manager.find_plugin("disp")
    raw = plugin._version.hooks["invoke_func"]
    namespace = {"add": plugin.lookup("add"), "vault": manager.vault, "swapper": swapper,
                 "plain": _PlainSwapper(_PlainManager(_RawPlugin(raw)))}
    rows = [
        ("direct call add(1)", "add(1)"),
        ("vault.live_funcs['live_add'](1)", "vault.live_funcs['live_add'](1)"),
        ("swapper.current().find_plugin('disp').invoke_func('add', 1)",
         "swapper.current().find_plugin('disp').invoke_func('add', 1)"),
        ("same chain, raw hook on plain objects (no hotswap)",
         "plain.current().find_plugin('disp').invoke_func('add', 1)"),
    ]
    results = per_call(rows, namespace)
    direct = results[0][1]
    print("dispatch (median of", REPEAT, "x", NUMBER, "calls)")
    for label, ns in results:
        print(f"  {label:<62} {ns:>8.1f} ns {ns / direct:>6.2f}x")
    FIGURES["staged_dispatch_live_ratio"] = results[1][1] / direct
    FIGURES["staged_dispatch_invoke_ratio"] = results[2][1] / direct
    FIGURES["staged_dispatch_invoke_plain_ratio"] = results[3][1] / direct
    print(f"  plugin.invoke_func is the version's own invoke_func: {plugin.invoke_func is raw}")


def inflight_check(swapper: PluginManagerSwapper) -> None:
    manager = swapper.current()
    version = manager.find_plugin("disp")._version
    hold = manager.vault.live_funcs["live_hold"]
    wait = manager.vault.live_funcs["live_await"]
    stop = threading.Event()
    threads = []
    for i in range(THREADS):
        target = (lambda: hold(stop)) if i % 2 else stop.wait  # half inside the version
        thread = threading.Thread(target=target, name=f"worker-{i}", daemon=True)
        thread.start()
        threads.append(thread)
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, name="loop", daemon=True)
    runner.start()

    async def host_side(event: asyncio.Event) -> None:
        await event.wait()

    async def start() -> asyncio.Event:
        inflight.note_loop()
        event = asyncio.Event()
        for i in range(TASKS):
            coro = wait(event) if i % 2 else host_side(event)
            asyncio.get_running_loop().create_task(coro, name=f"task-{i}")
        await asyncio.sleep(0.05)
        return event

    event = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    found = inflight.scan([version])[id(version)]
    print(f"in-flight check with {THREADS} threads and {TASKS} tasks alive: found "
          f"{len(found.threads)} threads and {len(found.tasks)} tasks in the version")
    times = []
    for _ in range(30):
        start_t = time.perf_counter()
        inflight.scan([version])
        times.append(time.perf_counter() - start_t)
    print(f"  whole check (freer thread):   median {statistics.median(times) * 1e3:.2f} ms, "
          f"max {max(times) * 1e3:.2f} ms")
    FIGURES["inflight_check_ms"] = statistics.median(times) * 1e3
    codes = inflight.entry_codes(version)

    async def on_loop() -> list[float]:
        out = []
        for _ in range(30):
            t = time.perf_counter()
            inflight._read_tasks(asyncio.get_running_loop(), inflight._matcher({version.root}), codes)
            out.append(time.perf_counter() - t)
        return out

    loop_times = asyncio.run_coroutine_threadsafe(on_loop(), loop).result(30)
    print(f"  part on the loop's thread:    median {statistics.median(loop_times) * 1e3:.2f} ms, "
          f"max {max(loop_times) * 1e3:.2f} ms")
    FIGURES["inflight_loop_ms"] = statistics.median(loop_times) * 1e3
    loop.call_soon_threadsafe(event.set)
    stop.set()
    for thread in threads:
        thread.join()
    time.sleep(0.05)
    loop.call_soon_threadsafe(loop.stop)
    runner.join()
    loop.close()


def rollback(swapper: PluginManagerSwapper, plugins: Path, src: Path, out: Path) -> None:
    (plugins / "disp.hsp").write_bytes(build_stamped(src, out, "b"))
    swapper.reload()
    times = []
    for _ in range(ROLLBACKS):
        t = time.perf_counter()
        swapper.rollback()
        times.append(time.perf_counter() - t)
    print(f"rollback(): median {statistics.median(times) * 1e6:.1f} us, "
          f"p99 {sorted(times)[len(times) * 99 // 100] * 1e6:.1f} us ({ROLLBACKS} rollbacks, "
          "one plugin)")
    FIGURES["rollback_us"] = statistics.median(times) * 1e6


def main() -> None:
    global NUMBER, REPEAT, THREADS, TASKS, ROLLBACKS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    if parser.parse_args().quick:
        NUMBER, REPEAT, THREADS, TASKS, ROLLBACKS = 1000, 3, 4, 20, 21
    logger = logging.getLogger("bench-staged")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = make_plugin(root / "src", "disp", 1)
        with (src / "__init__.py").open("a") as f:
            f.write(EXTRA)
        plugins = root / "plugins"
        plugins.mkdir()
        (plugins / "disp.hsp").write_bytes(build_stamped(src, root / "b", "a"))
        swapper = PluginManagerSwapper(plugins, free_delay=3600, logger=logger)
        swapper.load_plugins()
        try:
            dispatch(swapper)
            inflight_check(swapper)
            rollback(swapper, plugins, src, root / "b")
        finally:
            swapper.close()
    print()
    for key, value in FIGURES.items():
        print(f"{key} {value:.3f}")


if __name__ == "__main__":
    main()
