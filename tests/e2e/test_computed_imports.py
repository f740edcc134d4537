"""Computed imports at run time: a plugin that imports parts of itself by names built at run
time gets its own version's modules, never another version's and never the host's package of
the same name (README "Building", computed imports)."""

from __future__ import annotations

import importlib
import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hotswap_build.build import BuildResult
from hotswap_runtime import PluginManagerSwapper

NAME = "calcplug"
PARTS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta")

#: the seven hooks; invoke_func calls the root package's function of that name
HOOKS = '''

def on_load(data): pass
def on_init(vault): pass
def on_free(): pass
def export(): pass
def import_(): pass
def reloadable(): return True


def invoke_func(name, *params):
    return globals()[name](*params)
'''

ROOT = '''\
import importlib
import importlib.util
from importlib import import_module as load_module

# mistune's way: the root package imports its parts by names kept in a dict, at import time
PARTS = {"first": "calcplug.parts.alpha"}
FIRST = importlib.import_module(PARTS["first"])


def by_import_module(short):
    return importlib.import_module("calcplug.parts." + short)


def by_alias(short):
    return load_module(f"calcplug.parts.{short}")


def by_relative(short):
    return importlib.import_module("." + short, "calcplug.parts")


def by_dunder(short):
    # pygments' way
    return __import__("calcplug.parts." + short, None, None, ["__all__"])


def by_dunder_top(short):
    return __import__("calcplug.parts." + short)


def by_entry_point(name):
    # the entry points of an installed distribution of the same name name the real package
    from importlib.metadata import entry_points

    (point,) = entry_points(group="calcplug.parts", name=name)
    return point.load()


def by_pickle(short, how):
    # a pickle made with the real package names its objects by the real module names
    import io
    import pickle

    data = b"ccalcplug.parts." + short.encode() + b"\\nWHO\\n."
    if how == "load":
        return pickle.load(io.BytesIO(data))
    if how == "Unpickler":
        return pickle.Unpickler(io.BytesIO(data)).load()
    return pickle.loads(data)


def spec(short):
    return importlib.util.find_spec("calcplug.parts." + short)


# every other spelling of the same functions, and the functions used as values
import builtins
import importlib as il
from importlib import *
from importlib.util import find_spec as fs

BY_NAME = {"load": importlib.import_module}


def forms(short):
    name = "calcplug.parts." + short
    load = il.import_module
    spec_of = importlib.util.find_spec
    return {
        "il.import_module": il.import_module(name),
        "builtins.__import__": builtins.__import__(name, None, None, ["WHO"]),
        "importlib.__import__": il.__import__(name, fromlist=["WHO"]),
        "star import_module": import_module(name),
        "getattr": getattr(importlib, "import_module")(name),
        "__builtins__": (__builtins__["__import__"] if isinstance(__builtins__, dict)
                         else __builtins__.__import__)(name, fromlist=["WHO"]),
        "value": load(name),
        "map": list(map(importlib.import_module, [name]))[0],
        "dict value": BY_NAME["load"](name),
        "find_spec alias": importlib.import_module(fs(name).name),
        "find_spec value": importlib.import_module(spec_of(name).name),
    }


def outside(name):
    return importlib.import_module(name)
''' + HOOKS


def _part(text: str) -> str:
    return f"WHO = {text!r}\n"


def _write_plugin(folder: Path, who: str) -> Path:
    plugin = folder / NAME
    (plugin / "parts").mkdir(parents=True, exist_ok=True)
    (plugin / "__init__.py").write_text(ROOT)
    (plugin / "parts" / "__init__.py").write_text("")
    for part in PARTS:
        (plugin / "parts" / f"{part}.py").write_text(_part(f"plugin {part} {who}"))
    return plugin


@pytest.fixture
def hosts_own_copy(tmp_path: Path) -> Iterator[Path]:
    """A package named like the plugin, installed on the host's sys.path and imported."""
    site = tmp_path / "host-site"
    package = site / NAME
    (package / "parts").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "parts" / "__init__.py").write_text("")
    for part in PARTS:
        (package / "parts" / f"{part}.py").write_text(_part(f"host {part}"))
    # its distribution's metadata, with entry points into its own modules
    info = site / f"{NAME}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {NAME}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{NAME}.parts]\nbeta = {NAME}.parts.beta:WHO\n")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    importlib.import_module(f"{NAME}.parts.alpha")
    yield site
    sys.path.remove(str(site))
    for key in [k for k in sys.modules if k == NAME or k.startswith(NAME + ".")]:
        del sys.modules[key]


def _of_the_version(path: str, root: str, member: str) -> bool:
    """Whether ``path`` is the file of ``member`` in the version mounted at ``root``: it shows
    the plugin and the load (``…/calcplug.hsp#3/calcplug/…`` or ``…/calcplug#3/calcplug/…``)."""
    load = root.rpartition("_")[2]
    return re.search(rf"/{NAME}(\.hsp)?#{load}/{NAME}/{re.escape(member)}$", path) is not None


def _host_modules() -> dict[str, object]:
    return {k: v for k, v in sys.modules.items() if k == NAME or k.startswith(NAME + ".")}


def test_computed_imports_reach_the_plugins_own_modules(
        tmp_path: Path, build_plugin: Callable[..., BuildResult],
        hosts_own_copy: Path) -> None:
    """Every form of computed import returns the version's own module, whose __name__ and
    __file__ are the version's, while the host's copy stays the host's, untouched."""
    plugin_dir = _write_plugin(tmp_path / "plugins", "v1")
    build_plugin(plugin_dir, tmp_path / "bin")
    before = _host_modules()
    swapper = PluginManagerSwapper(tmp_path / "bin", free_delay=0,
                                   runtime_dir=tmp_path / "runtime")
    try:
        swapper.load_plugins()
        plugin = swapper.current().find_plugin(NAME)
        root = plugin.lookup("__name__")
        assert plugin.lookup("FIRST").WHO == "plugin alpha v1"
        got = {
            "by_import_module": plugin.invoke_func("by_import_module", "beta"),
            "by_alias": plugin.invoke_func("by_alias", "gamma"),
            "by_relative": plugin.invoke_func("by_relative", "delta"),
            "by_dunder": plugin.invoke_func("by_dunder", "epsilon"),
        }
        for how, module in got.items():
            short = module.__name__.rpartition(".")[2]
            assert module.WHO == f"plugin {short} v1", how
            assert module.__name__ == f"{root}.parts.{short}", how
            assert sys.modules[module.__name__] is module, how
            assert not module.__file__.startswith(str(hosts_own_copy)), how
            assert _of_the_version(module.__file__, root, f"parts/{short}.py"), how
        # __import__ without a fromlist returns the top-level package: the mounted root
        top = plugin.invoke_func("by_dunder_top", "alpha")
        assert top.__name__ == root and top.parts.alpha.WHO == "plugin alpha v1"
        # a pickle's objects come from the version
        for how, short in (("loads", "alpha"), ("load", "gamma"), ("Unpickler", "zeta")):
            assert plugin.invoke_func("by_pickle", short, how) == f"plugin {short} v1", how
        # an entry point of the host's distribution loads from the version
        assert plugin.invoke_func("by_entry_point", "beta") == "plugin beta v1"
        for how, module in plugin.invoke_func("forms", "eta").items():
            assert module.WHO == "plugin eta v1", how
            assert module.__name__ == f"{root}.parts.eta", how
            assert _of_the_version(module.__file__, root, "parts/eta.py"), how
        found = plugin.invoke_func("spec", "beta")
        assert found.name == f"{root}.parts.beta"
        assert _of_the_version(found.origin, root, "parts/beta.py")
        assert plugin.invoke_func("spec", "nope") is None
        # other names pass through unchanged, errors included
        assert plugin.invoke_func("outside", "json") is sys.modules["json"]
        with pytest.raises(ModuleNotFoundError, match="no_such_module_anywhere"):
            plugin.invoke_func("outside", "no_such_module_anywhere")
        # the host's package was neither used nor extended nor replaced
        assert _host_modules() == before
        assert sys.modules[f"{NAME}.parts.alpha"].WHO == "host alpha"
    finally:
        swapper.close()
    assert _host_modules() == before


def test_two_versions_alive_each_import_their_own(
        tmp_path: Path, build_plugin: Callable[..., BuildResult]) -> None:
    """While version 1 is still alive beside version 2, each one's computed imports of modules
    neither had imported yet reach its own files."""
    plugin_dir = _write_plugin(tmp_path / "plugins", "v1")
    build_plugin(plugin_dir, tmp_path / "bin")
    swapper = PluginManagerSwapper(tmp_path / "bin", free_delay=60,
                                   runtime_dir=tmp_path / "runtime")
    try:
        swapper.load_plugins()
        old = swapper.current().find_plugin(NAME)
        _write_plugin(tmp_path / "plugins", "v2")
        build_plugin(plugin_dir, tmp_path / "bin")
        assert set(swapper.reload().values()) == {"ok"}
        new = swapper.current().find_plugin(NAME)
        assert old.lookup("__name__") != new.lookup("__name__")
        for short in ("beta", "gamma"):
            assert new.invoke_func("by_dunder", short).WHO == f"plugin {short} v2"
            assert old.invoke_func("by_dunder", short).WHO == f"plugin {short} v1"
            assert old.invoke_func("by_import_module", short).WHO == f"plugin {short} v1"
            assert new.invoke_func("by_import_module", short).WHO == f"plugin {short} v2"
        assert new.lookup("FIRST").WHO == "plugin alpha v2"
        assert old.lookup("FIRST").WHO == "plugin alpha v1"
        assert NAME not in sys.modules, "a computed import reached for a host package"
    finally:
        swapper.close()


def test_generated_helper_ships_only_when_needed(
        tmp_path: Path, build_plugin: Callable[..., BuildResult]) -> None:
    """A plugin without computed imports gets no _hotswap_imports module in its artifact."""
    from hotswap_runtime.artifact import read_artifact

    plugin_dir = _write_plugin(tmp_path / "plugins", "v1")
    helper = f"{NAME}/_hotswap_imports.py"
    assert helper in read_artifact(build_plugin(plugin_dir, tmp_path / "bin").artifact).files
    plain = tmp_path / "plain" / "plainplug"
    plain.mkdir(parents=True)
    (plain / "__init__.py").write_text('import importlib\nJSON = importlib.import_module("json")\n'
                                       + HOOKS)
    files = read_artifact(build_plugin(plain, tmp_path / "bin").artifact).files
    assert "plainplug/_hotswap_imports.py" not in files


def test_dotted_real_name(tmp_path: Path, build_plugin: Callable[..., BuildResult]) -> None:
    """A plugin whose real name is app.nested maps app.nested.* to its version; __import__
    without a fromlist, which would return the host's "app", fails saying what to write."""
    app = tmp_path / "src" / "app"
    plugin = app / "nested"
    plugin.mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (plugin / "part.py").write_text("WHO = 'nested part'\n")
    (plugin / "__init__.py").write_text(textwrap.dedent('''\
        import importlib

        def load(name):
            return importlib.import_module("app.nested." + name)

        def dunder(name, fromlist):
            return __import__("app.nested." + name, fromlist=fromlist)

        def as_the_build_suggests():
            # what the build asks for instead of __import__("app.nested.part")
            return importlib.import_module(".part", __package__)
        ''') + HOOKS)
    build_plugin(plugin, tmp_path / "bin")
    swapper = PluginManagerSwapper(tmp_path / "bin", free_delay=0,
                                   runtime_dir=tmp_path / "runtime")
    try:
        swapper.load_plugins()
        nested = swapper.current().find_plugin("nested")
        root = nested.lookup("__name__")
        assert nested.invoke_func("load", "part").__name__ == f"{root}.part"
        assert nested.invoke_func("dunder", "part", ["WHO"]).WHO == "nested part"
        assert nested.invoke_func("as_the_build_suggests") is nested.invoke_func("load", "part")
        with pytest.raises(ImportError, match=r'plugin "nested": __import__\(\'app.nested.part\'\) '
                           r"without a fromlist returns the host package 'app', not this "
                           r"version; pass a fromlist \(__import__\('app.nested.part', "
                           r"fromlist=\['\*'\]\)\) or call importlib.import_module\("
                           r"'app.nested.part'\), and use the module either returns \(this "
                           r"version's 'app.nested.part'\) instead of the top-level package$"):
            nested.invoke_func("dunder", "part", [])
        assert "app" not in sys.modules
    finally:
        swapper.close()
