"""Real pure-Python packages from PyPI, turned into plugins: built, loaded, reloaded and freed.

Each package is copied from site-packages into a plugin folder, given the seven hooks, built
with the real ``hotswap`` CLI and loaded with the real runtime. They exercise what hand-made
samples do not: absolute self-imports at module level and inside functions (dateutil, humanize),
``TYPE_CHECKING`` blocks (markdown, packaging), ``import markdown`` of its own root package
(markdown's ``__main__``), ``from __future__`` imports, data files shipped
with ``--include`` (humanize's message catalogues), deep subpackages, and a plugin whose name is
a package the host itself has imported (``packaging``, used by pytest).
"""

from __future__ import annotations

import datetime
import gc
import importlib.resources
import importlib.util
import shutil
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hotswap_runtime import PluginManagerSwapper

HOOKS = '''

# --- added by hotswap's test: the plugin contract ---
CompileTimeString = "v1"


def on_load(data):
    pass


def on_init(vault):
    vault.data_bag[__name__.rpartition(".")[2] or __name__] = CompileTimeString


def on_free():
    pass


def export():
    return None


def import_():
    return None


def reloadable():
    return True


def invoke_func(name, *params):
    """``invoke_func("mod.sub:attr.path", *args)`` calls an attribute of a plugin module."""
    import importlib as _importlib

    if name == "stamp":
        return CompileTimeString
    module_path, _, attr_path = name.partition(":")
    target = _importlib.import_module("." + module_path, __name__) if module_path else _this()
    for part in attr_path.split("."):
        target = getattr(target, part)
    return target(*params)


def _this():
    import sys as _sys

    return _sys.modules[__name__]
'''

HOTSWAP = Path(sys.executable).with_name("hotswap")


def _copy_as_plugin(package: str, plugins: Path) -> Path:
    """Copy the installed ``package`` into ``plugins/<package>`` and append the hooks."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"{package} is not installed"
    source = Path(next(iter(spec.submodule_search_locations)))
    target = plugins / package
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    init = target / "__init__.py"
    init.write_text(init.read_text(encoding="utf-8") + HOOKS, encoding="utf-8")
    return target


def _hotswap_build(*args: str | Path) -> str:
    result = subprocess.run([str(HOTSWAP), "build", *map(str, args)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gc.collect()
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[Path, Path, PluginManagerSwapper]]:
    plugins, bin_dir = tmp_path / "plugins", tmp_path / "bin"
    plugins.mkdir()
    swapper = PluginManagerSwapper(bin_dir, free_delay=0)
    yield plugins, bin_dir, swapper
    swapper.close()


def _load_and_check(swapper: PluginManagerSwapper, name: str, calls: list[tuple[str, tuple[Any, ...], Any]]) -> None:
    manager = swapper.current()
    assert manager is not None
    plugin = manager.find_plugin(name)
    assert plugin is not None
    for target, args, expected in calls:
        assert plugin.invoke_func(target, *args) == expected, target


def _reload_and_free(plugin_dir: Path, bin_dir: Path, swapper: PluginManagerSwapper, name: str,
                     *build_flags: str) -> None:
    """Rebuild with a new stamp, reload, and check the replaced version really goes."""
    manager = swapper.current()
    assert manager is not None
    old_root = weakref.ref(manager.find_plugin(name).lookup("invoke_func"))
    old_modules = [m for m in sys.modules if m.startswith(_mounted_prefix(manager, name))]
    assert old_modules, "the plugin's modules should be in sys.modules under its mounted name"
    del manager
    _hotswap_build(*build_flags, plugin_dir, bin_dir, "--", "-X", "CompileTimeString=v2")
    details = swapper.reload()
    assert set(details.values()) == {"ok"}
    assert swapper.current().find_plugin(name).invoke_func("stamp") == "v2"
    assert _wait_until(lambda: old_root() is None), f"version 1 of {name} was never freed"
    assert not [m for m in old_modules if m in sys.modules]


def _mounted_prefix(manager: Any, name: str) -> str:
    return manager.find_plugin(name).lookup("__name__")


def test_dateutil_lazy_self_imports(host: tuple[Path, Path, PluginManagerSwapper]) -> None:
    """dateutil imports itself absolutely inside functions: every one is rewritten and works."""
    plugins, bin_dir, swapper = host
    original_loaded = "dateutil" in sys.modules
    plugin_dir = _copy_as_plugin("dateutil", plugins)
    _hotswap_build(plugin_dir, bin_dir)
    swapper.load_plugins()
    expected = datetime.datetime(2024, 3, 5, 17, 30)
    _load_and_check(swapper, "dateutil", [
        ("parser:parse", ("2024-03-05 17:30",), expected),
        ("stamp", (), "v1"),
    ])
    # rrule's str form goes through `from dateutil import parser` inside a function
    rule = swapper.current().find_plugin("dateutil").invoke_func(
        "rrule:rrulestr", "DTSTART:20240101T000000\nRRULE:FREQ=DAILY;COUNT=3")
    assert [d.day for d in rule] == [1, 2, 3]
    assert type(rule).__module__.startswith(_mounted_prefix(swapper.current(), "dateutil"))
    if not original_loaded:
        assert "dateutil" not in sys.modules, "the plugin imported the installed dateutil"
    _reload_and_free(plugin_dir, bin_dir, swapper, "dateutil")


def test_humanize_self_imports_and_data_files(host: tuple[Path, Path, PluginManagerSwapper]) -> None:
    """humanize's absolute self-imports become relative; its catalogues ship with --include."""
    plugins, bin_dir, swapper = host
    plugin_dir = _copy_as_plugin("humanize", plugins)
    flags = ("--include", r"\.(mo|po)$")
    _hotswap_build(*flags, plugin_dir, bin_dir)
    swapper.load_plugins()
    _load_and_check(swapper, "humanize", [
        (":naturalsize", (3_000_000,), "3.0 MB"),
        (":intcomma", (1234567,), "1,234,567"),
        ("number:ordinal", (3,), "3rd"),
    ])
    plugin = swapper.current().find_plugin("humanize")
    files = importlib.resources.files(plugin.lookup("__name__"))
    catalogue = files / "locale" / "fr_FR" / "LC_MESSAGES" / "humanize.mo"
    assert catalogue.read_bytes()[:4] in (b"\xde\x12\x04\x95", b"\x95\x04\x12\xde")
    del plugin, files, catalogue  # the resource reader belongs to version 1
    _reload_and_free(plugin_dir, bin_dir, swapper, "humanize", *flags)


def test_markdown_type_checking_blocks(host: tuple[Path, Path, PluginManagerSwapper]) -> None:
    """markdown's TYPE_CHECKING imports of itself are rewritten; 33 modules load and render."""
    plugins, bin_dir, swapper = host
    plugin_dir = _copy_as_plugin("markdown", plugins)
    _hotswap_build(plugin_dir, bin_dir)
    swapper.load_plugins()
    _load_and_check(swapper, "markdown", [
        (":markdown", ("# Title\n\n*hot* swap",), "<h1>Title</h1>\n<p><em>hot</em> swap</p>"),
    ])
    _reload_and_free(plugin_dir, bin_dir, swapper, "markdown")


def test_packaging_beside_the_hosts_own_copy(host: tuple[Path, Path, PluginManagerSwapper]) -> None:
    """A plugin named like a package the host uses runs its own copy, isolated from the host's."""
    import packaging.version as hosts_version

    plugins, bin_dir, swapper = host
    plugin_dir = _copy_as_plugin("packaging", plugins)
    _hotswap_build(plugin_dir, bin_dir)
    swapper.load_plugins()
    plugin = swapper.current().find_plugin("packaging")
    version = plugin.invoke_func("version:parse", "1.2.3rc1")
    assert str(version) == "1.2.3rc1" and version.is_prerelease
    assert type(version) is not hosts_version.Version
    assert sys.modules["packaging.version"] is hosts_version, "the host's packaging was replaced"
    spec = plugin.invoke_func("specifiers:SpecifierSet", ">=1.0,<2")
    assert spec.contains("1.5") and not spec.contains("2.0")
    del plugin, version, spec  # instances of version 1's classes keep version 1 alive
    _reload_and_free(plugin_dir, bin_dir, swapper, "packaging")
