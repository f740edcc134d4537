"""After replaced versions are freed, how many are still alive, and what holds those that are.

Loads a 10-module plugin (logging, typing, overloads, dataclasses), reloads it N times (fresh
versions, ``free_delay`` 0), keeps weak references to each version's root module, its
``invoke_func`` and a module-level class, waits for the frees, collects garbage and counts the
versions any of whose weak references still resolves; then ``close()`` and counts again. For a
version still alive it prints what refers to it (``gc.get_referrers``, up to 3 levels).

    .venv/bin/python bench/free.py [--reloads 50] [--quick] [--json]
"""

from __future__ import annotations

import gc
import logging
import sys
import tempfile
import time
import types
import weakref
from pathlib import Path
from typing import Any

import _util


def _describe(obj: Any) -> str:
    if isinstance(obj, types.ModuleType):
        return f"module {obj.__name__}"
    if isinstance(obj, dict):
        return f"dict({len(obj)} keys)"
    if isinstance(obj, (types.FunctionType, type)):
        return f"{type(obj).__name__} {obj.__module__}.{obj.__qualname__}"
    return type(obj).__name__


def referrers(obj: Any, depth: int = 3) -> list[str]:
    """Chains of what refers to ``obj``, innermost first, up to ``depth`` levels and 5 chains."""
    chains: list[str] = []
    seen = {id(obj)}

    def walk(target: Any, path: list[str], level: int) -> None:
        if len(chains) >= 5:
            return
        # skip frames (ours), what was already visited (cycles such as a class's __mro__)
        found = [r for r in gc.get_referrers(target)
                 if not isinstance(r, types.FrameType) and id(r) not in seen and r is not path]
        found.sort(key=lambda r: not isinstance(r, dict))   # namespaces tell the most
        if level == depth or not found:
            chains.append(" <- ".join(path))
            return
        for ref in found[:3]:
            seen.add(id(ref))
            walk(ref, path + [_describe(ref)], level + 1)

    walk(obj, [_describe(obj)], 0)
    return chains


def measure(reloads: int, modules: int) -> dict[str, float]:
    from hotswap_runtime import PluginManagerSwapper
    quiet = logging.getLogger("bench.free.hotswap")
    quiet.setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="hotswap-bench-free-") as tmp:
        root = Path(tmp)
        plugin = _util.make_plugin(root / "src", "freed", modules)
        dirs = [root / "a", root / "b"]
        for stamp, folder in zip("ab", dirs, strict=True):
            _util.build(plugin, folder, stamp)
        swapper = PluginManagerSwapper(dirs[0], logger=quiet, free_delay=0)
        versions: list[list[weakref.ref[Any]]] = []
        for index in range(reloads + 1):
            swapper.reset_plugin_dir(dirs[index % 2])
            swapper.reload()
            found = swapper.current().find_plugin("freed")
            found.invoke_func("work", 2)
            func = found.lookup("invoke_func")
            module = sys.modules[func.__module__]
            record = sys.modules[func.__module__ + ".mod_0000"].Record0
            versions.append([weakref.ref(module), weakref.ref(func), weakref.ref(record)])
            del found, func, module, record
        deadline = time.monotonic() + 30
        while any(s.state == "pending free" for s in swapper.stats()) and time.monotonic() < deadline:
            time.sleep(0.01)
        gc.collect()
        alive_after_reloads = sum(any(r() is not None for r in refs) for refs in versions[:-1])
        swapper.close()
        gc.collect()
        alive_after_close = [refs for refs in versions if any(r() is not None for r in refs)]
        for refs in alive_after_close[:2]:
            target = next(r() for r in refs if r() is not None)
            _util.log(f"still alive: {_describe(target)}")
            for chain in referrers(target):
                _util.log(f"    {chain}")
            del target
    return {"free_versions_replaced": reloads, "free_alive_after_reloads": alive_after_reloads,
            "free_alive_after_close": len(alive_after_close)}


def main() -> None:
    parser = _util.parser(__doc__)
    parser.add_argument("--reloads", type=int, default=50)
    parser.add_argument("--modules", type=int, default=10)
    args = parser.parse_args()
    if args.quick:
        args.reloads, args.modules = 3, 3
    _util.log(f"free: {args.reloads} reloads of a {args.modules}-module plugin")
    _util.emit(measure(args.reloads, args.modules), args.json)


if __name__ == "__main__":
    main()
