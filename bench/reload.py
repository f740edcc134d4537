"""Reload latency against the floor of a plain import, for plugins of 1, 10 and 100 modules.

Run: ``.venv/bin/python bench/reload.py``. Prints, side by side, the median time of
``swapper.reload()`` (artifact read, verified, imported from memory, lifecycle run, swapped)
and the median time of a fresh ``importlib.import_module`` of the same modules from disk with a
warm ``__pycache__`` (no framework), and their ratio. Measures only; asserts nothing.
"""

from __future__ import annotations

import compileall
import gc
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _plugins import build_stamped, make_plugin

from hotswap_runtime import PluginManagerSwapper

ROUNDS = 21


def measure(src: Path, out: Path, name: str) -> tuple[float, float]:
    """Median seconds of a reload and of the floor, taking turns so machine noise hits both.

    The reload alternates two builds (different stamps), so each one loads a fresh version;
    before each timed run the previous version is freed and ``gc`` has run, on both sides.
    """
    builds = [build_stamped(src / name, out / "builds", stamp) for stamp in ("a", "b")]
    plugins = out / "plugins" / name
    plugins.mkdir(parents=True, exist_ok=True)
    artifact = plugins / f"{name}.hsp"
    artifact.write_bytes(builds[0])
    swapper = PluginManagerSwapper(plugins, free_delay=0)
    swapper.load_plugins()
    # a warm __pycache__, written explicitly: PYTHONDONTWRITEBYTECODE would make it a compile
    compileall.compile_dir(str(src / name), quiet=1)
    sys.path.insert(0, str(src))
    reloads, floors = [], []
    try:
        importlib.import_module(name)
        for n in range(ROUNDS):
            # the last reload's free first: it runs on the freer thread, which would race
            # this loop over sys.modules and share the CPU with the floor's import
            settle(swapper)
            for key in [k for k in list(sys.modules) if k == name or k.startswith(name + ".")]:
                del sys.modules[key]
            gc.collect()
            start = time.perf_counter()
            importlib.import_module(name)
            floors.append(time.perf_counter() - start)

            artifact.write_bytes(builds[(n + 1) % 2])
            settle(swapper)
            start = time.perf_counter()
            details = swapper.reload()
            reloads.append(time.perf_counter() - start)
            assert str(details) == f"{name}: ok", details
    finally:
        swapper.close()
        sys.path.remove(str(src))
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
    return statistics.median(reloads), statistics.median(floors)


def settle(swapper: PluginManagerSwapper) -> None:
    """Wait until the replaced version is freed, then collect, as the floor does before importing."""
    while gc.collect() or len(swapper.stats()) > 1:
        time.sleep(0.001)


def main() -> None:
    print(f"{'modules':>8} {'reload ms':>10} {'floor ms':>10} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for modules in (1, 10, 100):
            name = f"bench{modules}"
            make_plugin(root / "src", name, modules)
            took, base = measure(root / "src", root / "out", name)
            print(f"{modules:>8} {took * 1e3:>10.2f} {base * 1e3:>10.2f} {took / base:>6.2f}x")


if __name__ == "__main__":
    main()
