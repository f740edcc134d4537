"""Call overhead: a direct call, a live function from a held vault, invoke_func through the swapper.

Run: ``.venv/bin/python bench/dispatch.py``. Prints nanoseconds per call and the ratio to the
direct call; the same attribute-then-dict lookup on a plain object shows what the interpreter
itself charges for that shape of call. Measures only; asserts nothing.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _plugins import build_stamped, make_plugin

from hotswap_runtime import PluginManagerSwapper


class _Plain:
    """An ordinary object holding a dict: what ``obj.attr[key](x)`` costs without hotswap."""

    def __init__(self, live_funcs: dict) -> None:
        self.live_funcs = live_funcs


NUMBER = 100_000
REPEAT = 21


def per_call(rows: list[tuple[str, str]], namespace: dict) -> list[tuple[str, float]]:
    """Median ns per call of each statement; the statements take turns, so a busy machine
    slows them alike."""
    timers = [timeit.Timer(stmt, globals=namespace) for _, stmt in rows]
    runs: list[list[float]] = [[] for _ in rows]
    for _ in range(REPEAT):
        for timer, out in zip(timers, runs, strict=True):
            out.append(timer.timeit(NUMBER))
    return [(label, statistics.median(out) / NUMBER * 1e9) for (label, _), out in zip(rows, runs, strict=True)]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_plugin(root / "src", "disp", 1)
        (root / "plugins").mkdir()
        (root / "plugins" / "disp.hsp").write_bytes(build_stamped(root / "src" / "disp", root / "b", "a"))
        swapper = PluginManagerSwapper(root / "plugins", free_delay=0)
        swapper.load_plugins()
        try:
            manager = swapper.current()
            namespace = {
                "add": manager.find_plugin("disp").lookup("add"),
                "vault": manager.vault,
                "swapper": swapper,
            }
            namespace["plain"] = _Plain(dict(manager.vault.live_funcs))
            rows = [
                ("direct call add(1)", "add(1)"),
                ("vault.live_funcs['live_add'](1)", "vault.live_funcs['live_add'](1)"),
                ("same lookup on a plain object (no hotswap)", "plain.live_funcs['live_add'](1)"),
                ("swapper.current().find_plugin('disp').invoke_func('add', 1)",
                 "swapper.current().find_plugin('disp').invoke_func('add', 1)"),
            ]
            results = per_call(rows, namespace)
        finally:
            swapper.close()
    direct = results[0][1]
    for label, ns in results:
        print(f"{label:<62} {ns:>8.1f} ns {ns / direct:>6.2f}x")


if __name__ == "__main__":
    main()
