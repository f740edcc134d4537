"""Triggers (README "Reload triggers"): reload on a signal or on artifact changes, never crashing the host."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import NOOP_HOOKS, wait_for

from hotswap_runtime import HotswapError, PluginManagerSwapper, triggers

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs POSIX signals")


class Details(dict):
    def __str__(self) -> str:
        return ", ".join(f"{Path(k).stem}: {v}" for k, v in sorted(self.items()))


class FakeSwapper:
    """Stands in for PluginManagerSwapper: counts reloads, can be told to fail or be slow."""

    def __init__(self, plugin_dir: Path | None = None) -> None:
        self.plugin_dir = plugin_dir
        self.logger = logging.getLogger("hotswap")
        self.reloads = 0          # successful ones
        self.attempts = 0
        self.entered = 0          # reloads begun
        self.fail = False
        self.delay = 0.0
        self.data: list[Any] = []
        self.threads: list[threading.Thread] = []
        self.during_reload: Callable[[], Any] | None = None

    def _do(self, data: Any) -> Details:
        self.attempts += 1
        self.data.append(data)
        self.threads.append(threading.current_thread())
        if self.during_reload is not None:
            self.during_reload()
        if self.fail:
            raise HotswapError('plugin "a": on_load failed: boom', plugin="a", step="on_load")
        self.reloads += 1
        return Details({"/p/a.hsp": "ok", "/p/b.hsp": "unchanged"})

    def reload(self, data: Any) -> Details:
        self.entered += 1
        time.sleep(self.delay)
        return self._do(data)

    async def areload(self, data: Any) -> Details:
        self.entered += 1
        await asyncio.sleep(self.delay)
        return self._do(data)


async def await_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.01)


def stays(predicate: Callable[[], bool], seconds: float) -> bool:
    """True if ``predicate`` holds for the whole (short) period."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def host_handler() -> Iterator[list[int]]:
    """The host's own SIGUSR1 handler, installed before the trigger; restored after the test."""
    calls: list[int] = []
    original = signal.signal(signal.SIGUSR1, lambda signum, frame: calls.append(signum))
    yield calls
    signal.signal(signal.SIGUSR1, original)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGUSR1)


def test_signal_reloads_in_a_background_thread_and_stop_restores_handler(
        host_handler: list[int], caplog: pytest.LogCaptureFixture) -> None:
    """SIGUSR1 reloads with the data, off the main thread, logs Details; stop restores."""
    caplog.set_level(logging.INFO, logger="hotswap")
    swapper = FakeSwapper()
    previous = signal.getsignal(signal.SIGUSR1)
    stop = triggers.reload_on_signal(swapper, data={"k": 1})
    try:
        assert signal.getsignal(signal.SIGUSR1) is not previous
        kill_self()
        wait_for(lambda: swapper.reloads == 1)
        assert swapper.data == [{"k": 1}]
        assert swapper.threads[0] is not threading.main_thread()
        wait_for(lambda: any("a: ok, b: unchanged" in r.getMessage() for r in caplog.records))
        record = next(r for r in caplog.records if "a: ok" in r.getMessage())
        assert record.levelno == logging.INFO and record.name == "hotswap"
        assert record.getMessage() == "reload on SIGUSR1: a: ok, b: unchanged"
    finally:
        stop()
    assert signal.getsignal(signal.SIGUSR1) is previous
    assert not any(t.name.startswith("hotswap-reload-on") for t in threading.enumerate())
    kill_self()
    wait_for(lambda: host_handler == [signal.SIGUSR1])
    assert swapper.attempts == 1
    stop()   # a second stop does nothing


def test_triggers_log_to_the_hosts_logger(host_handler: list[int], tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    """A host that passes ``logger=`` gets the triggers' messages there, none on "hotswap"."""
    caplog.set_level(logging.INFO)
    host_logger = logging.getLogger("myhost.plugins")
    swapper = PluginManagerSwapper(tmp_path, logger=host_logger, free_delay=0)
    assert swapper.logger is host_logger
    stop = triggers.reload_on_signal(swapper)
    try:
        kill_self()
        wait_for(lambda: any(r.getMessage().startswith("reload on SIGUSR1")
                             for r in caplog.records))
    finally:
        stop()
        swapper.close()
    record = next(r for r in caplog.records if r.getMessage().startswith("reload on SIGUSR1"))
    assert record.name == "myhost.plugins"
    assert record.getMessage() == "reload on SIGUSR1: no plugins found"
    assert [r.name for r in caplog.records if "SIGUSR1" in r.getMessage()] == ["myhost.plugins"]

    async def main() -> None:
        stop = triggers.areload_on_signal(swapper, data=None)
        kill_self()
        await await_for(lambda: sum(r.getMessage().startswith("reload on SIGUSR1")
                                    for r in caplog.records) == 2)
        await asyncio.wait_for(stop(), 5)

    swapper = PluginManagerSwapper(tmp_path, logger=host_logger, free_delay=0)
    try:
        asyncio.run(main())
    finally:
        swapper.close()
    assert {r.name for r in caplog.records if "SIGUSR1" in r.getMessage()} == {"myhost.plugins"}


def test_signal_burst_is_coalesced(host_handler: list[int]) -> None:
    """Many signals during a slow reload give one more reload, not one each."""
    swapper = FakeSwapper()
    swapper.delay = 0.3
    stop = triggers.reload_on_signal(swapper)
    try:
        kill_self()
        wait_for(lambda: swapper.entered == 1)
        for _ in range(10):
            kill_self()
        wait_for(lambda: swapper.reloads >= 2)
        assert stays(lambda: swapper.reloads == 2, 0.5)
    finally:
        stop()


def test_failed_reload_is_logged_and_the_trigger_keeps_listening(
        host_handler: list[int], caplog: pytest.LogCaptureFixture) -> None:
    """A reload raising is logged with its traceback; the host and the trigger survive."""
    swapper = FakeSwapper()
    swapper.fail = True
    stop = triggers.reload_on_signal(swapper)
    try:
        kill_self()
        wait_for(lambda: any(r.levelno == logging.ERROR for r in caplog.records))
        error = next(r for r in caplog.records if r.levelno == logging.ERROR)
        assert error.getMessage() == ("reload on SIGUSR1 failed; the previous plugins keep "
                                      "serving")
        assert error.exc_info is not None and isinstance(error.exc_info[1], HotswapError)
        swapper.fail = False
        kill_self()
        wait_for(lambda: swapper.reloads == 1)
        assert swapper.attempts == 2
    finally:
        stop()


def test_stop_from_inside_a_reload(host_handler: list[int],
                                   caplog: pytest.LogCaptureFixture) -> None:
    """A reload (a reload callback, say) may stop the trigger: no deadlock, no exception,
    the thread ends, the handler left behind ignores the signal, a warning says why."""
    swapper = FakeSwapper()
    stop = triggers.reload_on_signal(swapper)
    ours = signal.getsignal(signal.SIGUSR1)
    swapper.during_reload = stop
    kill_self()
    wait_for(lambda: swapper.reloads == 1)
    wait_for(lambda: not any(t.name.startswith("hotswap-reload-on")
                             for t in threading.enumerate()))
    assert signal.getsignal(signal.SIGUSR1) is ours
    kill_self()
    assert stays(lambda: swapper.attempts == 1, 0.2)
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert warning.getMessage() == (
        "reload_on_signal: stop() ran outside the main thread, so the previous SIGUSR1 handler "
        "could not be restored (ours now ignores the signal); call stop() from the main thread")
    stop()   # a second stop does nothing


def test_signal_trigger_needs_the_main_thread() -> None:
    """Called from another thread, it refuses clearly and installs nothing."""
    before = signal.getsignal(signal.SIGUSR1)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            triggers.reload_on_signal(FakeSwapper())
        except ValueError as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join()
    assert len(errors) == 1 and str(errors[0]).startswith(
        "reload_on_signal: cannot handle SIGUSR1 (")
    assert "call it from the main thread" in str(errors[0])
    assert signal.getsignal(signal.SIGUSR1) is before


def test_no_signal_to_listen_to_is_refused() -> None:
    """Where there is no SIGUSR1 (Windows), the default is None and the call says what to pass."""
    with pytest.raises(ValueError) as info:
        triggers.reload_on_signal(FakeSwapper(), signum=None)
    assert str(info.value) == ("reload_on_signal: this platform has no SIGUSR1; pass signum= "
                               "(signal.SIGBREAK on Windows)")


def test_async_signal_reloads_in_the_loop_and_stop_restores_handler(
        host_handler: list[int], caplog: pytest.LogCaptureFixture) -> None:
    """areload_on_signal awaits swapper.areload; failures are logged; stop restores."""
    caplog.set_level(logging.INFO, logger="hotswap")
    swapper = FakeSwapper()
    previous = signal.getsignal(signal.SIGUSR1)

    async def main() -> None:
        stop = triggers.areload_on_signal(swapper, data="d")
        try:
            kill_self()
            await await_for(lambda: swapper.reloads == 1)
            assert swapper.threads == [threading.main_thread()]   # ran in the loop
            swapper.fail = True
            kill_self()
            await await_for(lambda: swapper.attempts == 2)
            swapper.fail = False
            kill_self()
            await await_for(lambda: swapper.reloads == 2)
        finally:
            task = stop()
        await asyncio.wait_for(task, 5)
        assert task.done()

    asyncio.run(main())
    assert signal.getsignal(signal.SIGUSR1) is previous
    assert swapper.data == ["d", "d", "d"]
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "hotswap"]
    assert messages == [
        (logging.INFO, "reload on SIGUSR1: a: ok, b: unchanged"),
        (logging.ERROR, "reload on SIGUSR1 failed; the previous plugins keep serving"),
        (logging.INFO, "reload on SIGUSR1: a: ok, b: unchanged"),
    ]
    kill_self()
    wait_for(lambda: host_handler == [signal.SIGUSR1])


# ---------------------------------------------------------------------------------- watchers

DEBOUNCE = 0.2


def write_atomically(folder: Path, name: str, payload: bytes) -> None:
    """What the build does: a hidden temporary file, renamed into place."""
    tmp = folder / f".{name}.hsp.x7k2.tmp"
    tmp.write_bytes(payload)
    os.replace(tmp, folder / f"{name}.hsp")


def until_watching(folder: Path, swapper: FakeSwapper, sleep: Callable[[float], Any]) -> Any:
    """Touch a probe artifact until the watcher reacts, then wait for quiet (start-up race)."""
    deadline = time.monotonic() + 10
    probe = folder / "probe.hsp"
    while swapper.attempts == 0:
        assert time.monotonic() < deadline, "the watcher never saw a change"
        probe.write_bytes(b"probe")
        yield sleep(0.05)
    probe.unlink()
    last = -1
    while last != swapper.attempts:   # settle: no reload for a few debounce periods
        last = swapper.attempts
        yield sleep(3 * DEBOUNCE)


def settle_sync(folder: Path, swapper: FakeSwapper) -> int:
    for _ in until_watching(folder, swapper, time.sleep):
        pass
    return swapper.attempts


def test_watch_reloads_once_per_burst_of_artifacts_only(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Temp files and other files are ignored; a burst of artifact writes is one reload."""
    caplog.set_level(logging.INFO, logger="hotswap")
    swapper = FakeSwapper(tmp_path)
    stop = triggers.watch_plugin_dir(swapper, data=7, debounce=DEBOUNCE)
    try:
        base = settle_sync(tmp_path, swapper)
        (tmp_path / ".alpha.hsp.abc123.tmp").write_bytes(b"half written")
        (tmp_path / "notes.txt").write_text("x")
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "deep.hsp").write_bytes(b"not watched: not recursive")
        assert stays(lambda: swapper.attempts == base, 3 * DEBOUNCE)

        write_atomically(tmp_path, "alpha", b"v1")
        write_atomically(tmp_path, "beta", b"v1")
        write_atomically(tmp_path, "alpha", b"v2")
        wait_for(lambda: swapper.attempts == base + 1)
        assert stays(lambda: swapper.attempts == base + 1, 3 * DEBOUNCE)
        assert swapper.threads[-1] is not threading.main_thread() and swapper.data[-1] == 7

        (tmp_path / "beta.hsp").unlink()   # a removed plugin reloads too
        wait_for(lambda: swapper.attempts == base + 2)
    finally:
        stop()
    assert not any(t.name == "hotswap-watch-plugin-dir" for t in threading.enumerate())
    write_atomically(tmp_path, "gamma", b"v1")
    assert stays(lambda: swapper.attempts == base + 2, 3 * DEBOUNCE)
    assert f"reload on change in {tmp_path}: a: ok, b: unchanged" in caplog.messages


def test_watch_sees_a_symlinked_folder_switched_to_a_new_target(tmp_path: Path) -> None:
    """A plugin folder that is a symlink, switched the atomic way (a new link renamed over the
    old one), reloads; the watch then follows the new target, not the old one."""
    old, new = tmp_path / "releases" / "1", tmp_path / "releases" / "2"
    old.mkdir(parents=True)
    new.mkdir()
    link = tmp_path / "plugins"
    link.symlink_to(old)
    swapper = FakeSwapper(link)
    stop = triggers.watch_plugin_dir(swapper, debounce=DEBOUNCE)
    try:
        base = settle_sync(link, swapper)
        write_atomically(new, "alpha", b"v2")   # not the target yet: nothing
        assert stays(lambda: swapper.attempts == base, 3 * DEBOUNCE)
        (tmp_path / ".plugins.new").symlink_to(new)
        os.replace(tmp_path / ".plugins.new", link)
        wait_for(lambda: swapper.attempts == base + 1)
        assert stays(lambda: swapper.attempts == base + 1, 3 * DEBOUNCE)
        write_atomically(old, "alpha", b"old")  # the old target is no longer watched
        assert stays(lambda: swapper.attempts == base + 1, 3 * DEBOUNCE)
        write_atomically(new, "beta", b"v2")    # the new one is
        wait_for(lambda: swapper.attempts == base + 2)
    finally:
        stop()


def test_watch_survives_failed_reloads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A failing reload is logged with its traceback and the watch goes on."""
    swapper = FakeSwapper(tmp_path)
    stop = triggers.watch_plugin_dir(swapper, debounce=DEBOUNCE)
    try:
        base = settle_sync(tmp_path, swapper)
        swapper.fail = True
        write_atomically(tmp_path, "alpha", b"v1")
        wait_for(lambda: swapper.attempts == base + 1)
        wait_for(lambda: any(r.levelno == logging.ERROR for r in caplog.records))
        error = next(r for r in caplog.records if r.levelno == logging.ERROR)
        assert error.exc_info is not None
        swapper.fail = False
        write_atomically(tmp_path, "alpha", b"v2")
        wait_for(lambda: swapper.attempts == base + 2)
    finally:
        stop()


def test_async_watch_reloads_through_areload(tmp_path: Path) -> None:
    """awatch_plugin_dir awaits swapper.areload once per burst, in the loop; stop ends it."""
    swapper = FakeSwapper(tmp_path)

    async def main() -> None:
        stop = triggers.awatch_plugin_dir(swapper, data="x", debounce=DEBOUNCE)
        try:
            for step in until_watching(tmp_path, swapper, asyncio.sleep):
                await step
            base = swapper.attempts
            (tmp_path / ".alpha.hsp.q1.tmp").write_bytes(b"half")
            write_atomically(tmp_path, "alpha", b"v1")
            write_atomically(tmp_path, "beta", b"v1")
            await await_for(lambda: swapper.attempts == base + 1)
            await asyncio.sleep(3 * DEBOUNCE)
            assert swapper.attempts == base + 1
            assert swapper.threads[-1] is threading.main_thread()
            assert swapper.data[-1] == "x"
        finally:
            task = stop()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())


def test_watch_refuses_a_missing_folder(tmp_path: Path) -> None:
    """A plugin_dir that is not a folder is a HotswapError naming it."""
    missing = tmp_path / "nope"
    with pytest.raises(HotswapError) as info:
        triggers.watch_plugin_dir(FakeSwapper(missing))
    assert str(info.value) == (f"watch_plugin_dir: cannot watch plugin folder {str(missing)!r}: "
                               "it is not a folder; create it first")


def test_watch_without_watchfiles_says_how_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the optional extra, both watchers raise an ImportError naming the fix."""
    monkeypatch.setitem(sys.modules, "watchfiles", None)
    with pytest.raises(ImportError) as info:
        triggers.watch_plugin_dir(FakeSwapper(tmp_path))
    assert str(info.value) == ("watch_plugin_dir needs the watchfiles package, an optional "
                               "extra of hotswap; install it with: pip install 'hotswap[watch]'")

    async def main() -> None:
        triggers.awatch_plugin_dir(FakeSwapper(tmp_path))

    with pytest.raises(ImportError, match=r"^awatch_plugin_dir needs .*hotswap\[watch\]"):
        asyncio.run(main())


TAGGED = 'CompileTimeString = "dev"\n' + NOOP_HOOKS.replace(
    "def invoke_func(name, *params): pass", "def invoke_func(name, *params): return CompileTimeString")


class Counting:
    """A real swapper, counting the reloads the watch starts (failed ones too)."""

    def __init__(self, swapper: PluginManagerSwapper) -> None:
        self.swapper, self.plugin_dir, self.logger = swapper, swapper.plugin_dir, swapper.logger
        self.attempts = 0

    def reload(self, data: Any = None) -> Any:
        self.attempts += 1
        return self.swapper.reload(data)

    async def areload(self, data: Any = None) -> Any:
        self.attempts += 1
        return await self.swapper.areload(data)

    def tag(self) -> str:
        return self.swapper.current().find_plugin("tagged").invoke_func("tag")


@pytest.mark.parametrize("form", ["thread", "asyncio"])
@pytest.mark.parametrize("layout", ["folder", "ancestor", "chain"])
def test_a_symlink_switch_reloads_wherever_the_link_is(tmp_path: Path, build_plugin, layout: str,
                                                       form: str) -> None:
    """A deploy switching a symlink the atomic way (a new link renamed over the old) reloads a
    real swapper whether the link is the plugin folder itself, a folder above it
    (``current/plugins``, Capistrano's layout) or a link the plugin folder's own link goes
    through; switching again right after each reload is seen too (the watch follows every
    switch, including one made while it restarts on the new target)."""
    (tmp_path / "src" / "tagged").mkdir(parents=True)
    (tmp_path / "src" / "tagged" / "__init__.py").write_text(TAGGED)
    for n in (1, 2):
        build_plugin(tmp_path / "src" / "tagged", tmp_path / "releases" / str(n) / "plugins",
                     stamps={"CompileTimeString": f"v{n}"})

    def switch(link: Path, target: Path) -> None:
        new = link.with_name(f".{link.name}.new")
        new.symlink_to(target)
        os.replace(new, link)

    releases = tmp_path / "releases"
    if layout == "folder":           # plugins -> releases/N/plugins
        link, plugin_dir, target = tmp_path / "plugins", tmp_path / "plugins", lambda n: releases / str(n) / "plugins"
    elif layout == "ancestor":       # current -> releases/N; plugin_dir current/plugins
        link, plugin_dir, target = tmp_path / "current", tmp_path / "current" / "plugins", lambda n: releases / str(n)
    else:                            # app/plugins -> ../current -> releases/N/plugins
        link, plugin_dir = tmp_path / "current", tmp_path / "app" / "plugins"
        target = lambda n: releases / str(n) / "plugins"  # noqa: E731 - one line beside its twin above
        plugin_dir.parent.mkdir()
        plugin_dir.symlink_to(Path("..") / "current")
    switch(link, target(1))
    real = PluginManagerSwapper(plugin_dir, free_delay=0.05)
    swapper = Counting(real)
    try:
        real.reload()
        assert swapper.tag() == "v1"
        if form == "thread":
            stop = triggers.watch_plugin_dir(swapper, debounce=DEBOUNCE)
            try:
                settle_sync(plugin_dir, swapper)
                for n in (2, 1, 2):
                    switch(link, target(n))
                    wait_for(lambda n=n: swapper.tag() == f"v{n}")
            finally:
                stop()
        else:
            async def main() -> None:
                stop = triggers.awatch_plugin_dir(swapper, debounce=DEBOUNCE)
                try:
                    for step in until_watching(plugin_dir, swapper, asyncio.sleep):
                        await step
                    for n in (2, 1, 2):
                        switch(link, target(n))
                        await await_for(lambda n=n: swapper.tag() == f"v{n}", timeout=10)
                finally:
                    await asyncio.wait_for(stop(), 5)
            asyncio.run(main())
    finally:
        real.close()
