"""End to end, what counts as in flight (README "Staged reloads"): every asyncio shape holds the free.

Each plugin is built by the real ``hotswap build`` (once per shape, two stamps). A request
parks in the old version's coroutine on an ``asyncio.Event`` the test sets after the reload; the
old version's ``on_free`` must not run while it is parked, must run right after it finishes,
and the request must return the old version's answer. Nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import random
import shutil
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hotswap_runtime import PluginManagerSwapper

EVENTS = "hotswap_inflight_events"

COMMON = '''\
import asyncio
import hotswap_inflight_events as _ev

STAMP = "none"
TOKEN = next(_ev.tokens)  # one per loaded version
_state = {}

def on_load(data):
    pass

def on_init(vault):
    pass

def on_free():
    _ev.log.append(("on_free", STAMP, TOKEN))
    _ev.freed.add(TOKEN)
    kept = _state.pop("kept", None)
    if kept is not None:
        kept.close()
    for key in ("ticker", "spawned"):  # the version's own tasks: stopped here
        task = _state.get(key)
        if task is not None:
            task.get_loop().call_soon_threadsafe(task.cancel)

def export():
    return None

def import_():
    return None

def reloadable():
    return True

async def _handler(gate):
    _ev.entered.append(TOKEN)
    await gate.wait()
    from . import answer  # a module of this version: gone once the version is pruned
    if TOKEN in _ev.freed:
        _ev.late.append(TOKEN)
    _ev.log.append(("finished", STAMP, TOKEN))
    return answer.of(STAMP)

async def _tick():
    while True:
        await asyncio.sleep(0.005)

def _start_ticker():
    _state["ticker"] = asyncio.get_running_loop().create_task(_tick(), name="ticker-" + STAMP)
    return None

async def live_wait(gate):
    return await _handler(gate)

def live_start(gate):  # a plain def handing out an async helper's coroutine, unstarted
    return _handler(gate)
'''

SHAPES = {
    # an async def invoke_func: its coroutine is the entry point itself
    "async invoke_func": '''
async def invoke_func(name, *params):
    if name == "start ticker":
        return _start_ticker()
    return await _handler(*params)
''',
    # the most common dispatch: a plain def returning an async handler's coroutine
    "sync invoke_func": '''
HANDLERS = {"wait": _handler}

def invoke_func(name, *params):
    if name == "start ticker":
        return _start_ticker()
    if name == "keep":  # a coroutine the version keeps for itself, never handed out
        _state["kept"] = _tick()
        return None
    if name == "spawn":  # a task of the version's own, which it keeps and hands out
        task = asyncio.get_running_loop().create_task(_handler(*params), name="spawned-" + STAMP)
        _state["spawned"] = task
        return task
    return HANDLERS[name](*params)
''',
    # an async live function taken from the vault
    "async live function": '''
def invoke_func(name, *params):
    if name == "start ticker":
        return _start_ticker()
    return None
''',
}

PATTERNS = ["awaited directly", "gather", "wait_for", "shield", "TaskGroup", "task by the host",
            "not started yet"]
MODES = ["areload in the loop", "reload from a plain thread", "loaded before asyncio.run"]


@pytest.fixture
def ev() -> Iterator[types.ModuleType]:
    module = types.ModuleType(EVENTS)
    module.log = []
    module.freed = set()
    module.late = []
    module.entered = []
    module.tokens = itertools.count(1)
    sys.modules[EVENTS] = module
    yield module
    del sys.modules[EVENTS]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """shape -> stamp -> the built artifact of plugin ``a``."""
    from hotswap_build.build import build

    root = tmp_path_factory.mktemp("inflight")
    out: dict[str, dict[str, Path]] = {}
    for index, (shape, body) in enumerate(SHAPES.items()):
        src = root / f"src{index}" / "a"
        src.mkdir(parents=True)
        (src / "__init__.py").write_text(COMMON + body)
        (src / "answer.py").write_text("def of(stamp):\n    return 'answer from ' + stamp\n")
        out[shape] = {}
        for stamp in ("v1", "v2"):
            build(src, root / f"bin{index}{stamp}", stamps={"STAMP": stamp})
            out[shape][stamp] = root / f"bin{index}{stamp}" / "a.hsp"
    return out


@pytest.fixture
def host(tmp_path: Path, artifacts) -> Iterator[Callable[..., PluginManagerSwapper]]:
    """``host(shape, **kwargs)``: a swapper on a folder holding ``a`` v1 of ``shape``."""
    made: list[PluginManagerSwapper] = []

    def make(shape: str, **kwargs: Any) -> PluginManagerSwapper:
        folder = tmp_path / "plugins"
        folder.mkdir()
        shutil.copy(artifacts[shape]["v1"], folder / "a.hsp")
        kwargs.setdefault("free_delay", 0)
        swapper = PluginManagerSwapper(folder, **kwargs)
        made.append(swapper)
        return swapper

    yield make
    for swapper in made:
        swapper.close()


def install(artifacts, swapper: PluginManagerSwapper, shape: str, stamp: str) -> None:
    shutil.copy(artifacts[shape][stamp], Path(swapper.plugin_dir) / "a.hsp")


def caller(swapper: PluginManagerSwapper, shape: str) -> Callable[[asyncio.Event], Any]:
    """What a request calls on the *current* manager: an awaitable comes back."""
    manager = swapper.current()
    if shape == "async live function":
        return manager.vault.live_funcs["live_wait"]
    plugin = manager.find_plugin("a")
    return lambda gate: plugin.invoke_func("wait", gate)


async def request(pattern: str, call: Callable[[asyncio.Event], Any], gate: asyncio.Event) -> str:
    if pattern == "awaited directly":
        return await call(gate)
    if pattern == "gather":
        return (await asyncio.gather(call(gate)))[0]
    if pattern == "wait_for":
        return await asyncio.wait_for(call(gate), 30)
    if pattern == "shield":
        return await asyncio.shield(call(gate))
    if pattern == "TaskGroup":
        async with asyncio.TaskGroup() as group:
            task = group.create_task(call(gate))
        return task.result()
    raise AssertionError(pattern)


def finished_before_free(ev: types.ModuleType) -> list[str]:
    return [what for what, stamp, _ in ev.log if stamp == "v1"]


async def reload_with(mode: str, swapper: PluginManagerSwapper) -> None:
    if mode == "areload in the loop":
        await swapper.areload()
    else:  # a plain thread, as the signal and file triggers use: it never sees the loop
        done = threading.Event()
        thread = threading.Thread(target=lambda: (swapper.reload(), done.set()))
        thread.start()
        while not done.is_set():
            await asyncio.sleep(0.01)
        thread.join()


def load_in(mode: str, swapper: PluginManagerSwapper) -> Callable[[], Any]:
    """The first load as ``mode`` does it: now (before ``asyncio.run``), or what the loop awaits
    first (``areload``, or a load from a plain thread)."""
    if mode == "loaded before asyncio.run":
        swapper.load_plugins()

    async def first_load() -> None:
        if mode == "areload in the loop":
            await swapper.areload()
        elif mode == "reload from a plain thread":
            await reload_with(mode, swapper)

    return first_load


async def from_a_thread(fn: Callable[[], Any]) -> Any:
    """``fn()`` in a plain thread once this task is parked (``to_thread`` starts it while the
    calling task is still mid-step, so it would see that task running)."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: (time.sleep(0.02), out.append(fn())))
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.005)
    thread.join()
    return out[0]


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_pending_coroutine_holds_its_version(ev, host, artifacts, shape, pattern, mode) -> None:
    swapper = host(shape)
    first_load = load_in(mode, swapper)

    async def main() -> None:
        await first_load()
        gate = asyncio.Event()
        call = caller(swapper, shape)
        if pattern == "task by the host":
            pending: Any = asyncio.create_task(call(gate))
        elif pattern == "not started yet":
            pending = call(gate)
        else:
            pending = asyncio.create_task(request(pattern, call, gate))
        del call
        if pattern != "not started yet":
            await wait_until(lambda: ev.entered)
        install(artifacts, swapper, shape, "v2")
        await reload_with(mode, swapper)
        await asyncio.sleep(0.3)  # free_delay=0: the freer has searched many times by now
        assert finished_before_free(ev) == [], "v1 was freed while a coroutine of it was pending"
        stats = await from_a_thread(swapper.stats)
        assert [s.in_flight > 0 for s in stats if s.state == "pending free"] == [True]
        gate.set()
        assert await pending == "answer from v1"
        await wait_until(lambda: finished_before_free(ev) == ["finished", "on_free"])
        assert ev.late == []

    asyncio.run(main())


@pytest.mark.parametrize("mode", MODES)
def test_a_plugins_own_ticker_does_not_hold_the_free_and_on_free_stops_it(ev, host, artifacts,
                                                                         mode, caplog) -> None:
    shape = "sync invoke_func"
    swapper = host(shape)
    first_load = load_in(mode, swapper)

    async def main() -> None:
        await first_load()
        swapper.current().find_plugin("a").invoke_func("start ticker")
        await asyncio.sleep(0.05)
        tickers = [t for t in asyncio.all_tasks() if t.get_name() == "ticker-v1"]
        assert len(tickers) == 1
        install(artifacts, swapper, shape, "v2")
        with caplog.at_level(logging.WARNING, logger="hotswap"):
            await reload_with(mode, swapper)
            await wait_until(lambda: [w for w, s, _ in ev.log if s == "v1"] == ["on_free"])
            await wait_until(tickers[0].done)
        assert tickers[0].cancelled()
        assert [r.getMessage() for r in caplog.records if "still runs" in r.getMessage()] == []

    asyncio.run(main())


@pytest.mark.parametrize("awaited", [True, False], ids=["awaited by the host", "not awaited"])
def test_a_task_the_version_made_holds_the_free_only_while_the_host_awaits_it(
        ev, host, artifacts, awaited) -> None:
    """A task the version created and keeps is its own worker (freed, cancelled by on_free)
    unless something outside the version awaits it: then it holds the free like any call."""
    shape = "sync invoke_func"
    swapper = host(shape)
    swapper.load_plugins()

    async def main() -> None:
        gate = asyncio.Event()
        task = swapper.current().find_plugin("a").invoke_func("spawn", gate)
        waiter = asyncio.create_task(_await(task)) if awaited else None
        await wait_until(lambda: ev.entered)
        install(artifacts, swapper, shape, "v2")
        await reload_with("reload from a plain thread", swapper)
        if waiter is not None:
            await asyncio.sleep(0.3)
            assert finished_before_free(ev) == []
            gate.set()
            assert await waiter == "answer from v1"
            await wait_until(lambda: finished_before_free(ev) == ["finished", "on_free"])
        else:
            await wait_until(lambda: finished_before_free(ev) == ["on_free"])
            await wait_until(task.done)
            assert task.cancelled()

    asyncio.run(main())


async def _await(task: asyncio.Task[Any]) -> Any:
    return await task


def test_soak_nothing_finishes_after_its_version_is_freed(ev, host, artifacts) -> None:
    """200 requests at a time through every shape and pattern, a reload every 50 ms from a plain
    thread, for a bounded while: no coroutine finishes after its version's on_free."""
    shape = "sync invoke_func"
    swapper = host(shape)
    swapper.load_plugins()
    stop = threading.Event()
    reloads = 0
    errors: list[BaseException] = []

    def reloader() -> None:
        nonlocal reloads
        stamps = itertools.cycle(["v2", "v1"])
        while not stop.wait(0.05):
            install(artifacts, swapper, shape, next(stamps))
            try:
                swapper.reload()
                reloads += 1
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

    async def client(rng: random.Random, deadline: float, done: list[int]) -> None:
        while time.monotonic() < deadline:
            manager = swapper.current()
            gate = asyncio.Event()
            live = manager.vault.live_funcs["live_wait"]
            plugin = manager.find_plugin("a")
            del manager
            call = rng.choice([live, lambda g, p=plugin: p.invoke_func("wait", g)])
            pattern = rng.choice(PATTERNS)
            if pattern == "task by the host":
                pending: Any = asyncio.create_task(call(gate))
            elif pattern == "not started yet":
                pending = call(gate)
            else:
                pending = asyncio.create_task(request(pattern, call, gate))
            del call, live, plugin
            await asyncio.sleep(rng.random() * 0.03)
            gate.set()
            result = await pending
            assert result.startswith("answer from v")
            done.append(1)

    async def main() -> int:
        deadline = time.monotonic() + SOAK_SECONDS
        done: list[int] = []
        rngs = [random.Random(n) for n in range(200)]
        await asyncio.gather(*(client(rng, deadline, done) for rng in rngs))
        return len(done)

    thread = threading.Thread(target=reloader, name="reloader")
    thread.start()
    try:
        completed = asyncio.run(main())
    finally:
        stop.set()
        thread.join(10)
    assert errors == []
    assert reloads > 20 and completed > 1000
    assert ev.late == [], f"{len(ev.late)} coroutines finished after their version's on_free"


SOAK_SECONDS = 15.0


def test_every_running_loop_is_found_on_the_stacks_without_registration() -> None:
    """Two loops run in two threads; a third thread finds both, and every pending task."""
    from hotswap_runtime.inflight import pending_tasks, running_loops

    loops = [asyncio.new_event_loop() for _ in range(2)]
    runners = [threading.Thread(target=loop.run_forever, name=f"loop-{n}") for n, loop in
               enumerate(loops)]
    for runner in runners:
        runner.start()
    try:
        gate = [asyncio.run_coroutine_threadsafe(_make_event(), loop).result(10) for loop in loops]
        parked = [asyncio.run_coroutine_threadsafe(_park(event, 50), loop).result(10)
                  for event, loop in zip(gate, loops, strict=True)]
        seen: list[Any] = []
        reader = threading.Thread(target=lambda: seen.extend([running_loops(), pending_tasks()]))
        reader.start()
        reader.join(10)
        found, tasks = seen
        assert {loop: found[loop] for loop in loops} == {
            loop: runner.ident for loop, runner in zip(loops, runners, strict=True)}
        assert {t for t in tasks if t.get_name().startswith("parked-")} == {
            t for group in parked for t in group}
        for event, loop in zip(gate, loops, strict=True):
            loop.call_soon_threadsafe(event.set)
    finally:
        for loop, runner in zip(loops, runners, strict=True):
            loop.call_soon_threadsafe(loop.stop)
            runner.join(10)
            loop.close()


async def _make_event() -> asyncio.Event:
    return asyncio.Event()


async def _park(event: asyncio.Event, count: int) -> list[asyncio.Task[Any]]:
    return [asyncio.create_task(event.wait(), name=f"parked-{id(event)}-{n}")
            for n in range(count)]


def test_a_loop_stuck_in_one_step_delays_a_free_only_briefly(ev, host, artifacts) -> None:
    """A host task blocking its loop's thread (a sync call inside a coroutine) cannot be read
    while it runs; with nothing of the old version anywhere, the free goes on within a second
    or so, not at free_timeout."""
    shape = "sync invoke_func"
    swapper = host(shape)
    swapper.load_plugins()
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, name="stuck-loop")
    runner.start()
    stuck = threading.Event()

    async def blocking_step() -> None:
        stuck.wait(30)  # host code blocking the loop inside one task step

    try:
        blocked = asyncio.run_coroutine_threadsafe(blocking_step(), loop)
        install(artifacts, swapper, shape, "v2")
        swapper.reload()
        deadline = time.monotonic() + 15
        while finished_before_free(ev) != ["on_free"]:
            assert time.monotonic() < deadline, "the free waited for the stuck loop"
            time.sleep(0.01)
        assert not blocked.done()  # the loop was stuck all along
    finally:
        stuck.set()
        loop.call_soon_threadsafe(loop.stop)
        runner.join(10)
        loop.close()


# -- unstarted coroutines held by plain synchronous code ------------------------------------------

#: a module-level container of the host (this module): what a host keeps for later
HELD: list[Any] = []

STARTERS = {
    "sync invoke_func": lambda manager: functools.partial(
        manager.find_plugin("a").invoke_func, "wait"),
    "async live function": lambda manager: manager.vault.live_funcs["live_wait"],
    "sync live function": lambda manager: manager.vault.live_funcs["live_start"],
}


def _reload_from(where: str, swapper: PluginManagerSwapper) -> None:
    if where == "the same thread":
        swapper.reload()
        return
    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _catch(swapper.reload, errors), name="reloader")
    thread.start()
    thread.join(30)
    assert errors == []


def _catch(fn: Callable[[], Any], errors: list[BaseException]) -> None:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - reported by the caller
        errors.append(exc)


def _wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


async def _later(gate: asyncio.Event, pending: Any) -> Any:
    gate.set()
    return await pending


@pytest.mark.parametrize("where", ["the same thread", "another thread"])
@pytest.mark.parametrize("holder", ["a local of a sync thread", "a host module-level list"])
@pytest.mark.parametrize("starter", list(STARTERS))
def test_an_unstarted_coroutine_held_by_plain_code_holds_its_version(
        ev, host, artifacts, starter, holder, where) -> None:
    """``aw = invoke_func(...)`` in plain code (a pytest test, a sync handler), a reload, and
    ``asyncio.run(aw)`` later: the old version stays alive until it has finished."""
    shape = "sync invoke_func" if starter != "async live function" else "async live function"
    swapper = host(shape)
    swapper.load_plugins()
    gate = asyncio.Event()
    aw = STARTERS[starter](swapper.current())(gate)
    assert inspect.iscoroutine(aw)
    if holder == "a host module-level list":
        HELD.append(aw)
        del aw
    try:
        install(artifacts, swapper, shape, "v2")
        _reload_from(where, swapper)
        time.sleep(0.3)  # free_delay=0: the freer has searched many times by now
        assert finished_before_free(ev) == [], "v1 was freed while a coroutine of it was unstarted"
        stats = swapper.stats()
        assert [s.in_flight > 0 for s in stats if s.state == "pending free"] == [True]
        assert asyncio.run(_later(gate, HELD.pop() if HELD else aw)) == "answer from v1"
        aw = None
        _wait_until(lambda: finished_before_free(ev) == ["finished", "on_free"])
        assert ev.late == []
    finally:
        HELD.clear()


SYNC_ONLY = """\
import hotswap_inflight_events as _ev

STAMP = "none"

def on_load(data):
    pass

def on_init(vault):
    pass

def on_free():
    _ev.log.append(("on_free", STAMP, 0))

def export():
    return None

def import_():
    return None

def reloadable():
    return True

def invoke_func(name, *params):
    return STAMP
"""


@pytest.mark.parametrize("code", ["no async code", "async code"])
def test_only_a_version_with_async_code_pays_a_heap_search(ev, tmp_path, artifacts, monkeypatch,
                                                            code) -> None:
    """The free of a version without coroutine code never runs the heap pass; one with it does
    (once: nothing holds it)."""
    from hotswap_build.build import build
    from hotswap_runtime import inflight

    if code == "no async code":
        src = tmp_path / "src" / "a"
        src.mkdir(parents=True)
        (src / "__init__.py").write_text(SYNC_ONLY)
        built = {}
        for stamp in ("v1", "v2"):
            build(src, tmp_path / stamp, stamps={"STAMP": stamp})
            built[stamp] = tmp_path / stamp / "a.hsp"
    else:
        built = artifacts["sync invoke_func"]
    passes: list[int] = []
    real = inflight._get_referrers

    def counting(*objs: Any) -> list[Any]:
        passes.append(len(objs))
        return real(*objs)

    monkeypatch.setattr(inflight, "_get_referrers", counting)
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copy(built["v1"], folder / "a.hsp")
    swapper = PluginManagerSwapper(folder, free_delay=0)
    try:
        swapper.load_plugins()
        if code == "no async code":
            assert swapper.current().find_plugin("a").invoke_func("x") == "v1"
        shutil.copy(built["v2"], folder / "a.hsp")
        swapper.reload()
        _wait_until(lambda: [w for w, s, _ in ev.log if s == "v1"] == ["on_free"])
    finally:
        swapper.close()
    if code == "no async code":
        assert passes == []
    else:
        assert len(passes) == 1 and passes[0] >= 3  # _handler, _tick, live_wait at least


@pytest.mark.parametrize("where", ["the same thread", "another thread"])
def test_a_coroutine_the_version_keeps_for_itself_does_not_hold_its_free(ev, host, artifacts,
                                                                         where) -> None:
    """Like its own tasks, an unstarted coroutine held only by the version's own globals is
    the version's: the free goes on (its on_free closes it)."""
    shape = "sync invoke_func"
    swapper = host(shape, free_timeout=60)
    swapper.load_plugins()
    assert swapper.current().find_plugin("a").invoke_func("keep") is None
    install(artifacts, swapper, shape, "v2")
    _reload_from(where, swapper)
    _wait_until(lambda: finished_before_free(ev) == ["on_free"])
