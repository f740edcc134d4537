"""The pytest kit: a plugin author's suite passes for a clean plugin and names the leak otherwise."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]

HOOKS = """\
CompileTimeString = "none"

def on_init(vault): pass
def export(): return None
def import_(): return None
def reloadable(): return True
"""

CLEAN = HOOKS + """
import registry

def handle(event):
    return f"{event} by {CompileTimeString}"

def on_load(data):
    registry.HANDLERS.append(handle)

def on_free():
    registry.HANDLERS.remove(handle)

def invoke_func(name, *params):
    return handle(*params)
"""

# forgets to unregister its handler and a token: every load stays alive through registry.HANDLERS
LEAKY = CLEAN.replace("registry.HANDLERS.remove(handle)", "pass").replace(
    "registry.HANDLERS.append(handle)",
    "registry.HANDLERS.append(handle)\n    registry.HANDLERS.append(Token())") + """
class Token:
    pass
"""

AUTHORS_TESTS = """
from pathlib import Path

from hotswap_runtime.testing import assert_reloads_cleanly

PLUGIN = Path(__file__).parent / "{name}"


def test_reloads_cleanly():
    assert_reloads_cleanly(PLUGIN, times=5, call=lambda m: m.find_plugin("{name}").invoke_func("x", "e"))


def test_new_stamp_serves(hotswap_host):
    hotswap_host.build(PLUGIN, stamps={{"CompileTimeString": "v1"}})
    hotswap_host.reload()
    hotswap_host.build(PLUGIN, stamps={{"CompileTimeString": "v2"}})
    assert str(hotswap_host.reload()).endswith("{name}: ok")
    assert hotswap_host.current().find_plugin("{name}").invoke_func("x", "ping") == "ping by v2"
"""


def author_suite(pytester: pytest.Pytester, name: str, source: str) -> None:
    pytester.makepyfile(registry="HANDLERS = []\n")
    package = pytester.mkpydir(name)
    (package / "__init__.py").write_text(textwrap.dedent(source))
    pytester.makepyfile(**{f"test_{name}": AUTHORS_TESTS.format(name=name)})


def test_clean_plugin_passes(pytester: pytest.Pytester) -> None:
    """A plugin that unregisters in on_free passes both the fixture test and the reload check."""
    author_suite(pytester, "tidy", CLEAN)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_leaky_plugin_fails_naming_the_chain(pytester: pytest.Pytester) -> None:
    """A plugin leaving its handler in a host registry fails on the first load, naming the chain."""
    author_suite(pytester, "leaky", LEAKY)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*plugin does not reload cleanly (load 1 of 5):",
        "leaky#* stays alive after its swapper was closed:",
        "    registry.HANDLERS[[]0[]] -> <function handle of leaky#*>",
        "    registry.HANDLERS[[]1[]] -> <Token of leaky#*>",
    ])


def test_importing_the_runtime_imports_neither_pytest_nor_the_kit() -> None:
    """A host that imports hotswap_runtime does not pay for pytest."""
    code = ("import sys, hotswap_runtime; "
            "print(sorted(m for m in ('pytest', 'hotswap_runtime.testing') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
