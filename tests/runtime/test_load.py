"""Loading plugins from hand-made artifacts: lifecycle, vault, isolation of module names."""

from __future__ import annotations

import importlib.resources
import sys
import traceback
from pathlib import Path

import pytest
from handmade import hooks_source, pack_plugin

from hotswap_runtime import Details, Plugin, PluginManager, Vault


def test_one_plugin_export_invoke_live_names_and_data_bag(plugin_dir: Path, events, make_swapper) -> None:
    """One plugin: invoke_func answers, live functions and types (also from a submodule) reach the vault."""
    pack_plugin(plugin_dir, "foo", {
        "__init__.py": hooks_source("foo", export="{'answer': 42}", extra=(
            "def on_init(vault):\n    vault.data_bag['foo'] = 'ready'\n"
            "def live_hello(who):\n    return 'hello ' + who\n")),
        "jobs.py": "class Live_Job:\n    def __init__(self, n):\n        self.n = n\n"
                   "def live_double(x):\n    return 2 * x\n",
    })
    swapper = make_swapper()
    details = swapper.load_plugins("DATA")
    assert str(details) == "foo: ok"
    assert list(details) == [str(plugin_dir / "foo.hsp")]
    manager = swapper.current()
    assert isinstance(manager, PluginManager)
    plugin = manager.find_plugin("FOO")
    assert isinstance(plugin, Plugin)
    assert plugin.invoke_func("stamp") == "v1"
    assert plugin.invoke_func("echo", 1, 2) == (1, 2)
    assert plugin.lookup("STAMP") == "v1"
    with pytest.raises(LookupError):
        plugin.lookup("nope")
    vault = manager.vault
    assert isinstance(vault, Vault)
    assert vault.live_funcs["live_hello"]("bob") == "hello bob"
    assert vault.live_funcs["live_double"](4) == 8
    assert vault.live_types["Live_Job"](3).n == 3
    assert vault.data_bag == {"foo": "ready"}
    assert events.data == [("foo", "DATA")]
    assert plugin.note == "ok" and plugin.deps == () and plugin.build_id
    assert len(plugin.sha256) == 64 and plugin.file == str(plugin_dir / "foo.hsp")
    assert manager.find_plugin("bar") is None


def test_hook_order_and_data_reaches_every_on_load(plugin_dir: Path, events, make_swapper) -> None:
    """Two plugins: steps run per plugin in name order, and data reaches every on_load."""
    for name in ("beta", "alpha"):
        pack_plugin(plugin_dir, name, {"__init__.py": hooks_source(name)})
    swapper = make_swapper()
    swapper.load_plugins({"k": 1})
    assert events.log == [
        ("alpha", "reloadable"), ("beta", "reloadable"),
        ("alpha", "export"), ("beta", "export"),
        ("alpha", "import_"), ("beta", "import_"),
        ("alpha", "on_load"), ("beta", "on_load"),
        ("alpha", "on_init"), ("beta", "on_init"),
    ]
    assert events.data == [("alpha", {"k": 1}), ("beta", {"k": 1})]
    assert [p.name for p in swapper.current().plugins()] == ["alpha", "beta"]
    for name in ("beta", "alpha"):
        pack_plugin(plugin_dir, name, {"__init__.py": hooks_source(name, stamp="v2")})
    swapper.reload("again")
    assert events.data[2:] == [("alpha", "again"), ("beta", "again")]


def test_module_names_unique_per_load_and_show_the_plugin(plugin_dir: Path, events, make_swapper) -> None:
    """The same artifact loaded by two swappers gets two module names showing the plugin name."""
    pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo"), "sub/__init__.py": "",
                                    "sub/mod.py": "from .. import STAMP\nVALUE = STAMP + '!'\n"})
    first, second = make_swapper(), make_swapper()
    first.load_plugins()
    second.load_plugins()
    a = first.current().find_plugin("foo").lookup("__name__")
    b = second.current().find_plugin("foo").lookup("__name__")
    assert a != b and "foo" in a and "foo" in b
    assert a in sys.modules and b in sys.modules
    sub = __import__(f"{a}.sub.mod", fromlist=["VALUE"])
    assert sub.VALUE == "v1!"


def test_sources_only_artifact_compiles(plugin_dir: Path, events, make_swapper) -> None:
    """An artifact without bytecode for this Python is loaded from its sources."""
    pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo", stamp="src")}, bytecode=False)
    swapper = make_swapper()
    swapper.load_plugins()
    assert swapper.current().find_plugin("foo").invoke_func("stamp") == "src"


def test_traceback_shows_member_load_number_and_line(plugin_dir: Path, events, make_swapper) -> None:
    """A traceback from plugin code names the artifact member, the load number and the source line."""
    pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo", extra=(
        "def live_fail():\n    raise KeyError('marker line of version one')\n"))})
    swapper = make_swapper()
    swapper.load_plugins()
    with pytest.raises(KeyError) as info:
        swapper.current().vault.live_funcs["live_fail"]()
    text = "".join(traceback.format_exception(info.value))
    load = swapper.stats()[0].load
    assert f"/foo#{load}/foo/__init__.py" in text
    assert "raise KeyError('marker line of version one')" in text


def test_importlib_resources_reads_included_files(plugin_dir: Path, events, make_swapper) -> None:
    """Data files shipped in the artifact are read through importlib.resources.files(__package__)."""
    pack_plugin(plugin_dir, "foo", {
        "__init__.py": hooks_source("foo", extra=(
            "import importlib.resources\n"
            "def live_read(name):\n"
            "    return importlib.resources.files(__package__).joinpath(name).read_text()\n")),
        "data/greeting.txt": "hi there\n",
        "sub/__init__.py": "import importlib.resources\n"
                           "def names():\n"
                           "    return sorted(p.name for p in importlib.resources.files(__package__).iterdir())\n",
    })
    swapper = make_swapper()
    swapper.load_plugins()
    assert swapper.current().vault.live_funcs["live_read"]("data/greeting.txt") == "hi there\n"
    root = swapper.current().find_plugin("foo").lookup("__name__")
    sub = __import__(f"{root}.sub", fromlist=["names"])
    assert "__init__.py" in sub.names()
    files = importlib.resources.files(root)
    assert (files / "data" / "greeting.txt").read_bytes() == b"hi there\n"
    assert (files / "data").is_dir() and not (files / "missing.txt").is_file()


def test_details_str_sorted_by_plugin_name() -> None:
    """str(details) lists plugin: word pairs sorted by plugin name."""
    details = Details([("/p/zeta.hsp", "zeta", "ok"), ("/p/alpha.hsp", "alpha", "unchanged")])
    assert str(details) == "alpha: unchanged, zeta: ok"
    assert details == {"/p/zeta.hsp": "ok", "/p/alpha.hsp": "unchanged"}


def test_namespace_folder_and_inspect_getsource(plugin_dir: Path, events, make_swapper) -> None:
    """A folder without __init__.py imports as a namespace package; inspect.getsource works."""
    import inspect

    pack_plugin(plugin_dir, "foo", {
        "__init__.py": hooks_source("foo", extra="from .tools.calc import live_add\n"),
        "tools/calc.py": "def live_add(a, b):\n    return a + b\n",
    })
    swapper = make_swapper()
    swapper.load_plugins()
    live_add = swapper.current().vault.live_funcs["live_add"]
    assert live_add(2, 3) == 5
    assert inspect.getsource(live_add) == "def live_add(a, b):\n    return a + b\n"
    assert live_add.__module__.endswith(".tools.calc")


def test_lookup_of_a_missing_symbol_says_where_to_define_it(plugin_dir: Path, events, make_swapper) -> None:
    """Plugin.lookup of a name the root package lacks is a LookupError naming it and the file."""
    pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo")})
    swapper = make_swapper()
    swapper.load_plugins()
    plugin = swapper.current().find_plugin("foo")
    with pytest.raises(LookupError) as info:
        plugin.lookup("nothere")
    assert str(info.value) == ('plugin "foo" has no symbol "nothere" in its root package; define '
                               "it in foo/__init__.py or import it there, and rebuild")
