"""Staged reloads (README "Staged reloads"): what drain-awareness costs the hot path, the in-flight check, rollback.

Run: ``.venv/bin/python bench/staged.py``. Prints:

- dispatch: ns per call of ``add(1)`` (direct), ``vault.live_funcs['live_add'](1)`` and
  ``swapper.current().find_plugin(..).invoke_func('add', 1)``, the two ratios to the direct call
  (``dispatch_live_ratio``, ``dispatch_invoke_ratio``), and the same invoke chain on a plain
  object whose attribute is the raw hook: the drain machinery adds nothing there when the
  difference is noise (``plugin.invoke_func is hooks['invoke_func']`` is printed too);
- the in-flight check (``inflight.scan``, what the freer runs at free time) with 50 threads
  (half inside the version's code) and 1000 pending tasks on 2 event loops that nobody
  registered (a third awaiting the version's coroutine, a third gathering it, a third host
  code), timed on the freer's thread: nothing of it runs on the loops; then the heap pass a
  free of a version with async code adds once that finds nothing (``inflight_heap_ms``, and
  per object the collector tracks);
- a lease taken and released (``lease_ns``), and the same as a with block;
- ``rollback()``.

It ends with one ``key value`` line per figure for ``bench/run.py``. ``--quick`` runs tiny
sizes (for the smoke test; its numbers mean nothing). Measures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _plugins import build_stamped, make_plugin

from hotswap_runtime import (
    PluginManagerSwapper,
    inflight,
)

NUMBER = 100_000
REPEAT = 21
THREADS = 50
TASKS = 1000
LOOPS = 2
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
        for timer, out in zip(timers, runs, strict=True):
            out.append(timer.timeit(NUMBER))
    return [(label, statistics.median(out) / NUMBER * 1e9) for (label, _), out in zip(rows, runs, strict=True)]


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
    # two loops, never registered anywhere: the search finds them on their threads' stacks
    loops = [asyncio.new_event_loop() for _ in range(LOOPS)]
    runners = [threading.Thread(target=loop.run_forever, name=f"loop-{n}", daemon=True)
               for n, loop in enumerate(loops)]
    for runner in runners:
        runner.start()

    async def host_side(event: asyncio.Event) -> None:
        await event.wait()

    async def request(event: asyncio.Event) -> None:
        await asyncio.gather(wait(event))  # the version's coroutine one task further down

    async def start(n: int) -> asyncio.Event:
        event = asyncio.Event()
        for i in range(n, TASKS, LOOPS):
            coro = (wait, request, host_side)[i % 3](event)
            asyncio.get_running_loop().create_task(coro, name=f"task-{i}")
        await asyncio.sleep(0.05)
        return event

    events = [asyncio.run_coroutine_threadsafe(start(n), loop).result(10)
              for n, loop in enumerate(loops)]
    found = inflight.scan([version])[id(version)]
    print(f"in-flight check with {THREADS} threads and {TASKS} tasks on {LOOPS} loops alive: "
          f"found {len(found.threads)} threads and {len(found.tasks)} tasks in the version "
          f"({len(inflight.running_loops())} loops found on the stacks)")
    times, cpu = [], []
    for _ in range(30):
        start_t, start_cpu = time.perf_counter(), time.thread_time()
        inflight.scan([version])
        times.append(time.perf_counter() - start_t)
        cpu.append(time.thread_time() - start_cpu)
    print(f"  whole check (freer thread, nothing runs on the loops): median "
          f"{statistics.median(times) * 1e3:.2f} ms, max {max(times) * 1e3:.2f} ms; its own "
          f"CPU time {statistics.median(cpu) * 1e3:.2f} ms (the rest: waiting for the GIL)")
    FIGURES["inflight_check_ms"] = statistics.median(times) * 1e3
    FIGURES["inflight_check_cpu_ms"] = statistics.median(cpu) * 1e3
    # the free's last gate for a version with async code, once the search above finds nothing:
    # one pass over every object the collector tracks (README "Drain-aware freeing")
    tracked = len(gc.get_objects())
    codes = len(inflight._watch(version).codes)
    heap, heap_cpu = [], []
    for _ in range(15):
        inflight._watch(version).next_at = 0.0  # due now: it is rate-limited in a real free
        start_t, start_cpu = time.perf_counter(), time.thread_time()
        inflight._search_heap([version])
        heap.append(time.perf_counter() - start_t)
        heap_cpu.append(time.thread_time() - start_cpu)
    cpu_ms = statistics.median(heap_cpu) * 1e3
    print(f"  heap pass of a free (a version with {codes} async code objects, {tracked} tracked "
          f"objects): median {statistics.median(heap) * 1e3:.2f} ms, its own CPU time "
          f"{cpu_ms:.2f} ms = {cpu_ms / tracked * 1e6:.1f} ns per tracked object")
    FIGURES["inflight_heap_ms"] = statistics.median(heap) * 1e3
    FIGURES["inflight_heap_cpu_ns_per_object"] = cpu_ms / tracked * 1e6
    for loop, event in zip(loops, events, strict=True):
        loop.call_soon_threadsafe(event.set)
    stop.set()
    for thread in threads:
        thread.join()
    time.sleep(0.05)
    for loop, runner in zip(loops, runners, strict=True):
        loop.call_soon_threadsafe(loop.stop)
        runner.join()
        loop.close()


def leases(swapper: PluginManagerSwapper) -> None:
    """Taking and releasing a lease (README "Sessions pinned to a version"): the object form and the with block."""
    rows = [("swapper.lease(name).release()", "swapper.lease('session').release()"),
            ("with swapper.lease(name): pass", "with swapper.lease('session'): pass")]
    results = per_call(rows, {"swapper": swapper})
    print(f"leases (median of {REPEAT} x {NUMBER})")
    for label, ns in results:
        print(f"  {label:<62} {ns:>8.1f} ns")
    FIGURES["lease_ns"] = results[0][1]
    FIGURES["lease_with_ns"] = results[1][1]


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
            leases(swapper)
            rollback(swapper, plugins, src, root / "b")
        finally:
            swapper.close()
    print()
    for key, value in FIGURES.items():
        print(f"{key} {value:.3f}")


if __name__ == "__main__":
    main()
