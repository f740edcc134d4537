"""The leak doctor and the guard: what they cost.

Run: ``.venv/bin/python bench/doctor.py``. Prints, against the goals of issue 8 (README "Finding leaks"):

- ``stats()`` with 100 versions alive (100 pending free, and 100 freed but held by the host):
  goal under 1 ms;
- ``stats(explain=True)`` on a heap of a million objects, with 100, 10 and 1 freed versions
  held by a host cache: goal under 1 s;
- ``guard=True`` overhead per ``invoke_func`` (plain arguments, and a list of 10 objects);
- ``guard=False`` against a swapper built without the argument (goal: within noise).

``--quick`` uses tiny sizes (the smoke test; its numbers mean nothing); ``--json`` adds a last
line with the figures as one JSON object, for ``bench/run.py``. Measures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
import timeit
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _plugins import build_stamped, make_plugin

from hotswap_runtime import PluginManagerSwapper

NUMBER = 100_000
REPEAT = 15


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def per_call_ns(rows: list[tuple[str, str]], namespace: dict) -> list[tuple[str, float]]:
    """Median ns per call of each statement; the statements take turns, so a busy machine
    slows them alike."""
    timers = [timeit.Timer(stmt, globals=namespace) for _, stmt in rows]
    runs: list[list[float]] = [[] for _ in rows]
    for _ in range(REPEAT):
        for timer, out in zip(timers, runs, strict=True):
            out.append(timer.timeit(NUMBER))
    return [(label, statistics.median(out) / NUMBER * 1e9) for (label, _), out in zip(rows, runs, strict=True)]


def swap_in(plugins: Path, artifact: bytes) -> None:
    (plugins / "disp.hsp").write_bytes(artifact)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--json", action="store_true", help="end with the figures as JSON")
    args = parser.parse_args(argv)
    global NUMBER, REPEAT
    versions, heap_size, stats_calls = 100, 500_000, 200
    if args.quick:
        versions, heap_size, stats_calls, NUMBER, REPEAT = 6, 1_000, 5, 1_000, 3
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_plugin(root / "src", "disp", 2)
        stamps = [build_stamped(root / "src" / "disp", root / "b", s) for s in ("a", "b")]
        plugins = root / "plugins"
        plugins.mkdir()
        swap_in(plugins, stamps[0])

        # -- stats() with 100 versions pending free ------------------------------------------
        pending = PluginManagerSwapper(plugins, free_delay=3600)
        pending.load_plugins()
        for i in range(1, versions + 1):
            swap_in(plugins, stamps[i % 2])
            pending.reload()
        count = len(pending.stats())
        ms = median_ms(pending.stats, stats_calls)
        figures["doctor_stats_pending_ms"] = ms
        print(f"stats(), {count} versions ({versions} pending free)            {ms:8.3f} ms   "
              "goal < 1 ms")
        pending.close()

        # -- stats() with 100 versions freed but held by the host ----------------------------
        host = types.ModuleType("bench_host")
        host.cache = {}  # type: ignore[attr-defined]  # a module made here: its globals are ours
        sys.modules["bench_host"] = host
        swapper = PluginManagerSwapper(plugins, free_delay=0)
        swap_in(plugins, stamps[0])
        swapper.load_plugins()
        for i in range(1, versions + 1):
            host.cache[i] = swapper.current().find_plugin("disp").lookup("mod1").Worker1(str(i))
            swap_in(plugins, stamps[i % 2])
            swapper.reload()
        deadline = time.monotonic() + 30
        while (sum(s.state == "freed" for s in swapper.stats()) < versions
               and time.monotonic() < deadline):
            time.sleep(0.05)
        count = len(swapper.stats())
        ms = median_ms(swapper.stats, stats_calls)
        figures["doctor_stats_freed_ms"] = ms
        print(f"stats(), {count} versions ({versions} freed, held by the host)  {ms:8.3f} ms   "
              "goal < 1 ms")

        # -- explain=True on a heap of a million objects -------------------------------------
        for held in sorted({versions, min(10, versions), 1}, reverse=True):
            for key in list(host.cache)[:-held]:
                del host.cache[key]
            heap = [{"n": i, "v": [i]} for i in range(heap_size)]
            objects = len(gc.get_objects())
            gc.collect()
            collect_ms = median_ms(gc.collect, 3)
            started = time.perf_counter()
            stats = swapper.stats(explain=True)
            ms = (time.perf_counter() - started) * 1000
            freed = [s for s in stats if s.state == "freed"]
            example = freed[0].referrers[0] if freed and freed[0].referrers else "-"
            figures[f"doctor_explain_{len(freed)}_freed_ms"] = ms
            figures["doctor_explain_heap_objects"] = objects
            print(f"stats(explain=True), {objects:,} objects, {len(freed):>3} freed version(s) "
                  f"{ms:8.1f} ms (gc.collect alone {collect_ms:.0f} ms)   goal < 1000 ms   "
                  f"e.g. {example}")
            del heap
        swapper.close()
        del sys.modules["bench_host"]

        # -- guard: overhead per invoke_func, and off against no argument at all -------------
        swap_in(plugins, stamps[0])
        made = {
            "no guard argument": PluginManagerSwapper(plugins, free_delay=0),
            "guard=False": PluginManagerSwapper(plugins, free_delay=0, guard=False),
            "guard=True": PluginManagerSwapper(plugins, free_delay=0, guard=True),
        }
        namespace: dict = {"items": list(range(10))}
        for label, made_swapper in made.items():
            made_swapper.load_plugins()
            namespace[label] = made_swapper.current().find_plugin("disp")
        rows = []
        for label in made:
            rows.append((f"{label}: invoke_func('add', 1)", f"ns[{label!r}].invoke_func('add', 1)"))
        rows.append(("guard=True: invoke_func('noop', list of 10)",
                     "ns['guard=True'].invoke_func('noop', items)"))
        rows.append(("guard=False: invoke_func('noop', list of 10)",
                     "ns['guard=False'].invoke_func('noop', items)"))
        namespace["ns"] = namespace
        off = namespace["guard=False"]
        print("guard=False: invoke_func is the version's own function, no wrapper:",
              off.invoke_func is off.lookup("invoke_func"))
        results = per_call_ns(rows, namespace)
        base = results[0][1]
        for label, ns in results:
            print(f"{label:<46} {ns:8.1f} ns  {ns - base:+7.1f} ns vs no guard argument")
        figures["doctor_guard_off_delta_ns"] = results[1][1] - base
        figures["doctor_guard_on_delta_ns"] = results[2][1] - base
        figures["doctor_guard_on_list10_delta_ns"] = results[3][1] - results[4][1]
        for made_swapper in made.values():
            made_swapper.close()
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
