"""End to end: plugins built by the real ``hotswap build`` loaded, reloaded and freed by the runtime."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import time
import traceback
import types
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotswap_runtime import HotswapError, PluginManagerSwapper

HOOKS = '''\
import hotswap_e2e_events as _ev

CompileTimeString = "none"

def on_load(data):
    _ev.log.append((NAME, "on_load"))

def on_init(vault):
    _ev.log.append((NAME, "on_init"))

def on_free():
    _ev.log.append((NAME, "on_free"))

def export():
    return EXPORT

def import_():
    return DEPS

def invoke_func(name, *params):
    if name == "stamp":
        return CompileTimeString
    return None

def reloadable():
    return True
'''


def write_plugin(root: Path, name: str, body: str = "", files: dict[str, str] | None = None) -> Path:
    """Write plugin ``name`` under ``root``: the seven hooks, then ``body``, plus extra files."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    head = f'NAME = "{name}"\nEXPORT = None\nDEPS = None\n'
    (folder / "__init__.py").write_text(head + HOOKS + textwrap.dedent(body))
    for rel, text in (files or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(textwrap.dedent(text))
    return folder


@pytest.fixture
def events() -> Iterator[list[tuple[str, str]]]:
    module = types.ModuleType("hotswap_e2e_events")
    module.log = []
    sys.modules[module.__name__] = module
    yield module.log
    del sys.modules[module.__name__]


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "src", tmp_path / "bin"


@pytest.fixture
def swapper(dirs: tuple[Path, Path]) -> Iterator[PluginManagerSwapper]:
    dirs[1].mkdir(parents=True, exist_ok=True)
    made = PluginManagerSwapper(dirs[1], free_delay=0)
    yield made
    made.close()


def test_build_load_reload_unchanged(dirs, events, build_plugin, swapper) -> None:
    """A new -X stamp reloads as ok, an identical rebuild as unchanged; the old version goes."""
    src, out = dirs
    foo = write_plugin(src, "foo", "def live_stamp():\n    return CompileTimeString\n")
    build_plugin(foo, out, stamps={"CompileTimeString": "abc"})
    assert str(swapper.load_plugins()) == "foo: ok"
    old_live = swapper.current().vault.live_funcs["live_stamp"]
    assert old_live() == "abc"
    ref = weakref.ref(old_live)
    root = old_live.__module__
    del old_live
    build_plugin(foo, out, stamps={"CompileTimeString": "def"})
    assert str(swapper.reload()) == "foo: ok"
    assert swapper.current().find_plugin("foo").invoke_func("stamp") == "def"
    build_plugin(foo, out, stamps={"CompileTimeString": "def"})
    assert str(swapper.reload()) == "foo: unchanged"
    deadline = 200
    while (gc.collect(), ref() is not None)[1] and deadline:
        deadline -= 1
        time.sleep(0.01)
    assert ref() is None
    assert not [m for m in sys.modules if m == root or m.startswith(root + ".")]


def test_trine_dependencies_and_rewiring(dirs, events, build_plugin, swapper) -> None:
    """gamma -> beta -> alpha load in dependency order; rebuilding alpha re-wires beta and gamma."""
    src, out = dirs
    alpha = write_plugin(src, "alpha", "from runtime_shared import AlphaApi\n"
                                       "EXPORT = AlphaApi(CompileTimeString)\n")
    write_plugin(src, "beta", "from runtime_shared import AlphaApi\n"
                              "class Deps:\n    alpha: AlphaApi\nDEPS = Deps()\n"
                              "EXPORT = DEPS\n")
    write_plugin(src, "gamma", "from typing import Any\n"
                               "class Deps:\n    beta: Any\nDEPS = Deps()\n")
    for name in ("gamma", "beta", "alpha"):
        build_plugin(src / name, out, stamps={"CompileTimeString": "1"} if name == "alpha" else None)
    swapper.load_plugins()
    manager = swapper.current()
    assert [p.name for p in manager.plugins()] == ["alpha", "beta", "gamma"]
    assert manager.find_plugin("gamma").lookup("DEPS").beta.alpha.hello() == "alpha 1"
    build_plugin(alpha, out, stamps={"CompileTimeString": "2"})
    assert str(swapper.reload()) == "alpha: ok, beta: ok, gamma: ok"
    assert swapper.current().find_plugin("gamma").lookup("DEPS").beta.alpha.hello() == "alpha 2"
    for _ in range(500):  # the replaced versions are freed by the swapper's thread
        if len([e for e in events if e[1] == "on_free"]) == 3:
            break
        time.sleep(0.01)
    events.clear()
    swapper.close()
    assert [e for e in events if e[1] == "on_free"] == [("gamma", "on_free"), ("beta", "on_free"),
                                                         ("alpha", "on_free")]


def test_traceback_shows_the_lines_of_the_version_that_ran(dirs, events, build_plugin) -> None:
    """Version 1's traceback shows version 1's line even after version 2 changed the file."""
    src, out = dirs
    out.mkdir(parents=True)
    swapper = PluginManagerSwapper(out, free_delay=3600)  # version 1 stays alive meanwhile
    foo = write_plugin(src, "foo", "", {"work.py": "def live_fail():\n    raise ValueError('one')\n"})
    build_plugin(foo, out)
    swapper.load_plugins()
    v1 = swapper.current().vault.live_funcs["live_fail"]
    write_plugin(src, "foo", "", {"work.py": "\n\ndef live_fail():\n    raise ValueError('two')\n"})
    build_plugin(foo, out)
    swapper.reload()
    v2 = swapper.current().vault.live_funcs["live_fail"]
    texts = []
    for fn in (v1, v2):
        try:
            fn()
        except ValueError as exc:
            texts.append("".join(traceback.format_exception(exc)))
    assert "raise ValueError('one')" in texts[0] and "line 2" in texts[0]
    assert "raise ValueError('two')" in texts[1] and "line 4" in texts[1]
    assert "/foo#" in texts[0] and "/foo/work.py" in texts[0]
    swapper.close()


def test_include_files_through_importlib_resources(dirs, events, build_plugin, swapper) -> None:
    """Files shipped with --include are read through importlib.resources.files(__package__)."""
    src, out = dirs
    foo = write_plugin(src, "foo", "import importlib.resources\n"
                                   "def live_read():\n"
                                   "    return importlib.resources.files(__package__)"
                                   ".joinpath('data/msg.txt').read_text()\n",
                       {"data/msg.txt": "shipped\n"})
    build_plugin(foo, out, include=r"\.txt$")
    swapper.load_plugins()
    assert swapper.current().vault.live_funcs["live_read"]() == "shipped\n"


def test_cli_build_then_load(dirs, events, swapper) -> None:
    """The real hotswap CLI builds an artifact that the runtime loads; a broken plugin fails the build."""
    src, out = dirs
    foo = write_plugin(src, "foo")
    hotswap = Path(sys.executable).with_name("hotswap")
    done = subprocess.run([str(hotswap), "build", str(foo), str(out), "--", "-X", "CompileTimeString=cli"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(out / "foo.hsp")
    swapper.load_plugins()
    assert swapper.current().find_plugin("foo").invoke_func("stamp") == "cli"


def test_static_linking_end_to_end(dirs, events, build_plugin, tmp_path: Path) -> None:
    """Plugins glued with --staticLinking load in static linking mode; reload is refused."""
    src, _ = dirs
    glue = tmp_path / "glue"
    glue.mkdir()
    for name in ("sa", "sb"):
        write_plugin(src, name, f"def live_{name}():\n    return '{name}'\n")
        build_plugin(src / name, glue, static_linking=True)
    sys.path[:0] = [str(src), str(glue)]
    try:
        from hotswap_static_plugins import HOTSWAP_STATIC_PLUGINS

        swapper = PluginManagerSwapper(tmp_path / "unused", static_plugins=HOTSWAP_STATIC_PLUGINS,
                                       free_delay=0)
        assert str(swapper.load_plugins()) == "sa: ok, sb: ok"
        assert swapper.current().vault.live_funcs["live_sb"]() == "sb"
        with pytest.raises(HotswapError, match="running under static linking mode"):
            swapper.reload()
        swapper.close()
    finally:
        del sys.path[:2]
        for name in [m for m in sys.modules if m.split(".")[0] in ("sa", "sb")
                     or m.startswith("hotswap_static_plugin")]:
            del sys.modules[name]


def test_optimised_bytecode_from_the_artifact_runs(dirs, events, build_plugin, swapper) -> None:
    """With -O the artifact's optimised bytecode runs (asserts stripped): nothing is recompiled."""
    src, out = dirs
    foo = write_plugin(src, "foo", "def live_check():\n    assert False, 'asserts are on'\n"
                                   "    return 'optimised'\n")
    build_plugin(foo, out, optimize=1)
    swapper.load_plugins()
    assert swapper.current().vault.live_funcs["live_check"]() == "optimised"


def test_own_package_references_work_when_mounted(dirs, events, build_plugin, swapper) -> None:
    """Absolute imports of the plugin's own package, importlib.resources.files("foo") and
    pkgutil.get_data("foo", ...) all reach the mounted version after the build's rewrite."""
    src, out = dirs
    foo = write_plugin(src, "foo", '''
        import importlib
        import importlib.resources
        import pkgutil
        import foo
        import foo.sub as sub_alias
        from foo import sub
        from foo.sub import VALUE

        def live_probe():
            return (
                foo.NAME,
                sub_alias.VALUE,
                sub.VALUE,
                VALUE,
                importlib.import_module("foo.sub").VALUE,
                importlib.resources.files("foo").joinpath("data/msg.txt").read_text(),
                pkgutil.get_data("foo", "data/msg.txt"),
            )
        ''', {"sub.py": "VALUE = 'sub'\n", "data/msg.txt": "hi\n"})
    build_plugin(foo, out, include=r"\.txt$")
    swapper.load_plugins()
    probe = swapper.current().vault.live_funcs["live_probe"]
    assert probe() == ("foo", "sub", "sub", "sub", "sub", "hi\n", b"hi\n")
    assert probe.__module__.startswith("_hotswap_foo_")
