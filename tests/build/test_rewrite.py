"""The per-file libcst pass: own imports become relative (before/after sources), stamps apply,
and forms that cannot be rewritten are refused with file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hotswap_build.layout import PluginLayout
from hotswap_build.rewrite import rewrite_source
from hotswap_build.scan import FileContext

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
    ("from importlib.resources import files\nt = files('foo').joinpath('a.txt')\n", "mod.py",
     "from importlib.resources import files\nt = files(__package__).joinpath('a.txt')\n"),
    ("import importlib.resources as r\nt = r.read_text('foo.data', 'a.txt')\n", "sub/mod.py",
     "import importlib.resources as r\n"
     "t = r.read_text(__package__.rsplit(\".\", 1)[0] + \".data\", 'a.txt')\n"),
    ("import pkgutil\nd = pkgutil.get_data('foo', 'a.bin')\n", "sub/__init__.py",
     "import pkgutil\nd = pkgutil.get_data(__package__.rsplit(\".\", 1)[0], 'a.bin')\n"),
    ("import importlib.resources\nimportlib.resources.files('foodstuff')\n", "mod.py",
     "import importlib.resources\nimportlib.resources.files('foodstuff')\n"),
    ("import foodstuff\nfrom food import x\nimport os.path as foo\n", "mod.py",
     "import foodstuff\nfrom food import x\nimport os.path as foo\n"),
]


LOAD = "__import__('importlib').import_module"

# the real import name is one identifier, so "import foo" binds the plugin's own root package:
# it binds the mounted one instead, at any depth and in any scope
ROOT_CASES = [
    ("import foo\n", "mod.py", f"foo = {LOAD}('.', __package__)\n"),
    ("import foo\n", "__init__.py", f"foo = {LOAD}('.', __package__)\n"),
    ("import foo as md\n", "sub/deep/mod.py", f"md = {LOAD}('...', __package__)\n"),
    ("import foo.util\n", "sub/__init__.py",
     f"{LOAD}('..util', __package__); foo = {LOAD}('..', __package__)\n"),
    ("import foo.a.b as u\n", "mod.py", "from .a import b as u\n"),
    ("import foo, os\n", "mod.py", f"import os; foo = {LOAD}('.', __package__)\n"),
    ("x = 1; import foo.a; y = foo.a.z  # c\n", "mod.py",
     f"x = 1; {LOAD}('.a', __package__); foo = {LOAD}('.', __package__); y = foo.a.z  # c\n"),
    ("def main():\n    import foo.cli\n    foo.cli.run()\n", "__main__.py",
     f"def main():\n    {LOAD}('.cli', __package__); foo = {LOAD}('.', __package__)\n"
     "    foo.cli.run()\n"),
    ("if TYPE_CHECKING:\n    import foo\n", "mod.py",
     f"if TYPE_CHECKING:\n    foo = {LOAD}('.', __package__)\n"),
    ("class A:\n    import foo as pkg\n", "mod.py",
     f"class A:\n    pkg = {LOAD}('.', __package__)\n"),
    ("m = __import__('foo')\n", "mod.py", f"m = {LOAD}('.', __package__)\n"),
    ("v = __import__('foo.a.b').a\n", "sub/mod.py",
     f"v = ({LOAD}('..a.b', __package__), {LOAD}('..', __package__))[1].a\n"),
    ("m = __import__('food')\n", "mod.py", "m = __import__('food')\n"),
]


@pytest.mark.parametrize(("before", "rel", "after"), ROOT_CASES)
def test_own_root_package_binds_the_mounted_one(before: str, rel: str, after: str) -> None:
    """import foo, import foo.x, their aliases and __import__("foo.x") keep their meaning."""
    scan, out = rewrite(before, rel)
    assert out == after
    assert not scan.problems
    compile(out, rel, "exec")


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


def helper(rel: str, fn: str) -> str:
    """What the callee of a computed import becomes in file ``rel``."""
    dots = "." * (rel.count("/") + 1)
    return f"{LOAD}('{dots}_hotswap_imports', __package__).{fn}"


# every import_module/__import__/find_spec call that may name the plugin's own package through
# a name known only at run time: the callee becomes the generated helper, the arguments stay
COMPUTED_CASES = [
    ("import importlib\nm = importlib.import_module('foo.writers.' + name)\n", "mod.py",
     f"import importlib\nm = {helper('mod.py', 'import_module')}('foo.writers.' + name)\n"),
    ("from importlib import import_module as im\ndef f(n):\n    return im(n)\n",
     "sub/deep/mod.py",
     "from importlib import import_module as im\ndef f(n):\n"
     f"    return {helper('sub/deep/mod.py', 'import_module')}(n)\n"),
    ("mod = __import__(module_name, None, None, ['__all__'])\n", "lexers/__init__.py",
     f"mod = {helper('lexers/__init__.py', 'dunder_import')}(module_name, None, None, "
     "['__all__'])\n"),
    ("import importlib.util\ns = importlib.util.find_spec(n)\n", "mod.py",
     f"import importlib.util\ns = {helper('mod.py', 'find_spec')}(n)\n"),
    ("from importlib import util\ns = util.find_spec(n)  # c\n", "mod.py",
     f"from importlib import util\ns = {helper('mod.py', 'find_spec')}(n)  # c\n"),
    ("from importlib.util import find_spec as fs\ns = fs('foo.a')\n", "mod.py",
     f"from importlib.util import find_spec as fs\ns = {helper('mod.py', 'find_spec')}('foo.a')\n"),
    ("import importlib as il\nm = il.import_module(\n    name,\n    package=pkg,\n)\n", "mod.py",
     f"import importlib as il\nm = {helper('mod.py', 'import_module')}(\n    name,\n"
     "    package=pkg,\n)\n"),
    ("import importlib\nm = importlib.import_module('.x', 'foo.sub')\n", "mod.py",
     f"import importlib\nm = {helper('mod.py', 'import_module')}('.x', 'foo.sub')\n"),
    ("x = __import__('foo.a', globals(), None, ['b'])\n", "mod.py",
     f"x = {helper('mod.py', 'dunder_import')}('foo.a', globals(), None, ['b'])\n"),
    ("import importlib\nm = importlib.import_module('foo.a', package='x')\n", "mod.py",
     f"import importlib\nm = {helper('mod.py', 'import_module')}('foo.a', package='x')\n"),
    ("import importlib\nm = importlib.import_module(*args)\n", "mod.py",
     f"import importlib\nm = {helper('mod.py', 'import_module')}(*args)\n"),
    # entry points of the host's installed copy name the real package's modules
    ("from importlib.metadata import entry_points\neps = entry_points(group='g', name='x')\n",
     "mod.py", "from importlib.metadata import entry_points\n"
     f"eps = {helper('mod.py', 'entry_points')}(group='g', name='x')\n"),
    ("import importlib.metadata\neps = importlib.metadata.entry_points()\n", "sub/mod.py",
     f"import importlib.metadata\neps = {helper('sub/mod.py', 'entry_points')}()\n"),
    ("from importlib import metadata as md\neps = md.entry_points(group=g)\n", "mod.py",
     f"from importlib import metadata as md\neps = {helper('mod.py', 'entry_points')}(group=g)\n"),
    # pickles shipped with the package name its classes by the real package's modules
    ("import pickle\nwith open(p, 'rb') as f:\n    data = pickle.load(f)\n", "mod.py",
     f"import pickle\nwith open(p, 'rb') as f:\n    data = {helper('mod.py', 'pickle_load')}(f)\n"),
    ("from pickle import loads as unpack\nx = unpack(b, encoding='bytes')\n", "mod.py",
     "from pickle import loads as unpack\n"
     f"x = {helper('mod.py', 'pickle_loads')}(b, encoding='bytes')\n"),
    ("import pickle as pk\nu = pk.Unpickler(f)\n", "a/b.py",
     f"import pickle as pk\nu = {helper('a/b.py', 'unpickler')}(f)\n"),
    ("import pickle\nb = pickle.dumps(x)\nclass U(pickle.Unpickler): pass\n", "mod.py", None),
    # every other spelling of the same functions: builtins.__import__, importlib.__import__,
    # a star import, a literal getattr or __builtins__ lookup
    ("import builtins\nm = builtins.__import__(n, None, None, ['x'])\n", "mod.py",
     f"import builtins\nm = {helper('mod.py', 'dunder_import')}(n, None, None, ['x'])\n"),
    ("import importlib as il\nm = il.__import__(n, fromlist=['x'])\n", "mod.py",
     f"import importlib as il\nm = {helper('mod.py', 'dunder_import')}(n, fromlist=['x'])\n"),
    ("from builtins import __import__ as imp\nm = imp(n, fromlist=['x'])\n", "mod.py",
     "from builtins import __import__ as imp\n"
     f"m = {helper('mod.py', 'dunder_import')}(n, fromlist=['x'])\n"),
    ("from importlib import *\nm = import_module(n)\n", "mod.py",
     f"from importlib import *\nm = {helper('mod.py', 'import_module')}(n)\n"),
    ("from importlib.util import *\ns = find_spec(n)\n", "mod.py",
     f"from importlib.util import *\ns = {helper('mod.py', 'find_spec')}(n)\n"),
    ("import importlib\nm = getattr(importlib, 'import_module')(n)\n", "mod.py",
     f"import importlib\nm = {helper('mod.py', 'import_module')}(n)\n"),
    ("m = __builtins__['__import__'](n, fromlist=['x'])\n", "mod.py",
     f"m = {helper('mod.py', 'dunder_import')}(n, fromlist=['x'])\n"),
    ("import builtins\nm = vars(builtins)['__import__'](n, fromlist=['x'])\n", "mod.py",
     f"import builtins\nm = {helper('mod.py', 'dunder_import')}(n, fromlist=['x'])\n"),
    # an import function used as a value: nothing tells what it will be called with
    ("import importlib\nf = importlib.import_module\nm = f(n)\n", "mod.py",
     f"import importlib\nf = {helper('mod.py', 'import_module')}\nm = f(n)\n"),
    ("import importlib\nms = list(map(importlib.import_module, names))\n", "sub/mod.py",
     f"import importlib\nms = list(map({helper('sub/mod.py', 'import_module')}, names))\n"),
    ("from importlib import import_module as im\nLOADERS = {'a': im}\n", "mod.py",
     f"from importlib import import_module as im\nLOADERS = {{'a': {helper('mod.py', 'import_module')}}}\n"),
    ("import importlib.util\nfs = importlib.util.find_spec\n", "mod.py",
     f"import importlib.util\nfs = {helper('mod.py', 'find_spec')}\n"),
    ("import functools\nload = functools.partial(__import__, fromlist=['x'])\n", "mod.py",
     f"import functools\nload = functools.partial({helper('mod.py', 'dunder_import')}, "
     "fromlist=['x'])\n"),
    ("import builtins\nreal = builtins.__import__\n", "mod.py",
     f"import builtins\nreal = {helper('mod.py', 'dunder_import')}\n"),
    ("import importlib\nf = getattr(importlib, 'import_module', None)\n", "mod.py",
     f"import importlib\nf = {helper('mod.py', 'import_module')}\n"),
    # installing an import hook assigns the function: that stays as written
    ("import builtins\nbuiltins.__import__ = hook\n", "mod.py", None),
    ("import builtins\nx = getattr(builtins, name)\n", "mod.py", None),
    # literal names of host modules, relative names within the caller's own package, and
    # functions that are not importlib's stay as they are
    ("import importlib\nm = importlib.import_module('os.path')\n", "mod.py", None),
    ("import importlib\nm = importlib.import_module('.x', __package__)\n", "mod.py", None),
    ("m = __import__('x', globals(), None, ['y'], 1)\n", "mod.py", None),
    ("m = obj.import_module(name)\nn = find_spec(name)\n", "mod.py", None),
    ("def __import__(name, *a):\n    return name\nm = __import__(n)\n", "mod.py", None),
    ("from importlib import util\nimport importlib.util as u\nu.find_spec('json')\n", "mod.py",
     None),
]


@pytest.mark.parametrize(("before", "rel", "after"), COMPUTED_CASES)
def test_computed_imports_call_the_generated_helper(before: str, rel: str, after: str | None
                                                     ) -> None:
    """Computed names go through _hotswap_imports; literal host names are left alone."""
    scan, out = rewrite(before, rel)
    assert out == (after or before)
    assert not scan.problems
    assert scan.computed == (after is not None)
    compile(out, rel, "exec")


def test_computed_imports_in_a_nested_plugin() -> None:
    """A dotted real name (app.foo) is rewritten the same way; the helper maps app.foo.*."""
    scan, out = rewrite("import importlib\nm = importlib.import_module('app.foo.' + n)\n",
                        layout=NESTED)
    assert out == f"import importlib\nm = {helper('mod.py', 'import_module')}('app.foo.' + n)\n"
    assert scan.computed


@pytest.mark.parametrize(("source", "layout", "message"), [
    ("import os\nimport app.foo.a\n", NESTED,
     'plugin "foo": "import app.foo.a" in foo/mod.py:2 cannot be made relative: it binds the '
     'name "app"; write "from . import a" (or "import app.foo.a as a") and use a.… instead'),
    ("import app.foo\n", NESTED,
     'plugin "foo": "import app.foo" in foo/mod.py:1 imports the plugin\'s own root package by '
     'name, which cannot be made relative; import what you need with "from . import name"'),
    ("x = __import__('app.foo.a')\n", NESTED,
     'plugin "foo": __import__("app.foo.a") in foo/mod.py:1 names the plugin\'s own package, '
     "which the runtime mounts under another name, and cannot be rewritten (it returns the "
     'host package "app"); write importlib.import_module(".a", __package__) instead, and use '
     'the module it returns ("app.foo.a" of this version) where the code reached it through '
     '"app"'),
    ("if x:\n    def live_f():\n        pass\n", LAYOUT,
     'plugin "foo": live function "live_f" in foo/mod.py:2 is defined inside a module-level if '
     "block, so the registration module could not import it reliably; define it "
     'unconditionally at module level, or drop the "live_" prefix'),
    ("try:\n    import fast\nexcept ImportError:\n    class Live_Job:\n        pass\n", LAYOUT,
     'plugin "foo": live type "Live_Job" in foo/mod.py:4 is defined inside a module-level try '
     "block, so the registration module could not import it reliably; define it "
     'unconditionally at module level, or drop the "live_" prefix'),
    ("with ctx():\n    async def live_run():\n        pass\n", LAYOUT,
     'plugin "foo": live function "live_run" in foo/mod.py:2 is defined inside a module-level '
     "with block, so the registration module could not import it reliably; define it "
     'unconditionally at module level, or drop the "live_" prefix'),
    ("from app import foo\n", NESTED,
     'plugin "foo": "from app import foo" in foo/mod.py:1 imports the plugin\'s own root '
     'package by name, which cannot be made relative; import what you need with '
     '"from . import name"'),
    ("import importlib\nf = getattr(importlib, name)\n", LAYOUT,
     'plugin "foo": "getattr(importlib, name)" in foo/mod.py:2 looks up a function of '
     "importlib by a computed name, so the build cannot point it at this version (an import "
     "through it would reach the host's package of the same name, not the plugin's own "
     "modules); call importlib.<function>(...) by its name instead"),
    ("from importlib import util as u\nf = getattr(u, 'find_' + kind)\n", LAYOUT,
     'plugin "foo": "getattr(u, \'find_\' + kind)" in foo/mod.py:2 looks up a function of '
     "importlib.util by a computed name, so the build cannot point it at this version (an "
     "import through it would reach the host's package of the same name, not the plugin's own "
     "modules); call importlib.util.<function>(...) by its name instead"),
    ("\n\nfrom app import bar\n", NESTED,
     'plugin "foo": foo/mod.py:3 imports "app.bar", the package of plugin "bar"; a plugin never '
     "imports another plugin's package: share types through a host-side module and reach "
     "other plugins through export() and import_()"),
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


@pytest.mark.parametrize(("before", "after"), [
    (b"from foo.a \\\n    import x\nimport foo.b \\\n  as b\n",
     b"from .a \\\n    import x\nfrom . import b \\\n  as b\n"),
    (b"x = 1\r\nfrom foo.a import x  # c\r\nif x: import foo.q as q; import os\r\n",
     b"x = 1\r\nfrom .a import x  # c\r\nif x: from . import q as q; import os\r\n"),
    ('# -*- coding: latin-1 -*-\ns = "\xe9"; from foo import y\n'.encode("latin-1"),
     '# -*- coding: latin-1 -*-\ns = "\xe9"; from . import y\n'.encode("latin-1")),
    ('s = "\u00e9\u00e9"; from foo import y\n'.encode(),
     's = "\u00e9\u00e9"; from . import y\n'.encode()),
    (b"\xef\xbb\xbffrom foo import y\n", b"\xef\xbb\xbffrom . import y\n"),
])
def test_rewrite_keeps_bytes_encodings_and_line_ends(before: bytes, after: bytes) -> None:
    """Backslash continuations, CRLF, source encodings, non-ASCII columns and BOMs survive."""
    ctx = FileContext.create(LAYOUT, "mod.py")
    scan, out, _ = rewrite_source(before, ctx)
    assert out == after
    assert scan.problems == ()
