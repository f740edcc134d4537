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
                                            "Details", "StaticPlugin", "HotswapError", "VersionStats"}
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
