"""Reloads: the three Details words, carry-over, freeing for real, and failures that change nothing."""

from __future__ import annotations

import gc
import logging
import sys
import threading
import typing
import weakref
from pathlib import Path

import pytest
from handmade import hooks_source, pack_plugin
from helpers import wait_for

from hotswap_runtime import HotswapError


def modules_of(root: str) -> list[str]:
    return [k for k in sys.modules if k == root or k.startswith(root + ".")]


def test_changed_unchanged_added_removed(plugin_dir: Path, events, make_swapper) -> None:
    """A new stamp is ok, identical inputs are unchanged, added plugins load, removed ones go."""
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a")})
    pack_plugin(plugin_dir, "b", {"__init__.py": hooks_source("b")})
    swapper = make_swapper(free_delay=3600)  # frees are not the subject here
    swapper.load_plugins()
    first = swapper.current()
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", stamp="v2")})
    (plugin_dir / "b.hsp").unlink()
    pack_plugin(plugin_dir, "c", {"__init__.py": hooks_source("c")})
    details = swapper.reload()
    assert str(details) == "a: ok, c: ok"
    manager = swapper.current()
    assert manager is not first
    assert manager.find_plugin("a").invoke_func("stamp") == "v2"
    assert manager.find_plugin("b") is None
    assert swapper.reload_counter == 1
    events.log.clear()
    assert str(swapper.reload()) == "a: unchanged, c: unchanged"
    assert swapper.current().find_plugin("a").when == manager.find_plugin("a").when
    assert swapper.current().find_plugin("a").note == "unchanged"
    assert events.log == [("a", "on_init"), ("c", "on_init")]  # carried-over: only on_init
    assert swapper.reload_counter == 2


def test_pinned_plugin_keeps_serving(plugin_dir: Path, events, make_swapper, caplog) -> None:
    """A plugin whose reloadable() is False keeps its old code even when rebuilt or deleted."""
    pack_plugin(plugin_dir, "pin", {"__init__.py": hooks_source("pin", reloadable=False)})
    pack_plugin(plugin_dir, "other", {"__init__.py": hooks_source("other")})
    swapper = make_swapper()
    swapper.load_plugins()
    pack_plugin(plugin_dir, "pin", {"__init__.py": hooks_source("pin", stamp="v2")})
    with caplog.at_level(logging.WARNING, logger="hotswap"):
        details = swapper.reload()
    assert str(details) == "other: unchanged, pin: not reloadable"
    assert swapper.current().find_plugin("pin").invoke_func("stamp") == "v1"
    assert any("not reloadable" in r.getMessage() for r in caplog.records)
    (plugin_dir / "pin.hsp").unlink()
    assert str(swapper.reload()) == "other: unchanged, pin: not reloadable"


def test_on_free_waits_for_free_delay_and_skips_carried_over(plugin_dir: Path, events, make_swapper) -> None:
    """on_free runs only after free_delay, and never for a carried-over version."""
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a")})
    pack_plugin(plugin_dir, "b", {"__init__.py": hooks_source("b")})
    swapper = make_swapper(free_delay=0.3)
    swapper.load_plugins()
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", stamp="v2")})
    swapper.reload()
    assert events.hooks("on_free") == []
    assert [s.state for s in swapper.stats()] == ["pending free", "current", "current", ]
    wait_for(lambda: events.hooks("on_free") == ["a"])
    expected = [("b", "current"), ("a", "current")]  # oldest first: b is from the first load
    wait_for(lambda: (gc.collect(), [(s.plugin, s.state) for s in swapper.stats()] == expected)[1])


def test_free_delay_zero_frees_at_once_and_really_unloads(plugin_dir: Path, events, make_swapper) -> None:
    """A replaced version leaves sys.modules, logging and typing; a weakref to its function dies."""
    extra = ("import logging, typing\nlog = logging.getLogger(__name__)\n"
             "class Item:\n    pass\n"
             "Items = typing.List[Item]\nMaybe = typing.Optional[Item]\n"
             "def live_f():\n    log.info('hi')\n    return Item()\n")
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", extra=extra),
                                  "sub.py": "import logging\nlogger = logging.getLogger(__name__)\n"})
    swapper = make_swapper()
    swapper.load_plugins()
    live_f = swapper.current().vault.live_funcs["live_f"]
    root = live_f.__module__
    __import__(f"{root}.sub")
    live_f()
    ref = weakref.ref(live_f)
    del live_f
    assert root in logging.Logger.manager.loggerDict
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", stamp="v2", extra=extra)})
    swapper.reload()
    wait_for(lambda: events.hooks("on_free") == ["a"])
    wait_for(lambda: not modules_of(root))
    wait_for(lambda: (gc.collect(), ref() is None)[1])
    assert not [k for k in logging.Logger.manager.loggerDict if k.startswith(root)]
    gc.collect()
    assert [s.state for s in swapper.stats()] == ["current"]


def test_version_shared_by_two_managers_freed_with_the_last(plugin_dir: Path, events, make_swapper) -> None:
    """An unchanged version carried into a new manager is freed only when no manager uses it."""
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a")})
    pack_plugin(plugin_dir, "b", {"__init__.py": hooks_source("b")})
    swapper = make_swapper()
    swapper.load_plugins()
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", stamp="v2")})
    swapper.reload()
    wait_for(lambda: events.hooks("on_free") == ["a"])
    root_b = swapper.current().find_plugin("b").lookup("__name__")
    assert modules_of(root_b)
    (plugin_dir / "b.hsp").unlink()
    assert str(swapper.reload()) == "a: unchanged"
    wait_for(lambda: events.hooks("on_free") == ["a", "b"])
    wait_for(lambda: not modules_of(root_b))


def test_on_free_raising_is_logged_and_others_still_freed(plugin_dir: Path, events, make_swapper, caplog) -> None:
    """on_free raising is logged; the other versions are still freed."""
    for name in ("a", "b", "c"):
        pack_plugin(plugin_dir, name, {"__init__.py": hooks_source(name)})
    swapper = make_swapper()
    swapper.load_plugins()
    roots = [p.lookup("__name__") for p in swapper.current().plugins()]
    events.fail.add(("b", "on_free"))
    for name in ("a", "b", "c"):
        pack_plugin(plugin_dir, name, {"__init__.py": hooks_source(name, stamp="v2")})
    with caplog.at_level(logging.ERROR, logger="hotswap"):
        swapper.reload()
        wait_for(lambda: len(events.hooks("on_free")) == 3)
        wait_for(lambda: not any(modules_of(r) for r in roots))
    assert events.hooks("on_free") == ["c", "b", "a"]
    assert any('plugin "b": on_free failed' in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("hook", ["reloadable", "export", "import_", "on_load", "on_init"])
def test_each_hook_raising_changes_nothing(plugin_dir: Path, events, make_swapper, hook: str) -> None:
    """A hook raising fails the load naming plugin and step, later hooks do not run, versions
    already loaded are freed in reverse order, and the old manager keeps serving."""
    for name in ("a", "b", "c"):
        pack_plugin(plugin_dir, name, {"__init__.py": hooks_source(name)})
    swapper = make_swapper()
    swapper.load_plugins()
    old = swapper.current()
    before = set(sys.modules)
    for name in ("a", "b", "c"):
        pack_plugin(plugin_dir, name, {"__init__.py": hooks_source(name, stamp="v2")})
    events.log.clear()
    events.fail.add(("b", hook))
    with pytest.raises(HotswapError) as info:
        swapper.reload()
    assert info.value.plugin == "b" and info.value.step == hook
    assert str(info.value).startswith(f'plugin "b": {hook} failed: RuntimeError: injected fault')
    assert isinstance(info.value.__cause__, RuntimeError)
    steps = ["reloadable", "export", "import_", "on_load", "on_init"]
    later = steps[steps.index(hook) + 1:]
    assert not [h for _, h in events.log if h in later]
    if hook in ("on_load", "on_init"):
        # the on_load of "b" raised: only versions whose on_load completed are freed
        ran = [n for n in events.hooks("on_load") if (n, hook) != ("b", "on_load")]
        assert events.hooks("on_free") == list(reversed(ran))
    else:
        assert events.hooks("on_free") == []
    assert swapper.current() is old
    assert set(sys.modules) == before
    assert old.find_plugin("b").invoke_func("stamp") == "v1"
    assert swapper.reload_counter == 0


def test_callbacks_first_load_abort_and_extra_order(plugin_dir: Path, events, make_swapper) -> None:
    """The callback runs on the first load with old None; raising aborts; extra runs after it."""
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a")})
    calls: list[tuple[str, object, object]] = []
    fail = {"on": False}

    def callback(new, old):
        calls.append(("main", new, old))
        if fail["on"]:
            raise RuntimeError("callback says no")

    swapper = make_swapper(reload_callback=callback, free_delay=3600)  # only the abort frees
    swapper.load_plugins()
    first = swapper.current()
    assert calls == [("main", first, None)]
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", stamp="v2")})
    swapper.reload_with_callback(None, lambda new, old: calls.append(("extra", new, old)))
    second = swapper.current()
    assert [c[0] for c in calls] == ["main", "main", "extra"]
    assert calls[1][1:] == (second, first) and calls[2][1:] == (second, first)
    fail["on"] = True
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", stamp="v3")})
    events.log.clear()
    with pytest.raises(HotswapError, match="reload_callback failed: RuntimeError: callback says no"):
        swapper.reload()
    assert swapper.current() is second
    assert events.hooks("on_free") == ["a"]


def test_missing_folder_and_load_twice(tmp_path: Path, events, make_swapper) -> None:
    """A missing plugin folder fails naming it and current() stays None; load_plugins twice fails."""
    swapper = make_swapper(tmp_path / "nowhere")
    with pytest.raises(HotswapError, match="plugin folder .*nowhere cannot be read"):
        swapper.load_plugins()
    assert swapper.current() is None
    swapper.reset_plugin_dir(tmp_path)
    assert swapper.load_plugins() == {}
    with pytest.raises(HotswapError, match="already loaded; call reload"):
        swapper.load_plugins()


def test_duplicate_names_and_whitelist(plugin_dir: Path, events, make_swapper) -> None:
    """Names differing in case fail; the whitelist selects case-insensitively and names the missing."""
    pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo")})
    pack_plugin(plugin_dir, "Foo", {"__init__.py": hooks_source("Foo")})
    with pytest.raises(HotswapError, match="duplicate name: artifacts Foo.hsp and foo.hsp"):
        make_swapper().load_plugins()
    (plugin_dir / "Foo.hsp").unlink()
    pack_plugin(plugin_dir, "bar", {"__init__.py": hooks_source("bar")})
    with pytest.raises(HotswapError) as info:
        make_swapper(whitelist=["FOO", "zed", "yak"]).load_plugins()
    assert str(info.value).startswith(f'whitelisted plugins not found in {plugin_dir}: "yak", "zed"')
    swapper = make_swapper(whitelist=["FOO", "foo"])
    assert str(swapper.load_plugins()) == "foo: ok"


def test_whitelist_given_as_a_str_or_with_non_names_is_refused(plugin_dir: Path, make_swapper) -> None:
    """A whitelist given as one str, or holding a non-str, is a TypeError saying what to pass."""
    with pytest.raises(TypeError) as info:
        make_swapper(whitelist="foo")
    assert str(info.value) == ("whitelist must be an iterable of plugin names, not the str 'foo'; "
                               "write whitelist=['foo']")
    with pytest.raises(TypeError) as info:
        make_swapper(whitelist=["foo", None])
    assert str(info.value) == ("whitelist entries must be plugin names (str), not None; pass the "
                               "names of the plugins to load")


def test_close_frees_pending_then_current_and_refuses(plugin_dir: Path, events, make_swapper) -> None:
    """close() runs every pending free at once, then the current versions, and refuses later loads."""
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a")})
    pack_plugin(plugin_dir, "b", {"__init__.py": hooks_source("b", import_="_Deps()", extra=(
        "class _Deps:\n    a: object\n"))})
    swapper = make_swapper(free_delay=3600)
    swapper.load_plugins()
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", stamp="v2")})
    swapper.reload()
    assert events.hooks("on_free") == []
    swapper.close()
    assert events.hooks("on_free") == ["b", "a", "b", "a"]
    assert swapper.current() is None
    assert not [f for f in sys.meta_path if type(f).__name__ == "_Finder"]
    with pytest.raises(HotswapError, match="closed"):
        swapper.reload()
    assert not [t for t in threading.enumerate() if t.name.startswith("hotswap-free")]


def test_load_plugins_after_close_says_closed(plugin_dir: Path, events, make_swapper) -> None:
    """load_plugins on a closed swapper says it is closed, not "call reload()" (which refuses too)."""
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a")})
    swapper = make_swapper()
    swapper.load_plugins()
    swapper.close()
    for call in (swapper.load_plugins, swapper.reload, swapper.prepare):
        with pytest.raises(HotswapError) as info:
            call()
        assert str(info.value) == "the swapper is closed; create a new PluginManagerSwapper"
    assert swapper.current() is None


def test_typing_overloads_pruned(plugin_dir: Path, events, make_swapper) -> None:
    """typing's overload registry forgets a freed version's functions."""
    extra = ("from typing import overload\n"
             "@overload\ndef live_g(x: int) -> int: ...\n"
             "@overload\ndef live_g(x: str) -> str: ...\n"
             "def live_g(x):\n    return x\n")
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", extra=extra)})
    swapper = make_swapper()
    swapper.load_plugins()
    g = swapper.current().vault.live_funcs["live_g"]
    assert len(typing.get_overloads(g)) == 2
    swapper.close()
    assert typing.get_overloads(g) == []


@pytest.mark.parametrize("step", ["import", "dependencies", "vault", "extension_factory",
                                  "self_test", "reload_callback"])
def test_fault_at_each_step_frees_the_attempt(plugin_dir: Path, events, make_swapper, step: str) -> None:
    """A fault at any step of a reload leaves sys.modules and current() exactly as they were."""
    for name in ("a", "b"):
        pack_plugin(plugin_dir, name, {"__init__.py": hooks_source(name)})
    broken = {"a": {}, "b": {}}
    if step == "import":
        broken["b"] = {"extra": "raise RuntimeError('import fault')\n"}
    elif step == "dependencies":
        broken["b"] = {"import_": "_D()", "extra": "class _D:\n    zed: int\n"}
    elif step == "vault":
        broken["a"] = {"extra": "def live_same():\n    pass\n"}
        broken["b"] = {"extra": "def live_same():\n    pass\n"}
    elif step == "self_test":
        broken["b"] = {"extra": "def self_test(vault):\n    raise RuntimeError('self test fault')\n"}
    fail = {"on": False}

    def factory() -> dict:
        if fail["on"] and step == "extension_factory":
            raise RuntimeError("factory fault")
        return {}

    def callback(new, old) -> None:
        if fail["on"] and step == "reload_callback":
            raise RuntimeError("callback fault")

    swapper = make_swapper(extension_factory=factory, reload_callback=callback, free_delay=3600)
    swapper.load_plugins()
    old = swapper.current()
    hooks = ["on_load", "on_init", "on_free", "export", "import_", "invoke_func", "reloadable"]
    for name in ("a", "b"):
        pack_plugin(plugin_dir, name, {"__init__.py": hooks_source(name, stamp="v2", **broken[name])},
                    hooks=hooks + (["self_test"] if step == "self_test" and name == "b" else []))
    before = set(sys.modules)
    fail["on"] = True
    events.log.clear()
    with pytest.raises(HotswapError) as info:
        swapper.reload()
    assert info.value.step == step
    assert info.value.__cause__ is not None or step in ("dependencies", "vault")
    assert swapper.current() is old
    assert set(sys.modules) == before
    assert swapper.stats() == [s for s in swapper.stats() if s.state == "current"]
    loaded = events.hooks("on_load")
    assert events.hooks("on_free") == list(reversed(loaded))


def test_one_rebuilt_while_the_others_are_removed(plugin_dir: Path, events, make_swapper) -> None:
    """One plugin rebuilt while the other two are removed: it alone remains; the others are freed."""
    for name in ("a", "b", "c"):
        pack_plugin(plugin_dir, name, {"__init__.py": hooks_source(name)})
    swapper = make_swapper()
    swapper.load_plugins()
    pack_plugin(plugin_dir, "b", {"__init__.py": hooks_source("b", stamp="v2")})
    (plugin_dir / "a.hsp").unlink()
    (plugin_dir / "c.hsp").unlink()
    assert str(swapper.reload()) == "b: ok"
    assert [p.name for p in swapper.current().plugins()] == ["b"]
    wait_for(lambda: sorted(events.hooks("on_free")) == ["a", "b", "c"])


def test_reset_plugin_dir_applies_at_next_load(tmp_path: Path, events, make_swapper) -> None:
    """reset_plugin_dir changes nothing until the next reload, which loads from the new folder."""
    first, second = tmp_path / "one", tmp_path / "two"
    pack_plugin(first, "a", {"__init__.py": hooks_source("a")})
    pack_plugin(second, "z", {"__init__.py": hooks_source("z")})
    swapper = make_swapper(first)
    swapper.load_plugins()
    swapper.reset_plugin_dir(second)
    assert [p.name for p in swapper.current().plugins()] == ["a"]
    assert str(swapper.reload()) == "z: ok"
    assert swapper.current().find_plugin("z").file == str(second / "z.hsp")


def test_unchanged_reported_under_the_current_path(tmp_path: Path, events, make_swapper) -> None:
    """After reset_plugin_dir, an identical artifact is unchanged and keyed by its new path."""
    first = pack_plugin(tmp_path / "one", "a", {"__init__.py": hooks_source("a")})
    second = tmp_path / "two"
    second.mkdir()
    (second / "a.hsp").write_bytes(first.read_bytes())
    swapper = make_swapper(first.parent)
    swapper.load_plugins()
    swapper.reset_plugin_dir(second)
    assert swapper.reload() == {str(second / "a.hsp"): "unchanged"}
    assert swapper.current().find_plugin("a").file == str(second / "a.hsp")


LEAKY_BUT_CLEAN = '''
import abc, collections.abc, dataclasses, enum, functools, logging, typing, warnings
from hotswap_test_shared import Greeter

log = logging.getLogger(__name__)

class Color(enum.Enum):
    RED = 1

@dataclasses.dataclass
class Job:
    name: str
    tags: typing.List[str] = dataclasses.field(default_factory=list)

class Bag(collections.abc.Sized):
    def __len__(self):
        return 0

class Hello:
    def greet(self):
        return "hi"

@functools.lru_cache(maxsize=None)
def cached(x: int) -> int:
    return x * 2

Pair = typing.Tuple[Job, typing.Optional[Color]]

def live_work():
    log.info("working %s", Color.RED)
    warnings.warn("careful", UserWarning)
    try:
        raise KeyError("inside")
    except KeyError:
        pass
    assert isinstance(Hello(), Greeter) and isinstance(Bag(), collections.abc.Sized)
    assert typing.get_type_hints(Job)["tags"] == typing.List[str]
    return cached(3), Job("x"), Pair
'''


def test_twenty_reloads_leave_one_version_alive(plugin_dir: Path, events, make_swapper) -> None:
    """After 20 reloads of a plugin using logging, typing, enum, dataclasses, ABCs, protocols,
    lru_cache and warnings, only the current version survives gc, in sys.modules and memory."""
    import warnings

    swapper = make_swapper()
    for n in range(20):
        pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", stamp=str(n), extra=LEAKY_BUT_CLEAN)})
        swapper.reload()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            swapper.current().vault.live_funcs["live_work"]()
    wait_for(lambda: len(events.hooks("on_free")) == 19)

    def clean() -> bool:
        gc.collect()
        return [(s.plugin, s.state) for s in swapper.stats()] == [("a", "current")]

    wait_for(clean)
    current_root = swapper.current().find_plugin("a").lookup("__name__")
    assert {m.split(".")[0] for m in sys.modules if m.startswith("_hotswap_a_")} == {current_root}
