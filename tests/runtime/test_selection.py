"""``selection.select``: the one reload rule that both the load and ``plan()`` apply."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from hotswap_runtime.selection import select


def _running(build_id: str, deps: tuple[str, ...] = (), reloadable: bool = True) -> Any:
    # artifact: the snapshot a running version keeps (here none: compared by contents)
    return SimpleNamespace(build_id=build_id, content=f"c-{build_id}", deps=deps,
                           reloadable=reloadable, static=None, artifact=None)


def _artifact(build_id: str, content: str | None = None) -> Any:
    return SimpleNamespace(build_id=build_id, content=content or f"c-{build_id}")


def test_every_word_and_transitive_rewiring() -> None:
    """A rebuilt plugin is fresh (so is one claiming the running build id with other
    contents); every unchanged plugin depending on it, directly or through another re-wired
    one, is re-wired; a not reloadable one stays whatever its artifact; a gone one is dropped;
    a new one is fresh."""
    running = {
        "base": _running("b1"),
        "mid": _running("m1", deps=("base",)),
        "top": _running("t1", deps=("mid",)),
        "side": _running("s1"),
        "claim": _running("c1"),
        "pin": _running("p1", reloadable=False),
        "gone": _running("g1"),
    }
    artifacts = {"base": _artifact("b2"), "mid": _artifact("m1"), "top": _artifact("t1"),
                 "side": _artifact("s1"), "pin": _artifact("p2"), "new": _artifact("n1"),
                 "claim": _artifact("c1", content="other code under the running build id")}
    assert select(running, artifacts.keys(), artifacts) == {
        "base": "fresh", "claim": "fresh", "gone": "dropped", "mid": "re-wired", "new": "fresh",
        "pin": "not reloadable", "side": "unchanged", "top": "re-wired"}


def test_an_unreadable_artifact_gets_no_word_and_drops_nothing() -> None:
    """A listed artifact that failed to read (plan() reports its error) is neither fresh nor
    dropped, and its dependents stay unchanged."""
    running = {"base": _running("b1"), "user": _running("u1", deps=("base",))}
    artifacts = {"user": _artifact("u1")}
    assert select(running, ["base", "user"], artifacts) == {"user": "unchanged"}


def test_first_load_is_all_fresh() -> None:
    artifacts = {"a": _artifact("1"), "b": _artifact("2")}
    assert select({}, artifacts.keys(), artifacts) == {"a": "fresh", "b": "fresh"}


def test_plan_with_a_whitelisted_plugin_missing_says_the_load_fails(plugin_dir, make_swapper,
                                                                    events) -> None:
    """plan() and reload() agree: a whitelisted name with no artifact fails the whole load
    (reload raises, the running plugins stay), and plan() says so instead of "ok"."""
    from handmade import hooks_source, pack_plugin

    from hotswap_runtime import HotswapError
    for name in ("a", "b"):
        pack_plugin(plugin_dir, name, {"__init__.py": hooks_source(name)})
    swapper = make_swapper(whitelist=["a"])
    swapper.load_plugins()
    (plugin_dir / "a.hsp").unlink()
    plan = swapper.plan()
    assert sorted(plan) == sorted(["a", str(plugin_dir / "a.hsp")])
    assert plan["a"].startswith('error: whitelisted plugins not found in ') and '"a"' in plan["a"]
    assert plan[str(plugin_dir / "a.hsp")] == "unchanged"
    with pytest.raises(HotswapError, match='whitelisted plugins not found .*"a"'):
        swapper.reload()
    swapper2 = make_swapper(whitelist=["b", "C"])
    assert swapper2.plan() == {"C": f'error: whitelisted plugins not found in {plugin_dir}: "C"; '
                                     "build them into it or remove them from the whitelist"}
    with pytest.raises(HotswapError, match='"C"'):
        swapper2.load_plugins()
