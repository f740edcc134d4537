"""RSS growth and versions left alive after 1000 reloads of a 10-module plugin (vs after 10).

The bench plugin's modules use ``logging.getLogger(__name__)``, ``typing`` subscriptions and
``typing.overload``: the ways a replaced version usually stays reachable. Each reload alternates
between two builds (different stamps), so every reload loads a fresh version; ``free_delay`` is
0, and each reload waits until the version it replaced is freed, as in a server whose
reloads come minutes apart (``rss_growth_back_to_back_mb_<n>``: the next reload starts at
once, while the freer thread is still freeing the previous version). Each run is a fresh process; the figures are
medians over runs. ``rss_growth_floor_mb_<n>``: the same cycles done with plain importlib and
the same cleanup, in a fresh process: what CPython itself keeps (the floor).

    .venv/bin/python bench/memory.py [--runs 3] [--reloads 1000] [--quick] [--json]
"""

from __future__ import annotations

import gc
import json
import logging
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import _util


def _settle(swapper: Any, timeout: float = 30.0) -> None:
    """Wait until no replaced version is pending its free, then collect garbage."""
    deadline = time.monotonic() + timeout
    while any(s.state == "pending free" for s in swapper.stats()):
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    gc.collect()


def _wait_freed(swapper: Any, timeout: float = 30.0) -> None:
    """Wait, without collecting garbage, until no replaced version is pending its free."""
    deadline = time.monotonic() + timeout
    while any(s.state == "pending free" for s in swapper.stats()):
        if time.monotonic() > deadline:
            break
        time.sleep(0.001)


def one_run(reloads: int, baseline: int, modules: int,
            back_to_back: bool = False) -> dict[str, float]:
    from hotswap_runtime import PluginManagerSwapper
    quiet = logging.getLogger("bench.memory.hotswap")
    quiet.setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="hotswap-bench-memory-") as tmp:
        root = Path(tmp)
        plugin = _util.make_plugin(root / "src", "leaky", modules)
        dirs = [root / "a", root / "b"]
        for stamp, folder in zip("ab", dirs, strict=True):
            _util.build(plugin, folder, stamp)
        swapper = PluginManagerSwapper(dirs[0], logger=quiet, free_delay=0)
        refs: list[weakref.ref[Any]] = []

        def reload_times(count: int) -> None:
            for _ in range(count):
                swapper.reset_plugin_dir(dirs[len(refs) % 2])
                swapper.reload()
                plugin_obj = swapper.current().find_plugin("leaky")
                plugin_obj.invoke_func("work", 3)
                func = plugin_obj.lookup("invoke_func")
                refs.append(weakref.ref(sys.modules[func.__module__]))
                del plugin_obj, func
                if not back_to_back:
                    # a server reloads minutes apart: the replaced version is freed before
                    # the next reload starts (free_delay is 0 here, so that is at once)
                    _wait_freed(swapper)

        reload_times(baseline)
        _settle(swapper)
        rss_base, blocks_base = _util.rss_bytes(), sys.getallocatedblocks()
        reload_times(reloads - baseline)
        _settle(swapper)
        rss_end, blocks_end = _util.rss_bytes(), sys.getallocatedblocks()
        alive = sum(ref() is not None for ref in refs)
        # what the C allocator keeps but could give back: tells retention from a real leak
        trimmed = _malloc_trim()
        rss_trimmed = _util.rss_bytes() if trimmed else rss_end
        swapper.close()
    return {"rss_growth_mb": (rss_end - rss_base) / 2**20, "versions_alive": alive,
            "rss_end_mb": rss_end / 2**20,
            "rss_growth_trimmed_mb": (rss_trimmed - rss_base) / 2**20,
            "py_blocks_growth": blocks_end - blocks_base}


def floor_run(reloads: int, baseline: int, modules: int) -> dict[str, float]:
    """The same cycles with plain importlib (warm ``__pycache__``, no framework): import the
    plugin, call it, drop its modules with the cleanup the runtime does (loggers, typing caches,
    overloads). What CPython itself keeps after that many imports of such modules."""
    import compileall
    import importlib
    import typing
    with tempfile.TemporaryDirectory(prefix="hotswap-bench-memory-floor-") as tmp:
        root = Path(tmp)
        _util.make_plugin(root, "leaky", modules)
        compileall.compile_dir(str(root / "leaky"), quiet=1)
        sys.path.insert(0, str(root))

        def cycle(count: int) -> None:
            for _ in range(count):
                importlib.import_module("leaky").invoke_func("work", 3)
                names = [k for k in sys.modules if k == "leaky" or k.startswith("leaky.")]
                for name in names:
                    del sys.modules[name]
                loggers = logging.Logger.manager.loggerDict
                for name in [k for k in loggers if k == "leaky" or k.startswith("leaky.")]:
                    del loggers[name]
                for cleanup in getattr(typing, "_cleanups", ()):
                    cleanup()
                registry = getattr(typing, "_overload_registry", {})
                for name in names:
                    registry.pop(name, None)

        cycle(baseline)
        gc.collect()
        rss_base = _util.rss_bytes()
        cycle(reloads - baseline)
        gc.collect()
        rss_end = _util.rss_bytes()
        sys.path.remove(str(root))
    return {"rss_growth_mb": (rss_end - rss_base) / 2**20}


def _malloc_trim() -> bool:
    """Ask glibc to return free heap memory to the system; False where there is no glibc."""
    try:
        import ctypes
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0)) or True
    except (OSError, AttributeError):
        return False


def main() -> None:
    parser = _util.parser(__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reloads", type=int, default=1000)
    parser.add_argument("--baseline", type=int, default=10)
    parser.add_argument("--modules", type=int, default=10)
    parser.add_argument("--one", action="store_true", help=argparse_hidden())
    parser.add_argument("--floor", action="store_true", help=argparse_hidden())
    parser.add_argument("--back-to-back", action="store_true", help=argparse_hidden())
    args = parser.parse_args()
    if args.quick:
        args.runs, args.reloads, args.baseline, args.modules = 1, 12, 2, 3
    if args.one:
        if args.floor:
            print(json.dumps(floor_run(args.reloads, args.baseline, args.modules)))
        else:
            print(json.dumps(one_run(args.reloads, args.baseline, args.modules,
                                     args.back_to_back)))
        return
    samples, rushed, floors = [], [], []
    for run in range(args.runs):
        _util.log(f"memory: run {run + 1}/{args.runs}: {args.reloads} reloads of a "
                  f"{args.modules}-module plugin, then as many plain imports")
        for flags, into in (((), samples), (("--back-to-back",), rushed),
                            (("--floor",), floors)):
            out = subprocess.run([sys.executable, __file__, "--one", *flags,
                                  "--reloads", str(args.reloads), "--baseline",
                                  str(args.baseline), "--modules", str(args.modules)],
                                 check=True, capture_output=True, text=True)
            into.append(json.loads(out.stdout.strip().splitlines()[-1]))
    n = args.reloads
    results = {
        f"rss_growth_mb_{n}": _util.median([s["rss_growth_mb"] for s in samples]),
        f"versions_alive_{n}": max(s["versions_alive"] for s in samples),
        f"rss_end_mb_{n}": _util.median([s["rss_end_mb"] for s in samples]),
        f"rss_growth_trimmed_mb_{n}": _util.median([s["rss_growth_trimmed_mb"] for s in samples]),
        f"py_blocks_growth_{n}": _util.median([s["py_blocks_growth"] for s in samples]),
        f"rss_growth_floor_mb_{n}": _util.median([s["rss_growth_mb"] for s in floors]),
        # each reload starts while the previous replaced version is still being freed
        f"rss_growth_back_to_back_mb_{n}": _util.median([s["rss_growth_mb"] for s in rushed]),
        f"versions_alive_back_to_back_{n}": max(s["versions_alive"] for s in rushed),
    }
    _util.emit(results, args.json)


def argparse_hidden() -> str:
    import argparse
    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
