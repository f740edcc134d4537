"""End to end (README "Staged reloads"): staged reloads, self_test, plan, rollback, drain-aware freeing.

Every plugin here is built by the real ``hotswap build``. Long calls block on an event the test
sets; nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import textwrap
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for

from hotswap_runtime import HotswapError, PluginManagerSwapper

EVENTS = "hotswap_staged_events"

HOOKS = '''\
import threading
import hotswap_staged_events as _ev

STAMP = "none"
EXPORT = None
DEPS = None
RELOADABLE = True

def on_load(data):
    _ev.log.append((NAME, "on_load", STAMP))

def on_init(vault):
    _ev.log.append((NAME, "on_init", STAMP))

def on_free():
    _ev.log.append((NAME, "on_free", STAMP))

def export():
    return EXPORT

def import_():
    return DEPS

def invoke_func(name, *params):
    if name == "stamp":
        return STAMP
    if name == "block":
        _ev.entered.set()
        _ev.gate.wait(10)
        return STAMP
    return None

def reloadable():
    return RELOADABLE
'''

LIVE = '''
def live_block():
    _ev.entered.set()
    _ev.gate.wait(10)
    return STAMP

class Live_Blocker:
    def block(self):
        _ev.entered.set()
        _ev.gate.wait(10)
        return STAMP

async def live_wait(event):
    _ev.entered.set()
    await event.wait()
    return STAMP
'''


def write(src: Path, name: str, body: str = "", live: bool = False) -> Path:
    """Plugin ``name``: the hooks, the live functions when ``live``, then ``body``."""
    folder = src / name
    folder.mkdir(parents=True, exist_ok=True)
    text = f'NAME = "{name}"\n' + HOOKS + (LIVE if live else "") + textwrap.dedent(body)
    (folder / "__init__.py").write_text(text)
    return folder


@pytest.fixture
def ev() -> Iterator[types.ModuleType]:
    module = types.ModuleType(EVENTS)
    module.log = []
    module.gate = threading.Event()
    module.entered = threading.Event()
    module.stop = threading.Event()
    sys.modules[EVENTS] = module
    yield module
    module.gate.set()
    module.stop.set()
    del sys.modules[EVENTS]


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "bin").mkdir()
    return tmp_path / "src", tmp_path / "bin"


@pytest.fixture
def make(dirs) -> Iterator[Callable[..., PluginManagerSwapper]]:
    made: list[PluginManagerSwapper] = []

    def factory(**kwargs: Any) -> PluginManagerSwapper:
        kwargs.setdefault("free_delay", 0)
        swapper = PluginManagerSwapper(dirs[1], **kwargs)
        made.append(swapper)
        return swapper

    yield factory
    for swapper in made:
        swapper.close()


def hooks_run(ev: types.ModuleType, hook: str) -> list[tuple[str, str]]:
    return [(name, stamp) for name, h, stamp in ev.log if h == hook]


def modules_of(prefix: str) -> list[str]:
    """The mounted version roots starting with ``prefix``."""
    return sorted({m.partition(".")[0] for m in sys.modules if m.startswith(prefix)})


def stamp_of(swapper: PluginManagerSwapper, name: str = "a") -> str:
    return swapper.current().find_plugin(name).invoke_func("stamp")


def load_a(dirs: tuple[Path, Path], build_plugin: Callable[..., object],
           make: Callable[..., PluginManagerSwapper], body: str = "", *, live: bool = False,
           **kwargs: Any) -> tuple[Path, PluginManagerSwapper]:
    """Plugin ``a`` (``body``, ``live``) built as v1 and loaded by ``make(**kwargs)``."""
    src, out = dirs
    a = write(src, "a", body, live=live)
    build_plugin(a, out, stamps={"STAMP": "v1"})
    swapper = make(**kwargs)
    swapper.load_plugins()
    return a, swapper


# -- self_test and prepare -------------------------------------------------------------------
def test_failing_self_test_changes_nothing(dirs, ev, build_plugin, make) -> None:
    """A reload whose self_test raises fails; the old version keeps serving, the new one goes."""
    src, out = dirs
    a = write(src, "a", "def self_test(vault):\n    assert STAMP != 'bad', 'refuses bad'\n")
    build_plugin(a, out, stamps={"STAMP": "good"})
    swapper = make()
    swapper.load_plugins()
    build_plugin(a, out, stamps={"STAMP": "bad"})
    with pytest.raises(HotswapError, match="self_test failed: AssertionError: refuses bad") as info:
        swapper.reload()
    assert info.value.step == "self_test"
    assert stamp_of(swapper) == "good"
    assert hooks_run(ev, "on_free") == [("a", "bad")]  # what the failed reload loaded
    assert len(modules_of("_hotswap_a_")) == 1 and swapper.reload_counter == 0


def test_prepared_reload_probed_then_committed_once(dirs, ev, build_plugin, make) -> None:
    """The host probes the prepared manager while the old one serves; commit swaps, only once."""
    out = dirs[1]
    a, swapper = load_a(dirs, build_plugin, make, free_delay=3600)
    build_plugin(a, out, stamps={"STAMP": "v2"})
    prepared = swapper.prepare("data")
    assert str(prepared.details) == "a: ok"
    assert prepared.manager.find_plugin("a").invoke_func("stamp") == "v2"
    assert stamp_of(swapper) == "v1"
    assert str(prepared.commit()) == "a: ok"
    assert stamp_of(swapper) == "v2" and swapper.reload_counter == 1
    with pytest.raises(HotswapError, match="already committed") as info:
        prepared.commit()
    assert info.value.step == "commit"
    with pytest.raises(HotswapError, match="already committed") as info:
        prepared.abort()
    assert info.value.step == "abort"
    assert str(swapper.reload()) == "a: unchanged"  # the lock was released


def test_prepared_reload_aborted_leaves_nothing(dirs, ev, build_plugin, make) -> None:
    """Leaving the with block without commit frees what prepare loaded; commit then refuses."""
    out = dirs[1]
    a, swapper = load_a(dirs, build_plugin, make)
    before = modules_of("_hotswap_a_")
    build_plugin(a, out, stamps={"STAMP": "v2"})
    with swapper.prepare() as prepared:
        assert len(modules_of("_hotswap_a_")) == 2
    assert modules_of("_hotswap_a_") == before
    assert hooks_run(ev, "on_free") == [("a", "v2")]
    assert stamp_of(swapper) == "v1" and swapper.reload_counter == 0
    with pytest.raises(HotswapError, match="already aborted"):
        prepared.commit()
    assert str(swapper.reload()) == "a: ok"


def test_a_second_reload_waits_for_a_prepared_one(dirs, ev, build_plugin, make) -> None:
    """Another thread's reload blocks until the prepared reload is committed from a third."""
    out = dirs[1]
    a, swapper = load_a(dirs, build_plugin, make, free_delay=3600)
    build_plugin(a, out, stamps={"STAMP": "v2"})
    prepared = swapper.prepare()
    results: list[str] = []
    waiter = threading.Thread(target=lambda: results.append(str(swapper.reload())))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and results == []
    with pytest.raises(HotswapError, match="prepared in it awaits commit or abort"):
        swapper.reload()  # the preparing thread itself is refused rather than deadlocked
    committer = threading.Thread(target=prepared.commit)
    committer.start()
    committer.join(5)
    waiter.join(5)
    assert results == ["a: unchanged"] and stamp_of(swapper) == "v2"


# -- plan ---------------------------------------------------------------------------------------
def test_plan_says_every_word_without_importing_or_calling(dirs, ev, build_plugin, make) -> None:
    """ok, unchanged, not reloadable, re-wired, dropped and error; no module, no hook."""
    src, out = dirs
    base = write(src, "base", "EXPORT = object()\n")
    write(src, "user", "from typing import Any\nclass Deps:\n    base: Any\nDEPS = Deps()\n")
    write(src, "same")
    pin = write(src, "pin", "RELOADABLE = False\n")
    write(src, "gone")
    for name in ("base", "user", "same", "pin", "gone"):
        build_plugin(src / name, out, stamps={"STAMP": "v1"})
    swapper = make(free_delay=3600)
    swapper.load_plugins()
    build_plugin(base, out, stamps={"STAMP": "v2"})
    build_plugin(pin, out, stamps={"STAMP": "v2"})
    (out / "gone.hsp").unlink()
    (out / "broken.hsp").write_bytes(b"not a zip")
    write(src, "fresh")
    build_plugin(src / "fresh", out)
    modules, log = set(sys.modules), list(ev.log)
    plan = swapper.plan()
    assert set(sys.modules) == modules and ev.log == log
    words = {Path(k).name if k.endswith(".hsp") else k: w for k, w in plan.items()}
    assert words.pop("broken.hsp").startswith("error: ")
    assert words == {"base.hsp": "ok", "fresh.hsp": "ok", "user.hsp": "re-wired",
                     "same.hsp": "unchanged", "pin.hsp": "not reloadable", "gone": "dropped"}
    (out / "broken.hsp").unlink()
    details = swapper.reload()  # the plan was right about what reload does
    assert str(details) == "base: ok, fresh: ok, pin: not reloadable, same: unchanged, user: ok"


# -- rollback -----------------------------------------------------------------------------------
def test_rollback_after_a_reload_that_misbehaves_and_twice(dirs, ev, build_plugin, make,
                                                           caplog) -> None:
    """rollback swaps back without a hook, counts as a reload, and a second one undoes it."""
    src, out = dirs
    a = write(src, "a")
    b = write(src, "b")
    build_plugin(a, out, stamps={"STAMP": "v1"})
    build_plugin(b, out, stamps={"STAMP": "v1"})
    swapper = make(free_delay=3600)
    swapper.load_plugins()
    first = swapper.current()
    build_plugin(a, out, stamps={"STAMP": "wrong"})
    swapper.reload()
    assert stamp_of(swapper) == "wrong"  # it loaded fine, but serves the wrong thing
    second = swapper.current()
    ev.log.clear()
    with caplog.at_level(logging.WARNING, logger="hotswap"):
        details = swapper.rollback()
    assert swapper.current() is first and stamp_of(swapper) == "v1"
    assert {Path(k).name: w for k, w in details.items()} == {"a.hsp": "rolled back",
                                                             "b.hsp": "unchanged"}
    assert ev.log == [] and swapper.reload_counter == 2
    assert any("rolled back" in r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING)
    assert str(swapper.rollback()) == "a: rolled back, b: unchanged"
    assert swapper.current() is second and stamp_of(swapper) == "wrong"
    assert ev.log == [] and swapper.reload_counter == 3


def test_rollback_refused_before_a_reload_and_after_the_free(dirs, ev, build_plugin, make) -> None:
    """No reload yet, or the replaced versions freed: HotswapError saying which."""
    out = dirs[1]
    a, swapper = load_a(dirs, build_plugin, make, free_delay=0)
    with pytest.raises(HotswapError, match="no reload has replaced a manager yet"):
        swapper.rollback()
    build_plugin(a, out, stamps={"STAMP": "v2"})
    swapper.reload()
    wait_for(lambda: hooks_run(ev, "on_free") == [("a", "v1")])
    with pytest.raises(HotswapError, match="were freed"):
        swapper.rollback()
    assert stamp_of(swapper) == "v2"


# -- drain-aware freeing ------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["invoke_func", "live function", "method of its object"])
def test_a_long_call_holds_the_free_until_it_returns(dirs, ev, build_plugin, make, route) -> None:
    """Version 1 stays (on_free not run) past free_delay while a call runs in it; then goes."""
    out = dirs[1]
    a, swapper = load_a(dirs, build_plugin, make, live=True, free_delay=0)
    manager = swapper.current()
    if route == "invoke_func":
        call = functools.partial(manager.find_plugin("a").invoke_func, "block")
    elif route == "live function":
        call = manager.vault.live_funcs["live_block"]
    else:
        call = manager.vault.live_types["Live_Blocker"]().block
    del manager
    results: list[str] = []
    caller = threading.Thread(target=lambda: results.append(call()), name="long-caller")
    caller.start()
    assert ev.entered.wait(5)
    build_plugin(a, out, stamps={"STAMP": "v2"})
    swapper.reload()
    time.sleep(0.3)  # well past free_delay=0: the freer has looked several times
    assert hooks_run(ev, "on_free") == []
    old = [s for s in swapper.stats() if s.state == "pending free"]
    assert [(s.plugin, s.in_flight, s.threads) for s in old] == [("a", 1, ("long-caller",))]
    ev.gate.set()
    caller.join(5)
    assert results == ["v1"]
    wait_for(lambda: hooks_run(ev, "on_free") == [("a", "v1")])


def test_a_task_suspended_in_the_old_version_holds_it(dirs, ev, build_plugin, make) -> None:
    """A pending task awaiting version 1's coroutine keeps it; it is freed once the task ends."""
    src, out = dirs
    a = write(src, "a", live=True)
    build_plugin(a, out, stamps={"STAMP": "v1"})
    swapper = make(free_delay=0)

    async def host() -> None:
        await swapper.areload()
        release = asyncio.Event()
        live_wait = swapper.current().vault.live_funcs["live_wait"]

        async def request(live_wait: Any = live_wait) -> str:
            return await live_wait(release)

        task = asyncio.create_task(request(), name="slow-request")
        del live_wait
        await asyncio.sleep(0)
        assert ev.entered.is_set()
        build_plugin(a, out, stamps={"STAMP": "v2"})
        await swapper.areload()
        await asyncio.sleep(0.3)
        assert hooks_run(ev, "on_free") == []
        stats = await asyncio.to_thread(swapper.stats)
        old = [s for s in stats if s.state == "pending free"]
        assert [(s.in_flight, s.tasks) for s in old] == [(1, ("slow-request",))]
        release.set()
        assert await task == "v1"
        for _ in range(1000):
            if hooks_run(ev, "on_free"):
                break
            await asyncio.sleep(0.005)
        assert hooks_run(ev, "on_free") == [("a", "v1")]

    asyncio.run(host())


def test_free_timeout_frees_anyway_with_a_warning(dirs, ev, build_plugin, make, caplog) -> None:
    """Code still in flight at free_timeout: the version is freed and a warning counts it."""
    out = dirs[1]
    a, swapper = load_a(dirs, build_plugin, make, free_delay=0, free_timeout=0.2)
    plugin = swapper.current().find_plugin("a")
    caller = threading.Thread(target=plugin.invoke_func, args=("block",), name="stuck")
    del plugin
    caller.start()
    assert ev.entered.wait(5)
    build_plugin(a, out, stamps={"STAMP": "v2"})
    with caplog.at_level(logging.WARNING, logger="hotswap"):
        swapper.reload()
        wait_for(lambda: hooks_run(ev, "on_free") == [("a", "v1")])
    warnings = [r.getMessage() for r in caplog.records if "free_timeout" in r.getMessage()]
    assert len(warnings) == 1
    assert "1 threads, 0 tasks and 0 awaitables" in warnings[0] and "stuck" in warnings[0]
    ev.gate.set()
    caller.join(5)


ASYNC_INVOKE = '''
import asyncio

async def invoke_func(name, *params):
    if name == "stamp":
        return STAMP
    await asyncio.sleep(0)
    return STAMP
'''


def test_an_awaitable_returned_by_invoke_func_counts_until_it_completes(dirs, ev, build_plugin,
                                                                        make) -> None:
    """A coroutine from version 1's async invoke_func, not yet awaited, keeps version 1."""
    out = dirs[1]
    a, swapper = load_a(dirs, build_plugin, make, ASYNC_INVOKE, free_delay=0)
    pending = swapper.current().find_plugin("a").invoke_func("later")
    build_plugin(a, out, stamps={"STAMP": "v2"})
    swapper.reload()
    time.sleep(0.3)
    assert hooks_run(ev, "on_free") == []
    assert [s.in_flight for s in swapper.stats() if s.state == "pending free"] == [1]
    assert asyncio.run(pending) == "v1"
    wait_for(lambda: hooks_run(ev, "on_free") == [("a", "v1")])


# -- workers a version leaves running (README "Staged reloads") ----------------------------------
WORKERS = '''
import asyncio

_stop = threading.Event()
_state = {}

def _work():
    while not _stop.wait(0.01) and not _ev.stop.is_set():
        pass

async def _tick():
    while True:
        await asyncio.sleep(0.01)

def on_load(data):
    _ev.log.append((NAME, "on_load", STAMP))
    _state["thread"] = threading.Thread(target=_work, name="ticker-" + STAMP, daemon=True)
    _state["thread"].start()
    data.call_soon_threadsafe(lambda: _state.update(task=data.create_task(_tick(), name="tick-" + STAMP)))
    _state["loop"] = data

def on_free():
    _ev.log.append((NAME, "on_free", STAMP))
    if STOP_IN_ON_FREE:
        _stop.set()
        _state["thread"].join(5)
        _state["loop"].call_soon_threadsafe(_state["task"].cancel)
'''


@pytest.mark.parametrize("stops", [False, True])
def test_workers_left_running_are_warned_about(dirs, ev, build_plugin, make, caplog,
                                               stops) -> None:
    """A thread and a task the old version started and on_free did not stop: a warning each."""
    src, out = dirs
    a = write(src, "a", f"STOP_IN_ON_FREE = {stops}\n" + WORKERS)
    build_plugin(a, out, stamps={"STAMP": "v1"})
    swapper = make(free_delay=0)
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        asyncio.run_coroutine_threadsafe(swapper.areload(loop), loop).result(10)
        wait_for(lambda: [s.tasks for s in swapper.stats()] == [("tick-v1",)])
        build_plugin(a, out, stamps={"STAMP": "v2"})
        with caplog.at_level(logging.WARNING, logger="hotswap"):
            asyncio.run_coroutine_threadsafe(swapper.areload(loop), loop).result(10)
            wait_for(lambda: hooks_run(ev, "on_free") == [("a", "v1")])
            swapper.close()  # v2 is freed too
        warned = [r.getMessage() for r in caplog.records if "still runs" in r.getMessage()]
        if stops:
            assert warned == []
        else:
            assert len(warned) == 4
            for name in ('thread "ticker-v1"', 'task "tick-v1"', 'thread "ticker-v2"',
                         'task "tick-v2"'):
                assert any(name in w and "on_free" in w for w in warned), name
    finally:
        ev.stop.set()
        asyncio.run_coroutine_threadsafe(_cancel_all_tasks(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()


async def _cancel_all_tasks() -> None:
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_close_frees_everything_even_with_calls_in_flight(dirs, ev, build_plugin, make) -> None:
    """close() does not wait for the drain: every version gets on_free at once."""
    out = dirs[1]
    a, swapper = load_a(dirs, build_plugin, make, free_delay=0)
    plugin = swapper.current().find_plugin("a")
    caller = threading.Thread(target=plugin.invoke_func, args=("block",))
    del plugin
    caller.start()
    assert ev.entered.wait(5)
    build_plugin(a, out, stamps={"STAMP": "v2"})
    swapper.reload()
    swapper.close()
    assert sorted(hooks_run(ev, "on_free")) == [("a", "v1"), ("a", "v2")]
    assert swapper.current() is None and modules_of("_hotswap_a_") == []
    ev.gate.set()
    caller.join(5)


def test_a_blocked_loop_still_shows_its_suspended_task(dirs, ev, build_plugin, make) -> None:
    """A loop whose thread is stuck elsewhere still has its task found (nothing waits for it)."""
    src, out = dirs
    a = write(src, "a", live=True)
    build_plugin(a, out, stamps={"STAMP": "v1"})
    swapper = make(free_delay=0)
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    stuck = threading.Event()
    try:
        asyncio.run_coroutine_threadsafe(swapper.areload(), loop).result(10)
        release = asyncio.Event()
        live_wait = swapper.current().vault.live_funcs["live_wait"]

        async def start(wait: Any) -> None:
            asyncio.get_running_loop().create_task(wait(release), name="parked")

        asyncio.run_coroutine_threadsafe(start(live_wait), loop).result(5)
        del live_wait
        assert ev.entered.wait(5)
        loop.call_soon_threadsafe(stuck.wait, 10)  # the loop's thread blocks in host code
        build_plugin(a, out, stamps={"STAMP": "v2"})
        swapper.reload()
        time.sleep(0.4)
        assert hooks_run(ev, "on_free") == []
        old = [s for s in swapper.stats() if s.state == "pending free"]
        assert [(s.in_flight, s.tasks) for s in old] == [(1, ("parked",))]
        stuck.set()
        loop.call_soon_threadsafe(release.set)
        wait_for(lambda: hooks_run(ev, "on_free") == [("a", "v1")])
    finally:
        stuck.set()
        asyncio.run_coroutine_threadsafe(_cancel_all_tasks(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()
