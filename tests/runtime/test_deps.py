"""Dependencies declared by import_(): wiring, order, re-wiring and every dependency error."""

from __future__ import annotations

from pathlib import Path

import pytest
from handmade import first_load_refused, hooks_source, pack_plugin

from hotswap_runtime import HotswapError

ALPHA_EXPORT = "AlphaApi(STAMP)"
SHARED = "from hotswap_test_shared import AlphaApi, Greeter, Counter\nfrom typing import Any, ClassVar\n"


def deps_plugin(name: str, body: str, *, stamp: str = "v1", export: str = "None",
                reloadable: bool = True, import_: str = "DEPS") -> str:
    return hooks_source(name, stamp=stamp, export=export, import_=import_, reloadable=reloadable,
                        extra=SHARED + body)


def trine(plugin_dir: Path, *, alpha_stamp: str = "v1") -> None:
    pack_plugin(plugin_dir, "alpha", {"__init__.py": deps_plugin(
        "alpha", "", stamp=alpha_stamp, export=ALPHA_EXPORT, import_="None")})
    pack_plugin(plugin_dir, "beta", {"__init__.py": deps_plugin("beta", (
        "class Deps:\n    alpha: AlphaApi\n    _alpha: AlphaApi\n    kind: ClassVar[str] = 'x'\n"
        "DEPS = Deps()\n"), export="{'beta': True}")})
    pack_plugin(plugin_dir, "gamma", {"__init__.py": deps_plugin("gamma", (
        "class Deps:\n    Beta: dict\n    ALPHA: Any\nDEPS = Deps()\n"))})


def test_three_plugins_wired_in_dependency_order(plugin_dir: Path, events, make_swapper) -> None:
    """Dependencies load first, exports are set, private and ClassVar attributes are left alone,
    on_free runs in reverse, and an all-unchanged reload loads nothing."""
    trine(plugin_dir)
    swapper = make_swapper()
    swapper.load_plugins()
    manager = swapper.current()
    assert [p.name for p in manager.plugins()] == ["alpha", "beta", "gamma"]
    beta_deps = manager.find_plugin("beta").lookup("DEPS")
    assert beta_deps.alpha.stamp == "v1"
    assert not hasattr(beta_deps, "_alpha")
    assert beta_deps.kind == "x"
    gamma_deps = manager.find_plugin("gamma").lookup("DEPS")
    assert gamma_deps.Beta == {"beta": True} and gamma_deps.ALPHA is beta_deps.alpha
    assert manager.find_plugin("gamma").deps == ("alpha", "beta")
    assert events.hooks("on_load") == ["alpha", "beta", "gamma"]
    assert events.hooks("on_init") == ["alpha", "beta", "gamma"]
    events.log.clear()
    assert str(swapper.reload()) == "alpha: unchanged, beta: unchanged, gamma: unchanged"
    assert events.log == [("alpha", "on_init"), ("beta", "on_init"), ("gamma", "on_init")]
    swapper.close()
    assert events.hooks("on_free") == ["gamma", "beta", "alpha"]


def test_chain_order_whatever_the_names(plugin_dir: Path, events, make_swapper) -> None:
    """A chain a -> m -> z loads z, m, a, and ties are broken by name."""
    pack_plugin(plugin_dir, "z", {"__init__.py": deps_plugin("z", "", export="1", import_="None")})
    pack_plugin(plugin_dir, "m", {"__init__.py": deps_plugin("m", "class D:\n    z: int\nDEPS = D()\n", export="2")})
    pack_plugin(plugin_dir, "a", {"__init__.py": deps_plugin("a", "class D:\n    m: int\nDEPS = D()\n")})
    pack_plugin(plugin_dir, "b", {"__init__.py": deps_plugin("b", "", import_="None")})
    swapper = make_swapper()
    swapper.load_plugins()
    assert [p.name for p in swapper.current().plugins()] == ["b", "z", "m", "a"]
    assert events.hooks("on_load") == ["b", "z", "m", "a"]


def test_dependency_rebuilt_rewires_dependents(plugin_dir: Path, events, make_swapper) -> None:
    """A rebuilt dependency gives each dependent, direct or not, a fresh version wired to it (ok)."""
    trine(plugin_dir)
    pack_plugin(plugin_dir, "solo", {"__init__.py": deps_plugin("solo", "class D:\n    pass\nDEPS = D()\n")})
    swapper = make_swapper()
    swapper.load_plugins()
    trine_old = swapper.current()
    trine(plugin_dir, alpha_stamp="v2")
    details = swapper.reload()
    assert str(details) == "alpha: ok, beta: ok, gamma: ok, solo: unchanged"
    manager = swapper.current()
    assert manager.find_plugin("beta").lookup("DEPS").alpha.stamp == "v2"
    assert manager.find_plugin("gamma").lookup("DEPS").ALPHA.stamp == "v2"
    assert trine_old.find_plugin("beta").lookup("DEPS").alpha.stamp == "v1"


def test_inherited_annotations_count(plugin_dir: Path, events, make_swapper) -> None:
    """Annotations inherited from a base class declare dependencies too."""
    pack_plugin(plugin_dir, "alpha", {"__init__.py": deps_plugin("alpha", "", export=ALPHA_EXPORT, import_="None")})
    pack_plugin(plugin_dir, "beta", {"__init__.py": deps_plugin("beta", (
        "class Base:\n    alpha: AlphaApi\nclass Deps(Base):\n    pass\nDEPS = Deps()\n"))})
    swapper = make_swapper()
    swapper.load_plugins()
    assert swapper.current().find_plugin("beta").lookup("DEPS").alpha.stamp == "v1"


def test_protocols_conformance(plugin_dir: Path, events, make_swapper) -> None:
    """Runtime-checkable protocols use isinstance, other protocols member presence."""
    pack_plugin(plugin_dir, "alpha", {"__init__.py": deps_plugin("alpha", (
        "class Impl:\n    count = 0\n    def greet(self):\n        return 'hi'\n"
        "    def bump(self):\n        return 1\n"), export="Impl()", import_="None")})
    pack_plugin(plugin_dir, "beta", {"__init__.py": deps_plugin("beta", (
        "class Deps:\n    alpha: Greeter\nDEPS = Deps()\n"))})
    pack_plugin(plugin_dir, "gamma", {"__init__.py": deps_plugin("gamma", (
        "class Deps:\n    alpha: Counter\nDEPS = Deps()\n"))})
    swapper = make_swapper()
    swapper.load_plugins()
    assert swapper.current().find_plugin("gamma").lookup("DEPS").alpha.bump() == 1


def test_non_conforming_export(plugin_dir: Path, events, make_swapper) -> None:
    """An export that does not conform to the annotation fails the load naming both plugins."""
    pack_plugin(plugin_dir, "alpha", {"__init__.py": deps_plugin("alpha", "", export="'text'",
                                                                 import_="None")})
    pack_plugin(plugin_dir, "beta", {"__init__.py": deps_plugin(
        "beta", "class Deps:\n    alpha: AlphaApi\nDEPS = Deps()\n")})
    pack_plugin(plugin_dir, "gamma", {"__init__.py": deps_plugin(
        "gamma", "class Deps:\n    alpha: Counter\nDEPS = Deps()\n")})
    error = first_load_refused(make_swapper)
    assert str(error) == (
        'plugin "beta" imports "alpha" as alpha: AlphaApi, but its export() returned a str, which '
        'does not conform; plugin "gamma" imports "alpha" as alpha: Counter, but its export() '
        "returned a str, which does not conform; make export() return what the annotation "
        "names, or fix the annotation")
    assert events.hooks("on_load") == []


def test_unknown_dependency_and_typo(plugin_dir: Path, events, make_swapper) -> None:
    """A dependency on a plugin that is not loaded (or misspelt) fails naming both."""
    pack_plugin(plugin_dir, "alpha", {"__init__.py": deps_plugin("alpha", "", export=ALPHA_EXPORT, import_="None")})
    pack_plugin(plugin_dir, "beta", {"__init__.py": deps_plugin(
        "beta", "class Deps:\n    alhpa: AlphaApi\nDEPS = Deps()\n")})
    error = first_load_refused(make_swapper)
    assert str(error) == ('plugin "beta" depends on "alhpa", but no plugin "alhpa" is loaded; build '
                          "and deploy the missing plugin or fix the attribute name in import_'s class")
    assert error.plugin == "beta" and error.step == "dependencies"


def test_carried_over_dependency_gone(plugin_dir: Path, events, make_swapper) -> None:
    """Removing the artifact of a dependency of a carried-over plugin fails the reload."""
    trine(plugin_dir)
    swapper = make_swapper()
    swapper.load_plugins()
    old = swapper.current()
    (plugin_dir / "alpha.hsp").unlink()
    with pytest.raises(HotswapError, match='plugin "beta" depends on "alpha", but no plugin "alpha" is loaded'):
        swapper.reload()
    assert swapper.current() is old


@pytest.mark.parametrize("value, what", [("3", "an int"), ("{'alpha': 1}", "a dict"),
                                         ("AlphaApi", "a class"), ("_ev", "a module")])
def test_import_returning_a_non_declaring_object(plugin_dir: Path, events, make_swapper, value: str, what: str) -> None:
    """import_() returning a number, a dict, a class or a module fails naming the plugin."""
    pack_plugin(plugin_dir, "beta", {"__init__.py": deps_plugin("beta", "", import_=value)})
    error = first_load_refused(make_swapper)
    assert str(error).startswith(f'plugin "beta": import_ returned {what}; return None or an instance')


def test_pinned_depending_on_reloadable(plugin_dir: Path, events, make_swapper) -> None:
    """A plugin that is not reloadable may not depend on one that is."""
    pack_plugin(plugin_dir, "alpha", {"__init__.py": deps_plugin("alpha", "", export=ALPHA_EXPORT, import_="None")})
    pack_plugin(plugin_dir, "beta", {"__init__.py": deps_plugin(
        "beta", "class Deps:\n    alpha: AlphaApi\nDEPS = Deps()\n", reloadable=False)})
    error = first_load_refused(make_swapper)
    assert str(error) == ('plugin "beta" is not reloadable but depends on "alpha", which is; make the '
                          "dependency not reloadable too, or the dependent reloadable")


@pytest.mark.parametrize("names, expected", [
    (("a", "b"), "a -> b -> a"),
    (("c", "b", "d"), "b -> d -> c -> b"),
])
def test_cycles(plugin_dir: Path, events, make_swapper, names: tuple[str, ...], expected: str) -> None:
    """A cycle of two or three plugins is reported from its smallest name."""
    for name, dep in zip(names, names[1:] + names[:1], strict=True):
        pack_plugin(plugin_dir, name, {"__init__.py": deps_plugin(
            name, f"class Deps:\n    {dep}: Any\nDEPS = Deps()\n")})
    error = first_load_refused(make_swapper)
    assert str(error).startswith(f"cyclic dependency detected: {expected};")


def test_failed_dependency_check_runs_no_on_load(plugin_dir: Path, events, make_swapper) -> None:
    """A dependency error stops the load before any on_load; nothing is freed that never loaded."""
    pack_plugin(plugin_dir, "a", {"__init__.py": deps_plugin("a", "class Deps:\n    b: Any\nDEPS = Deps()\n")})
    pack_plugin(plugin_dir, "b", {"__init__.py": deps_plugin("b", "class Deps:\n    a: Any\nDEPS = Deps()\n")})
    first_load_refused(make_swapper)
    assert events.hooks("on_load") == [] and events.hooks("on_free") == []


def test_pinned_may_depend_on_pinned(plugin_dir: Path, events, make_swapper) -> None:
    """Two pinned plugins may depend on each other's exports and stay across reloads."""
    pack_plugin(plugin_dir, "alpha", {"__init__.py": deps_plugin(
        "alpha", "", export=ALPHA_EXPORT, import_="None", reloadable=False)})
    pack_plugin(plugin_dir, "beta", {"__init__.py": deps_plugin(
        "beta", "class Deps:\n    alpha: AlphaApi\nDEPS = Deps()\n", reloadable=False)})
    swapper = make_swapper()
    swapper.load_plugins()
    pack_plugin(plugin_dir, "alpha", {"__init__.py": deps_plugin(
        "alpha", "", stamp="v2", export=ALPHA_EXPORT, import_="None", reloadable=False)})
    assert str(swapper.reload()) == "alpha: not reloadable, beta: not reloadable"
    assert swapper.current().find_plugin("beta").lookup("DEPS").alpha.stamp == "v1"


def test_plain_protocol_members_on_every_python() -> None:
    """A dependency typed with a plain (not runtime-checkable) Protocol conforms when the export
    has every member the protocol declares, whatever bookkeeping attributes this Python's
    typing puts on protocol classes; inherited and generic protocols too."""
    from typing import Protocol, TypeVar

    from hotswap_runtime.deps import conforms

    T = TypeVar("T")

    class Counter(Protocol):
        count: int

        def bump(self) -> int: ...

    class Named(Counter, Protocol):
        name: str

    class Box(Protocol[T]):
        def get(self) -> T: ...

    class Full:
        count = 0
        name = "x"

        def bump(self) -> int:
            return 1

        def get(self) -> int:
            return 2

    class NoCount:
        def bump(self) -> int:
            return 1

    assert conforms(Full(), Counter) and conforms(Full(), Named) and conforms(Full(), Box)
    assert conforms(Full(), Box[int])
    assert not conforms(NoCount(), Counter)
    assert not conforms(NoCount(), Box)
    assert not conforms(object(), Named)
