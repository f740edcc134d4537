"""One hook-signature rule: what ``hotswap build`` accepts loads, and what it refuses would not.

The build judges a hook from its source, the runtime from the loaded function; both ask
``hotswap_runtime.artifact.HookParams``. Each case is built for real, and its functions, compiled
from the same source, go through the runtime's load-time hook check (``check_hooks``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hotswap_build.errors import BuildError
from hotswap_runtime import HotswapError, PluginManagerSwapper
from hotswap_runtime.version import check_hooks

HOOKS = """\
def on_load(data): pass
def on_init(vault): pass
def on_free(): pass
def export(): pass
def import_(): pass
def reloadable(): return True
"""


def _plugin(root: Path, invoke_func: str) -> Path:
    folder = root / "sig"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(HOOKS + invoke_func)
    return folder


def test_invoke_func_with_three_defaults_builds_loads_and_runs(tmp_path: Path,
                                                                 build_plugin) -> None:
    """``def invoke_func(name, a=None, b=None, c=None)`` takes the name alone and the name with
    three params: the build accepts it, the runtime loads it and calls it both ways."""
    source = "def invoke_func(name, a=None, b=None, c=None):\n    return (name, a, b, c)\n"
    plugin = _plugin(tmp_path / "src", source)
    build_plugin(plugin, tmp_path / "out")
    swapper = PluginManagerSwapper(tmp_path / "out", free_delay=0)
    try:
        assert str(swapper.load_plugins()) == "sig: ok"
        sig = swapper.current().find_plugin("sig")
        assert sig.invoke_func("ping") == ("ping", None, None, None)
        assert sig.invoke_func("ping", 1, 2, 3) == ("ping", 1, 2, 3)
    finally:
        swapper.close()


@pytest.mark.parametrize("source, accepted", [
    ("def invoke_func(name, *params): pass\n", True),
    ("def invoke_func(name, a=None, b=None, c=None): pass\n", True),
    ("def invoke_func(name, first=None, *rest, flag=False): pass\n", True),
    ("def invoke_func(*args): pass\n", True),
    ("def invoke_func(name): pass\n", False),
    ("def invoke_func(name, a=1, b=2): pass\n", False),
    ("def invoke_func(name, first, *rest): pass\n", False),
    ("def invoke_func(name, *params, key): pass\n", False),
])
def test_build_and_runtime_agree(tmp_path: Path, build_plugin, source: str,
                                 accepted: bool) -> None:
    """Every invoke_func shape is accepted by both the build and the runtime, or by neither."""
    plugin = _plugin(tmp_path / "src", source)
    try:
        build_plugin(plugin, tmp_path / "out")
        built = True
    except BuildError as exc:
        assert "invoke_func in sig/__init__.py:7 cannot be called as invoke_func(name, *params)" \
            in str(exc)
        built = False
    namespace: dict[str, object] = {}
    exec(compile(HOOKS + source, "sig/__init__.py", "exec"), namespace)
    try:
        check_hooks("sig", namespace)
        loads = True
    except HotswapError as exc:
        assert "cannot be called as invoke_func(name, *params)" in str(exc)
        loads = False
    assert (built, loads) == (accepted, accepted)
