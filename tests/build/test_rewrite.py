"""The per-file libcst pass: own imports become relative (before/after sources), stamps apply,
and forms that cannot be rewritten are refused with file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hotswap_build.rewrite import rewrite_source
from hotswap_build.scan import FileContext, PluginLayout

LAYOUT = PluginLayout(root=Path("/src/foo"), name="foo", import_name="foo", siblings=("bar",))
NESTED = PluginLayout(root=Path("/src/app/foo"), name="foo", import_name="app.foo",
                      siblings=("app.bar",))


def rewrite(source: str, rel: str = "mod.py", layout: PluginLayout = LAYOUT, **kwargs):
    ctx = FileContext.create(layout, rel, **kwargs)
    scan, out, _ = rewrite_source(textwrap.dedent(source).encode(), ctx)
    return scan, out.decode()


CASES = [
    ("from foo import x\n", "mod.py", "from . import x\n"),
    ("from foo.a.b import x, y as z\n", "mod.py", "from .a.b import x, y as z\n"),
    ("from foo import *\n", "mod.py", "from . import *\n"),
    ("import foo.a as a\n", "mod.py", "from . import a as a\n"),
    ("import foo.a.b as c\n", "sub/mod.py", "from ..a import b as c\n"),
    ("from foo.sub import y\n", "sub/__init__.py", "from ..sub import y\n"),
    ("from foo import (\n    x,  # why\n    y,\n)\n", "mod.py",
     "from . import (\n    x,  # why\n    y,\n)\n"),
    ("import os, foo.a as a, sys\n", "mod.py", "import os, sys; from . import a as a\n"),
    ("def f():\n    from foo.a import x\n    return x\n", "mod.py",
     "def f():\n    from .a import x\n    return x\n"),
    ("try:\n    import foo.fast as impl\nexcept ImportError:\n    impl = None\n", "mod.py",
     "try:\n    from . import fast as impl\nexcept ImportError:\n    impl = None\n"),
    ("import importlib\nm = importlib.import_module('foo.a.b')\n", "sub/mod.py",
     "import importlib\nm = importlib.import_module('..a.b', __package__)\n"),
    ("from importlib import import_module\ndef f():\n    return import_module('foo')\n", "mod.py",
     "from importlib import import_module\ndef f():\n    return import_module('.', __package__)\n"),
    ("import foodstuff\nfrom food import x\nimport os.path as foo\n", "mod.py",
     "import foodstuff\nfrom food import x\nimport os.path as foo\n"),
]


@pytest.mark.parametrize(("before", "rel", "after"), CASES)
def test_own_imports_become_relative(before: str, rel: str, after: str) -> None:
    """Each import form of the plugin's own package is rewritten, comments and layout kept."""
    scan, out = rewrite(before, rel)
    assert out == after
    assert not scan.problems
    assert scan.rewritten == (before != after)


def test_nested_import_name() -> None:
    """A plugin whose real name is dotted (app.foo) has those imports rewritten."""
    _, out = rewrite("from app.foo.a import x\nimport app.foo.b as b\nfrom app import other\n",
                     layout=NESTED)
    assert out == "from .a import x\nfrom . import b as b\nfrom app import other\n"


def test_untouched_file_is_not_parsed() -> None:
    """A file that mentions nothing of interest skips libcst and keeps its bytes."""
    scan, out = rewrite("import os\n\ndef helper():\n    return os.sep\n")
    assert not scan.parsed
    assert out == "import os\n\ndef helper():\n    return os.sep\n"


@pytest.mark.parametrize(("source", "layout", "message"), [
    ("import os\nimport foo.a\n", LAYOUT,
     'plugin "foo": "import foo.a" in foo/mod.py:2 cannot be made relative: it binds the name '
     '"foo"; write "from . import a" (or "import foo.a as a") and use a.… instead'),
    ("import foo\n", LAYOUT,
     'plugin "foo": "import foo" in foo/mod.py:1 imports the plugin\'s own root package by '
     'name, which cannot be made relative; import what you need with "from . import name"'),
    ("from app import foo\n", NESTED,
     'plugin "foo": "from app import foo" in foo/mod.py:1 imports the plugin\'s own root '
     'package by name, which cannot be made relative; import what you need with '
     '"from . import name"'),
    ("\n\nfrom app import bar\n", NESTED,
     'plugin "foo": foo/mod.py:3 imports "app.bar", the package of plugin "bar"; a plugin never '
     "imports another plugin's package: share types through a host-side module and reach "
     "other plugins through export() and import_()"),
    ("import importlib\nimportlib.import_module(f'foo.{x}')\n", LAYOUT,
     'plugin "foo": import_module() in foo/mod.py:2 builds a name inside the plugin\'s own '
     'package "foo", which cannot be made relative; pass a relative name and the package: '
     'import_module("." + name, __package__)'),
])
def test_forms_that_cannot_be_rewritten(source: str, layout: PluginLayout, message: str) -> None:
    """Each refused form names the statement, file:line and the fix."""
    scan, _ = rewrite(source, layout=layout)
    assert scan.problems == (message,)


def test_stamps_replace_module_level_str_constants() -> None:
    """-X sets plain and annotated str constants at module level, nothing else."""
    source = '''\
        NAME = "dev"
        OTHER: str = 'x'  # kept comment
        def f():
            NAME = "local"
        '''
    scan, out = rewrite(source, "__init__.py", stamps={"NAME": 'a "b"', "OTHER": "y"})
    assert out == textwrap.dedent('''\
        NAME = 'a "b"'
        OTHER: str = 'y'  # kept comment
        def f():
            NAME = "local"
        ''')
    assert sorted(scan.stamped) == ["NAME", "OTHER"]


def test_stamps_apply_to_the_root_package_only() -> None:
    """Stamps never touch other modules."""
    scan, out = rewrite('NAME = "dev"\n', "mod.py", stamps={"NAME": "x"})
    assert out == 'NAME = "dev"\n'
    assert scan.stamped == ()
