"""When a reload in a worker thread yields the GIL: only for a waiting event loop, never in a
crowd of busy threads, and never while nobody else runs."""

from __future__ import annotations

import sys
import threading

import pytest
from helpers import NOOP_HOOKS

from hotswap_runtime import yielding

MS = 0.001


def _yields(monkeypatch: pytest.MonkeyPatch, steps: list[tuple[float, float]], *,
            for_loop: bool = True, sleep_takes: float = 0.0) -> list[float]:
    """Call ``yield_gil`` at each (wall clock, thread CPU time) in ``steps`` in a new thread
    (inside ``for_event_loop`` unless told otherwise); the wall times at which it slept. Each
    sleep takes ``sleep_takes`` seconds of wall time."""
    clock = [0.0, 0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(clock[0])
        clock[0] += sleep_takes

    monkeypatch.setattr(yielding.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(yielding.time, "thread_time", lambda: clock[1])
    monkeypatch.setattr(yielding.time, "sleep", sleep)

    def run() -> None:
        for wall, cpu in steps:
            clock[0], clock[1] = max(wall, clock[0]), cpu
            yielding.yield_gil()

    def in_thread() -> None:
        if for_loop:
            with yielding.for_event_loop():
                run()
        else:
            run()

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join()
    return slept


def _contended(count: int = 400) -> list[tuple[float, float]]:
    """Another thread held the GIL in the first window, then one call every 1.01 ms."""
    lost = yielding.CONTENTION * 2
    steps = [(1.0, 0.0), (1.0 + MS + lost, MS)]
    step = 1.01 * MS
    return steps + [(1.0 + MS + lost + i * step, MS + i * step) for i in range(1, count)]


def test_worker_thread_alone_never_yields(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker thread that had the CPU all along (nobody else ran) never pays for a sleep."""
    steps = [(1.0 + i * MS / 2, i * MS / 2) for i in range(400)]
    assert _yields(monkeypatch, steps) == []


def test_worker_thread_yields_while_others_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once another thread ran within an interval, the worker sleeps(0) once per interval for
    CONTENDED_FOR, then stops while nobody else runs."""
    slept = _yields(monkeypatch, _contended())
    assert slept[0] == 1.0 + MS + yielding.CONTENTION * 2
    assert len(slept) == pytest.approx(yielding.CONTENDED_FOR / (1.01 * MS), abs=2)
    assert slept[-1] - slept[0] <= yielding.CONTENDED_FOR


def test_a_crowd_stops_the_yields(monkeypatch: pytest.MonkeyPatch) -> None:
    """A yield that took long to get the GIL back (many busy threads) is the last one for
    CONTENDED_FOR: each further one would cost a switch interval and give the loop nothing."""
    slept = _yields(monkeypatch, _contended(), sleep_takes=sys.getswitchinterval())
    assert len(slept) == 1


def test_pause_between_loads_is_no_contention(monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle gap between two loads (no calls for a while) does not make the worker yield."""
    steps = [(1.0, 0.0), (1.0 + MS, MS), (5.0, 2 * MS), (5.0 + MS, 3 * MS), (5.0 + 2 * MS, 4 * MS)]
    assert _yields(monkeypatch, steps) == []


def test_no_yield_without_an_event_loop_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload in a thread of its own (a trigger, the host's thread) never sleeps, even while
    others run: no loop waits on it, and each yield would cost it a switch interval."""
    assert _yields(monkeypatch, _contended(), for_loop=False) == []


def test_main_thread_never_yields(monkeypatch: pytest.MonkeyPatch) -> None:
    """The main thread (a synchronous reload) never sleeps, even while others run."""
    steps = [(1.0 + i * MS, 0.0) for i in range(50)]
    clock = [0.0]
    slept: list[float] = []
    monkeypatch.setattr(yielding.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(yielding.time, "thread_time", lambda: 0.0)
    monkeypatch.setattr(yielding.time, "sleep", lambda seconds: slept.append(clock[0]))
    for wall, _ in steps:
        clock[0] = wall
        yielding.yield_gil()
    assert slept == []


def test_a_load_lowers_the_switch_interval_and_restores_the_hosts(tmp_path, build_plugin) -> None:
    """While a reload runs (seen from its reload_callback) the switch interval is at most
    LOAD_SWITCH_INTERVAL; afterwards it is the host's again, also when the host changed it
    during the load (its own value wins), and when the load failed."""
    from hotswap_runtime import HotswapError, PluginManagerSwapper

    (tmp_path / "src" / "plain").mkdir(parents=True)
    (tmp_path / "src" / "plain" / "__init__.py").write_text(NOOP_HOOKS)
    build_plugin(tmp_path / "src" / "plain", tmp_path / "plugins")
    seen: list[float] = []
    host = {"set": None, "fail": False}

    def callback(new: object, old: object) -> None:
        seen.append(sys.getswitchinterval())
        if host["set"] is not None:
            sys.setswitchinterval(host["set"])
        if host["fail"]:
            raise RuntimeError("refused")

    before = sys.getswitchinterval()
    swapper = PluginManagerSwapper(tmp_path / "plugins", reload_callback=callback,
                                   runtime_dir=tmp_path / "runtime")
    try:
        swapper.load_plugins()
        assert seen[-1] <= yielding.LOAD_SWITCH_INTERVAL * 1.01
        assert sys.getswitchinterval() == before
        host["fail"] = True
        with pytest.raises(HotswapError):
            swapper.reload()
        assert sys.getswitchinterval() == before
        host["fail"], host["set"] = False, 0.002
        swapper.reload()
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        swapper.close()
        sys.setswitchinterval(before)
