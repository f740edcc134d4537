"""The public names of hotswap_runtime, and the signature check of hooks."""

from __future__ import annotations

import pytest

import hotswap_runtime
from hotswap_runtime import HotswapError
from hotswap_runtime.artifact import REQUIRED_HOOKS
from hotswap_runtime.version import check_hooks


def test_every_public_name_is_exported() -> None:
    """__all__ lists exactly the contract's names, each importable."""
    assert set(hotswap_runtime.__all__) >= {"PluginManagerSwapper", "PluginManager", "Plugin", "Vault",
                                            "Details", "StaticPlugin", "HotswapError", "VersionStats",
                                            "ArtifactError"}
    assert issubclass(hotswap_runtime.ArtifactError, hotswap_runtime.HotswapError)
    for name in hotswap_runtime.__all__:
        assert getattr(hotswap_runtime, name).__doc__


def _hooks(**changed):
    hooks = {name: (lambda *a: None) for name in REQUIRED_HOOKS}
    hooks.update(changed)
    return hooks


def test_usable_signatures_pass() -> None:
    """Defaults, *args and keyword-only arguments with defaults are usable signatures."""
    def invoke_func(name, *params, flag=False):
        return None

    def on_load(data=None, extra=1):
        return None

    check_hooks("foo", _hooks(invoke_func=invoke_func, on_load=on_load, on_free=lambda *a: None))


@pytest.mark.parametrize("hook, fn, text", [
    ("on_free", lambda x: None, "on_free(x) cannot be called as on_free()"),
    ("on_init", lambda: None, "on_init() cannot be called as on_init(vault)"),
    ("invoke_func", lambda name, a=1: None, "invoke_func(name, a=1) cannot be called as invoke_func(name, *params)"),
    ("export", lambda *, key: None, "export(*, key) cannot be called as export()"),
    ("reloadable", 3, "reloadable is not a function but int"),
])
def test_unusable_signatures_named(hook, fn, text) -> None:
    """Each ill-shaped hook is named with its signature and the call it cannot take."""
    with pytest.raises(HotswapError) as info:
        check_hooks("foo", _hooks(**{hook: fn}))
    assert str(info.value) == f'plugin "foo": {text}; fix the signature and rebuild it'


def _ok(hook: str, fn) -> None:
    check_hooks("foo", _hooks(**{hook: fn}))


def _refused(hook: str, fn) -> str:
    with pytest.raises(HotswapError) as info:
        check_hooks("foo", _hooks(**{hook: fn}))
    return str(info.value)


def test_positional_only_and_keyword_only_rules() -> None:
    """Positional-only parameters count as positional; a required keyword-only one is refused,
    one with a default is fine."""
    def on_load(data, /):
        return None

    def on_init(vault, /, *, strict=True):
        return None

    def on_free(*, now):
        return None

    _ok("on_load", on_load)
    _ok("on_init", on_init)
    assert "on_free(*, now) cannot be called as on_free()" in _refused("on_free", on_free)


def test_varargs_and_defaults_rules() -> None:
    """*args takes any extra positional; defaults cover the ones not passed; too many required
    positionals are refused, for each count invoke_func is called with."""
    def invoke_func(name, first=None, *rest):
        return None

    def invoke_two(name, first, *rest):
        return None

    def on_load(data, extra=None, more=None):
        return None

    def invoke_fixed(name, a=1, b=2):
        return None

    _ok("invoke_func", invoke_func)
    _ok("on_load", on_load)
    assert ("invoke_func(name, first, *rest) cannot be called as invoke_func(name, *params)"
            in _refused("invoke_func", invoke_two))
    assert ("invoke_func(name, a=1, b=2) cannot be called as invoke_func(name, *params)"
            in _refused("invoke_func", invoke_fixed))


def test_callables_that_are_not_plain_functions() -> None:
    """functools.partial, callable objects, bound methods and builtins are checked through
    inspect.signature with the same rules and messages."""
    import functools

    def two(a, b):
        return None

    class Hook:
        def __call__(self, data):
            return None

    class Holder:
        def on_free(self, extra):
            return None

    _ok("on_load", functools.partial(two, 1))
    _ok("on_load", Hook())
    _ok("on_free", dict)  # a builtin type that takes no argument
    _ok("on_load", len)   # a builtin function taking one
    assert "on_free(b) cannot be called as on_free()" in _refused("on_free", functools.partial(two, 1))
    assert "on_free(data) cannot be called as on_free()" in _refused("on_free", Hook())
    assert "on_free(extra) cannot be called as on_free()" in _refused("on_free", Holder().on_free)
    assert "on_free(obj, /) cannot be called as on_free()" in _refused("on_free", len)
