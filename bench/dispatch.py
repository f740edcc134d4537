"""Call overhead: a direct call, a live function from a held vault, invoke_func through the swapper.

Run: ``.venv/bin/python bench/dispatch.py``. Prints nanoseconds per call and the ratio to the
direct call. Measures only; asserts nothing.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _plugins import build_stamped, make_plugin  # noqa: E402

from hotswap_runtime import PluginManagerSwapper  # noqa: E402

NUMBER = 200_000
REPEAT = 7


def per_call(stmt: str, namespace: dict) -> float:
    runs = timeit.repeat(stmt, globals=namespace, number=NUMBER, repeat=REPEAT)
    return statistics.median(runs) / NUMBER * 1e9


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
            rows = [
                ("direct call add(1)", "add(1)"),
                ("vault.live_funcs['live_add'](1)", "vault.live_funcs['live_add'](1)"),
                ("swapper.current().find_plugin('disp').invoke_func('add', 1)",
                 "swapper.current().find_plugin('disp').invoke_func('add', 1)"),
            ]
            results = [(label, per_call(stmt, namespace)) for label, stmt in rows]
        finally:
            swapper.close()
    direct = results[0][1]
    for label, ns in results:
        print(f"{label:<62} {ns:>8.1f} ns {ns / direct:>6.2f}x")


if __name__ == "__main__":
    main()
