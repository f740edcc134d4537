"""Real packages that import parts of themselves by computed names, turned into plugins.

pygments finds lexers, formatters and styles with ``__import__(module_name, None, None,
["__all__"])``, docutils its readers, parsers, writers, languages and directives with
``importlib.import_module("docutils.writers." + name)``, mistune its plugins by names kept in a
dict (at import time: its root package does it), babel its extractors with
``__import__(module, {}, {}, [attrname])`` or through the entry points of its installed
distribution (``importlib.metadata.entry_points``). Each package is copied from site-packages (the pinned
release in the ``dev`` extra) into a plugin folder with a probe module, built with the real
``hotswap`` CLI, loaded by the real runtime, called, compared with the same release imported
normally by the host, reloaded with a new stamp and freed. The host of the in-process tests has
its own copy imported, which the plugin must never use; a subprocess hides the host's copy
(``-I`` and a meta-path blocker) and the plugin must work all the same.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import types
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_real_packages import HOOKS, HOTSWAP, _wait_until

from hotswap_runtime import PluginManagerSwapper

PROBE_MODULE = "hotswap_probe"


@dataclass(frozen=True)
class Case:
    """One package: its probe module's source and how to copy and build it.

    The probe defines ``probe()``, plain values computed through the package (compared with the
    host's copy), and ``reached()``, the modules the package's computed imports returned.
    """

    package: str
    probe: str
    include: str | None = None
    keep: Callable[[str, str], bool] | None = None  # (folder relative to the package, name)


PYGMENTS = Case("pygments", '''\
import sys

from pygments import highlight
from pygments.formatters import get_formatter_by_name
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.styles import get_style_by_name

CODE = "def f(x):\\n    return x + 1  # hot\\n"


def probe():
    html = get_formatter_by_name("html", style="monokai")
    return {
        "html": highlight(CODE, get_lexer_by_name("python"), html),
        "css": html.get_style_defs(".hl"),
        "rust": get_lexer_for_filename("main.rs").name,
        "friendly": get_style_by_name("friendly").background_color,
        "latex": highlight(CODE, get_lexer_by_name("py"), get_formatter_by_name("latex")),
    }


def reached():
    return [sys.modules[type(get_lexer_by_name("toml")).__module__],
            sys.modules[get_style_by_name("zenburn").__module__],
            sys.modules[type(get_formatter_by_name("rtf")).__module__]]
''')

DOCUTILS = Case("docutils", '''\
import sys

from docutils.core import publish_string
from docutils.languages import get_language
from docutils.parsers import get_parser_class
from docutils.readers import get_reader_class
from docutils.writers import get_writer_class

SOURCE = """\\
Hot swap
========

.. note:: *computed* imports

.. image:: x.png

- one
- two
"""
SETTINGS = {"output_encoding": "unicode", "_disable_config": True, "report_level": 5,
            "language_code": "de"}


def probe():
    # the HTML writers read their template and stylesheets from beside their modules
    return {writer: publish_string(SOURCE, writer=writer, settings_overrides=SETTINGS)
            for writer in ("pseudoxml", "xml", "manpage", "html5", "html4")}


def reached():
    return [sys.modules[get_writer_class("null").__module__],
            sys.modules[get_parser_class("rst").__module__],
            sys.modules[get_reader_class("pep").__module__],
            get_language("fr")]
''', include=r"\.(txt|css)$")

MISTUNE = Case("mistune", '''\
import sys

import mistune
from mistune.plugins import import_plugin

TEXT = """\\
# Title

| a | b |
|---|---|
| 1 | 2 |

~~gone~~ and a note[^1] and ==marked==

- [x] done

[^1]: the note
"""


def probe():
    extended = mistune.create_markdown(plugins=["task_lists", "mark", "abbr", "def_list"])
    return {"html": mistune.html(TEXT), "extended": extended(TEXT)}


def reached():
    return [sys.modules[import_plugin(name).__module__] for name in ("ruby", "spoiler", "math")]
''')


def _babel_data(folder: str, name: str) -> bool:
    # the locale data the probe needs (a few of its thousand files keep the copy and build fast)
    return folder != "locale-data" or name.split(".")[0] in ("root", "en", "en_US", "de", "de_DE")


BABEL = Case("babel", '''\
import io
import sys
from datetime import date

from babel import Locale
from babel.dates import format_date
from babel.localedata import load
from babel.messages._compat import find_entrypoints
from babel.messages.extract import extract
from babel.messages.pofile import normalize
from babel.numbers import format_currency, format_decimal

PYTHON = b"""\\
_("hello")
ngettext("one apple", "%(n)d apples", n)
# NOTE: for translators
gettext("bye")
"""
JAVASCRIPT = b"""\\
// NOTE: a greeting
gettext('hi ' + 'there');
ngettext("a file", "files", count);
"""


def _listed(found):
    return [[line, message if isinstance(message, str) else list(message), comments]
            for line, message, comments, _ in found]


def probe():
    # extraction methods named "module:function", which babel imports by computed names
    python = extract("babel.messages.extract:extract_python", io.BytesIO(PYTHON),
                     comment_tags=["NOTE:"])
    javascript = extract("babel.messages.extract:extract_javascript", io.BytesIO(JAVASCRIPT),
                         comment_tags=["NOTE:"])
    # a method by name: the entry points of the host's installed babel, if any, else built-in
    by_name = extract("python", io.BytesIO(PYTHON), comment_tags=["NOTE:"])
    return {"python": _listed(python), "javascript": _listed(javascript),
            "by_name": _listed(by_name),
            "po": normalize("a long message that the po writer wraps", width=20),
            # the locale data: pickles in locale-data/ beside the modules
            "locale": [format_decimal(1234.5, locale="de_DE"),
                       format_currency(12.5, "EUR", locale="de_DE"),
                       format_date(date(2024, 3, 5), format="full", locale="de_DE"),
                       format_date(date(2024, 3, 5), locale="en_US"),
                       Locale.parse("de_DE").display_name,
                       Locale.parse("en_US").get_display_name("de")]}


def _classes(value, found):
    if isinstance(value, dict):
        for item in value.values():
            _classes(item, found)
    elif type(value).__module__ != "builtins":
        found.add(type(value))
    return found


def extractor(fileobj, keywords, comment_tags, options):
    yield 1, "_", __name__, []


def reached():
    # babel imports "babel.<module>:<function>" extractors with __import__(module, {}, {}, [f])
    ((_, module, _, _),) = extract("babel.hotswap_probe:extractor", io.BytesIO(b""))
    # and the installed babel's entry points name babel.messages.extract:extract_python
    python = dict(find_entrypoints("babel.extractors"))["python"]()
    # and the locale data's pickles name babel.localedata.Alias, babel.plural.PluralRule...
    pickled = _classes(load("root", merge_inherited=False), set())
    return [sys.modules[module], sys.modules[python.__module__],
            *(sys.modules[cls.__module__] for cls in pickled)]
''', include=r"\.dat$", keep=_babel_data)

CASES = [PYGMENTS, DOCUTILS, MISTUNE, BABEL]


def _copy_package(case: Case, plugins: Path) -> Path:
    """Copy the installed package into ``plugins/<name>``, add the hooks and the probe."""
    spec = importlib.util.find_spec(case.package)
    assert spec is not None and spec.submodule_search_locations, f"{case.package} is not installed"
    source = Path(next(iter(spec.submodule_search_locations)))

    def ignore(folder: str, names: list[str]) -> list[str]:
        rel = os.path.relpath(folder, source)
        return [n for n in names if n == "__pycache__" or n.endswith(".pyc")
                or (case.keep is not None and not case.keep(rel, n))]

    target = plugins / case.package
    shutil.copytree(source, target, ignore=ignore)
    init = target / "__init__.py"
    init.write_text(init.read_text(encoding="utf-8") + HOOKS, encoding="utf-8")
    (target / f"{PROBE_MODULE}.py").write_text(case.probe, encoding="utf-8")
    return target


def _build(case: Case, plugin_dir: Path, out: Path, cache: Path, *extra: str) -> Path:
    flags = ["--include", case.include] if case.include else []
    result = subprocess.run(
        [str(HOTSWAP), "build", *flags, str(plugin_dir), str(out), "--", *extra],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "HOTSWAP_CACHE_DIR": str(cache)})
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class Built:
    case: Case
    plugin_dir: Path
    artifact: Path
    cache: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[Case], Built]]:
    """``built(case)``: the package copied and built once per module (its build cache kept, so
    a rebuild with a new stamp redoes one file)."""
    cache = tmp_path_factory.mktemp("package-build-cache")
    done: dict[str, Built] = {}

    def get(case: Case) -> Built:
        if case.package not in done:
            # each package in a folder of its own: packages side by side are sibling plugins
            plugins = tmp_path_factory.mktemp(f"{case.package}-plugins")
            plugin_dir = _copy_package(case, plugins)
            artifact = _build(case, plugin_dir, plugins.parent / f"{plugins.name}-bin", cache)
            done[case.package] = Built(case, plugin_dir, artifact, cache)
        return done[case.package]

    yield get


def _host_probe(case: Case) -> Any:
    """What the probe returns on the host's own copy of the package, imported normally."""
    module = types.ModuleType(f"_host_probe_{case.package}")
    exec(compile(case.probe, f"<host probe of {case.package}>", "exec"), module.__dict__)
    return json.loads(json.dumps(module.probe()))


def _host_modules(package: str) -> dict[str, Any]:
    return {k: v for k, v in sys.modules.items() if k == package or k.startswith(package + ".")}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.package)
def test_package_as_a_plugin_beside_the_hosts_copy(
        case: Case, built: Callable[[Case], Built], tmp_path: Path) -> None:
    """Built, loaded, called (same results as the host's copy), reloaded and freed, and never
    a module of the host's copy: every module its computed imports reach is the version's."""
    package = case.package
    build = built(case)
    expected = _host_probe(case)
    host_dir = str(Path(importlib.util.find_spec(package).origin).parent)
    host_before = _host_modules(package)
    assert host_before, f"the host should have its own {package} imported for this test"

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy2(build.artifact, bin_dir)
    swapper = PluginManagerSwapper(bin_dir, free_delay=0, runtime_dir=tmp_path / "runtime")
    try:
        swapper.load_plugins()
        plugin = swapper.current().find_plugin(package)
        root = plugin.lookup("__name__")
        assert plugin.invoke_func(f"{PROBE_MODULE}:probe") == expected
        reached = plugin.invoke_func(f"{PROBE_MODULE}:reached")
        for module in reached:
            assert module.__name__.startswith(root + "."), module
            assert sys.modules[module.__name__] is module
            assert not module.__file__.startswith(host_dir), module.__file__
            assert f"/{package}/" in module.__file__ and "#" in module.__file__, module.__file__
        assert _host_modules(package) == host_before, "the plugin imported the host's copy"
        old_invoke = weakref.ref(plugin.lookup("invoke_func"))
        old_modules = [m for m in sys.modules if m == root or m.startswith(root + ".")]
        # new code: every module the computed imports reached gets a line the host's copy and
        # version 1 lack (restored afterwards: the built copy is shared by this module's tests)
        edited = {build.plugin_dir.parent / m.__file__.split("#", 1)[1].split("/", 1)[1]
                  for m in reached}
        del plugin, reached, module
        originals = {path: path.read_bytes() for path in edited}
        try:
            for path in edited:
                path.write_bytes(originals[path] + b'\nHOTSWAP_EDIT = "v2"\n')
            _build(case, build.plugin_dir, bin_dir, build.cache, "-X", "CompileTimeString=v2")
        finally:
            for path, text in originals.items():
                path.write_bytes(text)
        assert set(swapper.reload().values()) == {"ok"}
        plugin = swapper.current().find_plugin(package)
        assert plugin.invoke_func("stamp") == "v2"
        assert plugin.lookup("__name__") != root
        assert plugin.invoke_func(f"{PROBE_MODULE}:probe") == expected
        new_root = plugin.lookup("__name__")
        # the new version's computed imports reach its own, edited modules
        for module in plugin.invoke_func(f"{PROBE_MODULE}:reached"):
            assert module.__name__.startswith(new_root + "."), module
            assert getattr(module, "HOTSWAP_EDIT", None) == "v2", module
        assert not any(hasattr(m, "HOTSWAP_EDIT") for m in host_before.values())
        del plugin, module
        assert _wait_until(lambda: old_invoke() is None), f"version 1 of {package} was never freed"
        assert not [m for m in old_modules if m in sys.modules]
        assert _host_modules(package) == host_before
    finally:
        swapper.close()
    gc.collect()


HIDDEN_HOST = textwrap.dedent('''\
    import importlib.abc, json, sys

    package, plugin_dir, runtime_dir = sys.argv[1:4]


    class Hide(importlib.abc.MetaPathFinder):
        """The host has no copy of the package: site-packages' is hidden."""

        def find_spec(self, name, path=None, target=None):
            if name == package or name.startswith(package + "."):
                raise ModuleNotFoundError(f"No module named {name!r} (hidden)", name=name)
            return None


    sys.meta_path.insert(0, Hide())
    try:
        __import__(package)
        hidden = False
    except ModuleNotFoundError:
        hidden = True

    from hotswap_runtime import PluginManagerSwapper

    swapper = PluginManagerSwapper(plugin_dir, free_delay=0, runtime_dir=runtime_dir)
    swapper.load_plugins()
    plugin = swapper.current().find_plugin(package)
    root = plugin.lookup("__name__")
    result = plugin.invoke_func("hotswap_probe:probe")
    reached = [m.__name__ for m in plugin.invoke_func("hotswap_probe:reached")]
    del plugin
    swapper.close()
    print(json.dumps({"hidden": hidden, "root": root, "result": result, "reached": reached,
                      "host": sorted(k for k in sys.modules if k.split(".")[0] == package)}))
    ''')


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.package)
def test_package_as_a_plugin_in_a_host_without_it(
        case: Case, built: Callable[[Case], Built], tmp_path: Path) -> None:
    """A host that has no copy of the package runs the plugin all the same: every computed
    import finds the version's own module."""
    build = built(case)
    expected = _host_probe(case)
    run = subprocess.run([sys.executable, "-I", "-c", HIDDEN_HOST, case.package,
                          str(build.artifact.parent), str(tmp_path / "runtime")],
                         capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["hidden"], "the test's host still imports its own copy"
    assert seen["result"] == expected
    assert seen["reached"] and all(n.startswith(seen["root"] + ".") for n in seen["reached"])
    assert seen["host"] == []
