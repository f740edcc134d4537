"""The swapper under load: static linking, concurrency, areload, logs, stats, extension, pickling."""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import pickle
import sys
import threading
import time
import weakref
from pathlib import Path

import pytest
from handmade import hooks_source, pack_plugin
from helpers import wait_for

from hotswap_runtime import HotswapError, PluginManagerSwapper, StaticPlugin, VersionStats
from hotswap_runtime.artifact import REQUIRED_HOOKS


@pytest.fixture
def static_plugins(tmp_path: Path, events):
    folder = tmp_path / "static"
    names = ("s_one", "s_two", "s_three")
    for name in names:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(hooks_source(name, extra=(
            f"def live_{name}():\n    return '{name}'\n")))
    sys.path.insert(0, str(folder))
    plugins = {}
    for name in names:
        package = importlib.import_module(name)
        plugins[name] = StaticPlugin(name, package, {h: getattr(package, h) for h in REQUIRED_HOOKS},
                                     {f"live_{name}": getattr(package, f"live_{name}")})
    yield plugins
    sys.path.remove(str(folder))
    for name in names:
        sys.modules.pop(name, None)


def test_static_linking_mode(static_plugins, events, make_swapper) -> None:
    """Three statically linked plugins load with the same lifecycle and vault; reload refuses."""
    swapper = make_swapper(static_plugins=static_plugins)
    assert swapper.static_linking_mode
    details = swapper.load_plugins("D")
    assert dict(details) == {"s_one": "ok", "s_three": "ok", "s_two": "ok"}
    assert str(details) == "s_one: ok, s_three: ok, s_two: ok"
    vault = swapper.current().vault
    assert {name: fn() for name, fn in vault.live_funcs.items()} == {
        "live_s_one": "s_one", "live_s_two": "s_two", "live_s_three": "s_three"}
    assert events.data == [("s_one", "D"), ("s_three", "D"), ("s_two", "D")]
    plugin = swapper.current().find_plugin("S_TWO")
    assert plugin.sha256 is None and plugin.invoke_func("stamp") == "v1"
    with pytest.raises(HotswapError, match="^running under static linking mode$"):
        swapper.reload()
    swapper.close()
    assert events.hooks("on_free") == ["s_two", "s_three", "s_one"]
    assert "s_one" in sys.modules  # the host's own modules stay


def test_static_whitelist(static_plugins, events, make_swapper) -> None:
    """The whitelist applies in static linking mode too."""
    swapper = make_swapper(static_plugins=static_plugins, whitelist=["S_One"])
    assert str(swapper.load_plugins()) == "s_one: ok"


def test_invoke_each_logs_errors_and_runs_the_rest(plugin_dir: Path, events, make_swapper, caplog) -> None:
    """invoke_func raising inside invoke_each/invoke_each_backward is logged; the rest still run."""
    for name in ("a", "b", "c"):
        pack_plugin(plugin_dir, name, {"__init__.py": hooks_source(name, extra=(
            "SEEN = []\n"
            "def invoke_func(name, *params):\n"
            "    SEEN.append(name)\n"
            "    if NAME == 'b':\n        raise ValueError('b fails')\n"
            "    return params\n"))})
    swapper = make_swapper()
    swapper.load_plugins()
    manager = swapper.current()
    with caplog.at_level(logging.ERROR, logger="hotswap"):
        manager.invoke_each("tick", 1)
        manager.invoke_each_backward("tock")
        asyncio.run(manager.ainvoke_each("atick"))
    assert [p.lookup("SEEN") for p in manager.plugins()] == [["tick", "tock", "atick"]] * 3
    assert sum('plugin "b": invoke_func' in r.getMessage() for r in caplog.records) == 3
    with pytest.raises(ValueError, match="b fails"):
        manager.find_plugin("b").invoke_func("direct")


def test_ainvoke_awaits_in_order(plugin_dir: Path, events, make_swapper) -> None:
    """ainvoke_each awaits what invoke_func returns, in order; backward in reverse."""
    for name in ("a", "b"):
        pack_plugin(plugin_dir, name, {"__init__.py": hooks_source(name, extra=(
            "async def _work(out):\n    out.append(NAME)\n"
            "def invoke_func(name, *params):\n    return _work(params[0])\n"))})
    swapper = make_swapper()
    swapper.load_plugins()
    out: list[str] = []
    asyncio.run(swapper.current().ainvoke_each("x", out))
    asyncio.run(swapper.current().ainvoke_each_backward("x", out))
    assert out == ["a", "b", "b", "a"]


def test_in_flight_call_finishes_on_its_version(plugin_dir: Path, events, make_swapper) -> None:
    """A call that began on version 1 finishes on version 1 while new calls reach version 2."""
    body = ("import threading\nGATE = threading.Event()\nENTERED = threading.Event()\n"
            "def live_slow():\n    ENTERED.set()\n    GATE.wait(5)\n    return STAMP\n")
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", extra=body)})
    swapper = make_swapper(free_delay=3600)
    swapper.load_plugins()
    old_plugin = swapper.current().find_plugin("a")
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(swapper.current().vault.live_funcs["live_slow"]()))
    worker.start()
    assert old_plugin.lookup("ENTERED").wait(5)
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", stamp="v2", extra=body)})
    swapper.reload()
    assert swapper.current().find_plugin("a").invoke_func("stamp") == "v2"
    old_plugin.lookup("GATE").set()
    worker.join(5)
    assert result == ["v1"]


def test_stress_threads_call_during_reloads(plugin_dir: Path, events, make_swapper) -> None:
    """Several threads calling into current() during dozens of reloads, some failing, see zero
    errors."""
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", stamp="0")})
    pack_plugin(plugin_dir, "b", {"__init__.py": hooks_source("b", extra="def live_b(x):\n    return x + 1\n")})
    swapper = make_swapper()
    swapper.load_plugins()
    stop = threading.Event()
    errors: list[BaseException] = []
    calls = [0]

    def hammer() -> None:
        while not stop.is_set():
            try:
                manager = swapper.current()
                int(manager.find_plugin("a").invoke_func("stamp"))
                assert manager.vault.live_funcs["live_b"](1) == 2
                manager.invoke_each("echo", 1)
                calls[0] += 1
            except BaseException as exc:  # the thread reports every failure to the test - every error counts
                errors.append(exc)
            time.sleep(0.0002)  # let the reloading thread have the GIL now and then

    builds = []
    for n in range(1, 31):
        path = pack_plugin(plugin_dir / "builds", "a", {"__init__.py": hooks_source("a", stamp=str(n))})
        builds.append(path.read_bytes())
    broken = pack_plugin(plugin_dir / "builds", "a", {"__init__.py": hooks_source("a") + "1 / 0\n"}).read_bytes()
    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for n, raw in enumerate(builds):
            if n % 5 == 4:  # a failed reload now and then: the callers must not notice either
                (plugin_dir / "a.hsp").write_bytes(broken)
                with pytest.raises(HotswapError, match="ZeroDivisionError"):
                    swapper.reload()
            (plugin_dir / "a.hsp").write_bytes(raw)
            swapper.reload()
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    assert errors == []
    assert calls[0] > 0
    assert swapper.reload_counter == 30
    assert swapper.current().find_plugin("a").invoke_func("stamp") == "30"


def test_concurrent_reloads_are_serialised(plugin_dir: Path, events, make_swapper) -> None:
    """Reloads called from several threads at once all succeed, one after another."""
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a")})
    swapper = make_swapper()
    swapper.load_plugins()
    errors: list[BaseException] = []

    def reload() -> None:
        try:
            swapper.reload()
        except BaseException as exc:  # the thread reports every failure to the test
            errors.append(exc)

    threads = [threading.Thread(target=reload) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == [] and swapper.reload_counter == 6


def test_areload_keeps_the_loop_serving(plugin_dir: Path, events, make_swapper) -> None:
    """While areload imports a slow plugin in a worker thread, the event loop keeps running tasks."""
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a")})
    swapper = make_swapper()
    swapper.load_plugins()
    slow = "import time\ntime.sleep(0.3)\n"
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", stamp="v2", extra=slow)})

    async def main() -> tuple[int, str]:
        ticks = 0
        reload = asyncio.ensure_future(swapper.areload())
        while not reload.done():
            ticks += 1
            await asyncio.sleep(0.01)
        details = await reload
        return ticks, str(details)

    ticks, details = asyncio.run(main())
    assert details == "a: ok"
    assert ticks >= 5
    assert swapper.current().find_plugin("a").invoke_func("stamp") == "v2"


def test_logging_lines(plugin_dir: Path, events, make_swapper, caplog) -> None:
    """One info line before a load, one with the Details after, one debug line per hook."""
    pack_plugin(plugin_dir, "world", {"__init__.py": hooks_source("world")})
    swapper = make_swapper()
    with caplog.at_level(logging.DEBUG, logger="hotswap"):
        swapper.load_plugins()
    messages = [r.getMessage() for r in caplog.records if r.name == "hotswap"]
    assert messages[0] == "loading plugins: not reloadable: -; unchanged: -; to load: world"
    assert "invoking world.on_load" in messages
    assert messages[-1] == "loaded plugins: world: ok"


def test_extension_factory_per_manager(plugin_dir: Path, events, make_swapper) -> None:
    """Each manager's vault gets its own extension; a carried-over version initialises the new one."""
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", extra=(
        "def on_init(vault):\n    vault.extension.append(NAME)\n"))})
    swapper = make_swapper(extension_factory=list)
    swapper.load_plugins()
    first = swapper.current().vault.extension
    swapper.reload()
    assert first == ["a"] and swapper.current().vault.extension == ["a"]
    assert swapper.current().vault.extension is not first


def test_stats_and_freed_but_referenced(plugin_dir: Path, events, make_swapper) -> None:
    """stats() reports current and pending versions, and a freed version a caller still holds."""
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", extra="class Job:\n    pass\n")})
    swapper = make_swapper(free_delay=3600)
    swapper.load_plugins()
    job = swapper.current().find_plugin("a").lookup("Job")()
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", stamp="v2", extra="class Job:\n    pass\n")})
    swapper.reload()
    stats = swapper.stats()
    assert [(s.plugin, s.state, s.managers) for s in stats] == [("a", "pending free", 1), ("a", "current", 1)]
    assert isinstance(stats[0], VersionStats) and stats[0].load < stats[1].load
    other = make_swapper(plugin_dir)
    other.load_plugins()
    swapper._frees.release(swapper._frees.pending[0])  # the free timer firing now
    gc.collect()
    assert [s.state for s in swapper.stats()] == ["freed", "current"]
    ref = weakref.ref(type(job))
    del job
    gc.collect()
    assert ref() is None
    assert [s.state for s in swapper.stats()] == ["current"]


def test_pickling_plugin_classes(plugin_dir: Path, events, make_swapper) -> None:
    """Instances of a plugin's classes pickle and unpickle while their version lives."""
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a"),
                                  "model.py": "import dataclasses\n@dataclasses.dataclass\nclass Job:\n    n: int\n"})
    swapper = make_swapper()
    swapper.load_plugins()
    root = swapper.current().find_plugin("a").lookup("__name__")
    job_cls = importlib.import_module(f"{root}.model").Job
    clone = pickle.loads(pickle.dumps(job_cls(3)))
    assert type(clone) is job_cls and clone.n == 3


def test_finder_removed_when_nothing_mounted(plugin_dir: Path, events) -> None:
    """The meta-path finder is installed while versions are mounted and gone after close()."""
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a")})
    swapper = PluginManagerSwapper(plugin_dir, free_delay=0)
    swapper.load_plugins()
    assert any(type(f).__name__ == "_Finder" for f in sys.meta_path)
    swapper.close()
    wait_for(lambda: not any(type(f).__name__ == "_Finder" for f in sys.meta_path))


def test_pending_free_never_keeps_the_process_alive(plugin_dir: Path, tmp_path: Path) -> None:
    """A host that exits with a free pending (free_delay=3600) exits at once."""
    import subprocess

    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a").replace(
        "import hotswap_test_events as _ev", "class _ev:\n    hook = staticmethod(lambda *a: None)")})
    script = tmp_path / "host.py"
    script.write_text(
        "import sys\n"
        "from hotswap_runtime import PluginManagerSwapper\n"
        f"swapper = PluginManagerSwapper({str(plugin_dir)!r}, free_delay=3600)\n"
        "swapper.load_plugins()\n"
        "swapper.reload()\n"
        "assert [s.state for s in swapper.stats()] == ['current']\n"
        "print('done')\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"


def test_reload_from_inside_a_load_is_refused(plugin_dir: Path, events, make_swapper) -> None:
    """A reload callback that reloads gets an error instead of a deadlock; the load then fails."""
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a")})
    inner: list[BaseException] = []

    def callback(new, old) -> None:
        try:
            swapper.reload()
        except HotswapError as exc:
            inner.append(exc)
            raise

    swapper = make_swapper(reload_callback=callback)
    with pytest.raises(HotswapError, match="reload_callback failed"):
        swapper.load_plugins()
    assert "a load is running in this thread" in str(inner[0])
    assert swapper.current() is None


def test_triggers_drive_a_real_swapper(plugin_dir: Path, events, make_swapper) -> None:
    """watch_plugin_dir and reload_on_signal reload a real swapper; the new stamp serves."""
    import os
    import signal

    from hotswap_runtime import triggers

    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a")})
    swapper = make_swapper()
    swapper.load_plugins()
    assert swapper.plugin_dir == str(plugin_dir)
    stop = triggers.reload_on_signal(swapper)
    try:
        pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", stamp="signal")})
        os.kill(os.getpid(), signal.SIGUSR1)
        wait_for(lambda: swapper.current().find_plugin("a").invoke_func("stamp") == "signal")
    finally:
        stop()
    stop = triggers.watch_plugin_dir(swapper, debounce=0.05)
    try:
        counter = swapper.reload_counter
        deadline = time.monotonic() + 10
        # the watcher starts asynchronously: rewrite until it notices
        while swapper.current().find_plugin("a").invoke_func("stamp") != "watched":
            assert time.monotonic() < deadline, "the watcher never reloaded"
            pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", stamp="watched")})
            time.sleep(0.2)
        assert swapper.reload_counter > counter
    finally:
        stop()


def test_static_plugin_checked_like_an_artifact(static_plugins, events, make_swapper) -> None:
    """A static plugin lacking a hook is refused with the same 'missing functions' error."""
    one = static_plugins["s_one"]
    hooks = {k: v for k, v in one.hooks.items() if k != "on_free"}
    broken = StaticPlugin(one.name, one.package, hooks, one.live_funcs)
    swapper = make_swapper(static_plugins={"s_one": broken})
    with pytest.raises(HotswapError, match='^plugin "s_one": missing functions: on_free;'):
        swapper.load_plugins()
    assert swapper.current() is None


def test_arguments_after_plugin_dir_are_keyword_only_and_counter_is_read_only(
        tmp_path: Path) -> None:
    """``PluginManagerSwapper(plugin_dir, *, ...)`` (README "Loading and reloading"); ``reload_counter`` and ``logger``
    can be read, not set."""
    with pytest.raises(TypeError):
        PluginManagerSwapper(tmp_path, logging.getLogger("x"))
    swapper = PluginManagerSwapper(tmp_path, free_delay=0)
    try:
        assert swapper.reload_counter == 0
        assert swapper.logger is logging.getLogger("hotswap")
        with pytest.raises(AttributeError):
            swapper.reload_counter = 5
        with pytest.raises(AttributeError):
            swapper.logger = logging.getLogger("x")
        assert swapper.reload_counter == 0
    finally:
        swapper.close()


def test_areload_starts_the_free_after_the_loop_resumed(plugin_dir: Path, events, make_swapper,
                                                        monkeypatch) -> None:
    """With free_delay 0, the replaced version's free waits until the coroutine awaiting areload
    has resumed (started from the worker, the freer took the GIL from the waking loop for a
    switch interval: 14 ms to await a reload that took 8), then runs while the loop does."""
    from hotswap_runtime import freeing
    monkeypatch.setattr(freeing, "HANDOFF_WAIT", 60.0)  # only the loop's callback frees it here
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a")})
    swapper = make_swapper()
    swapper.load_plugins()
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", stamp="v2")})

    async def main() -> tuple[list[str], list[str]]:
        await swapper.areload()
        resumed = events.hooks("on_free")
        for _ in range(500):
            if events.hooks("on_free"):
                break
            await asyncio.sleep(0.01)
        return resumed, events.hooks("on_free")

    resumed, later = asyncio.run(main())
    assert resumed == []
    assert later == ["a"]


@pytest.mark.parametrize("closed", [True, False], ids=["loop-closed", "loop-never-run"])
def test_areload_free_waits_no_longer_than_handoff_wait(plugin_dir: Path, events, make_swapper,
                                                        monkeypatch, closed: bool) -> None:
    """A loop closed or stopped before it resumed the awaiting coroutine never runs the
    callback that starts the free: the free still runs, after HANDOFF_WAIT."""
    from hotswap_runtime import freeing
    monkeypatch.setattr(freeing, "HANDOFF_WAIT", 0.2)
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a")})
    swapper = make_swapper()
    swapper.load_plugins()
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", stamp="v2")})
    loop = asyncio.new_event_loop()
    try:
        if closed:
            loop.close()
        assert str(swapper._reload_for_loop(None, loop)) == "a: ok"  # areload's worker, alone
        assert events.hooks("on_free") == []
        wait_for(lambda: events.hooks("on_free") == ["a"], timeout=10)
    finally:
        loop.close()
