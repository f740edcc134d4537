"""The cross-version guard: ``guard=True`` warns and ``guard="strict"`` refuses old-version objects."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hotswap_build.build import build
from hotswap_runtime import HotswapError, PluginManagerSwapper

SOURCE = """\
import dataclasses

CompileTimeString = "1"
CALLS = []

def on_load(data): pass
def on_init(vault): pass
def on_free(): pass
def export(): return None
def import_(): return None
def reloadable(): return True

@dataclasses.dataclass(frozen=True)
class Job:
    name: str

def invoke_func(name, *params):
    if name == "job":
        return Job(*params)
    CALLS.append(name)
    return len(CALLS)
"""

OTHER = SOURCE.replace("Job", "Other")


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Callable[..., tuple[PluginManagerSwapper, Callable[[], None]]]]:
    """``setup(guard)``: plugins ``world`` and ``other`` built for real; returns the swapper
    (loaded) and ``rebuild()`` which rebuilds ``world`` with a new stamp."""
    made: list[PluginManagerSwapper] = []
    src, out = tmp_path / "src", tmp_path / "out"
    for name, text in (("world", SOURCE), ("other", OTHER)):
        (src / name).mkdir(parents=True)
        (src / name / "__init__.py").write_text(textwrap.dedent(text))
        build(src / name, out)
    stamps = iter(range(2, 100))

    def rebuild() -> None:
        build(src / "world", out, stamps={"CompileTimeString": str(next(stamps))})

    def make(guard: Any) -> tuple[PluginManagerSwapper, Callable[[], None]]:
        swapper = PluginManagerSwapper(out, free_delay=3600, guard=guard)
        made.append(swapper)
        swapper.load_plugins()
        return swapper, rebuild

    yield make
    for swapper in made:
        swapper.close()


def loads(swapper: PluginManagerSwapper) -> dict[str, int]:
    return {s.plugin: s.load for s in swapper.stats() if s.state == "current"}


def test_old_instance_warns_naming_class_and_both_versions(setup, caplog) -> None:
    """A v1 Job given to v2's invoke_func logs one warning naming Job, world#1 and world#2."""
    swapper, rebuild = setup(True)
    old_job = swapper.current().find_plugin("world").invoke_func("job", "a")
    old = loads(swapper)["world"]
    rebuild()
    swapper.reload()
    new = loads(swapper)["world"]
    world = swapper.current().find_plugin("world")
    with caplog.at_level(logging.WARNING, logger="hotswap"):
        assert world.invoke_func("process", old_job) == 1  # warned, then called
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"guard: plugin \"world\" version world#{new} got in invoke_func('process'): argument 1 "
        f"is a Job of world#{old}; objects of another version hold its old code: pass live data "
        "(live.wrap, then unwrap with the new class) instead"]


def test_items_of_lists_tuples_sets_and_dict_values_are_checked(setup, caplog) -> None:
    """Old objects inside top-level containers are found; nested deeper ones are not looked at."""
    swapper, rebuild = setup(True)
    old_job = swapper.current().find_plugin("world").invoke_func("job", "a")
    rebuild()
    swapper.reload()
    world = swapper.current().find_plugin("world")
    with caplog.at_level(logging.WARNING, logger="hotswap"):
        world.invoke_func("process", [1, old_job], (old_job,), {old_job}, {"k": old_job},
                          [[old_job]])
    found = [r.getMessage().split(": ")[2].split(";")[0] for r in caplog.records]
    assert [f.rsplit(" of ", 1)[0] for f in found] == [
        "argument 1 item 1 is a Job", "argument 2 item 0 is a Job",
        "argument 3 (a set) item is a Job", "argument 4['k'] is a Job"]


def test_same_version_and_other_plugins_never_warn(setup, caplog) -> None:
    """Objects of the callee's own version, of other plugins and plain values pass silently."""
    swapper, rebuild = setup(True)
    other_job = swapper.current().find_plugin("other").invoke_func("job", "o")
    rebuild()
    swapper.reload()
    world = swapper.current().find_plugin("world")
    own = world.invoke_func("job", "mine")
    with caplog.at_level(logging.WARNING, logger="hotswap"):
        world.invoke_func("process", own, [own], {"k": own}, other_job, 3, "text", None)
        swapper.current().invoke_each("process", own, other_job)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_strict_raises_and_calls_nothing(setup) -> None:
    """guard="strict": invoke_func and invoke_each raise HotswapError before any plugin runs."""
    swapper, rebuild = setup("strict")
    old_job = swapper.current().find_plugin("world").invoke_func("job", "a")
    rebuild()
    swapper.reload()
    manager = swapper.current()
    world = manager.find_plugin("world")
    calls = world.lookup("CALLS")
    with pytest.raises(HotswapError) as info:
        world.invoke_func("process", old_job)
    assert info.value.plugin == "world" and info.value.step == "guard"
    assert "argument 1 is a Job of world#" in str(info.value)
    for each in (manager.invoke_each, manager.invoke_each_backward):
        with pytest.raises(HotswapError, match="argument 2 item 0 is a Job"):
            each("process", 1, [old_job])
    with pytest.raises(HotswapError, match="argument 1 is a Job"):
        asyncio.run(manager.ainvoke_each("process", old_job))
    with pytest.raises(HotswapError, match="argument 1 is a Job"):
        asyncio.run(manager.ainvoke_each_backward("process", old_job))
    assert calls == []
    assert manager.find_plugin("other").lookup("CALLS") == []
    manager.invoke_each("process", world.invoke_func("job", "new"))  # same version: fine
    assert calls == ["process"]


def test_guard_off_leaves_the_plugins_untouched(setup) -> None:
    """Without guard, invoke_func is the version's own function: no wrapper, nothing checked."""
    swapper, rebuild = setup(False)
    old_job = swapper.current().find_plugin("world").invoke_func("job", "a")
    rebuild()
    swapper.reload()
    world = swapper.current().find_plugin("world")
    assert world.invoke_func is world.lookup("invoke_func")
    assert world.invoke_func("process", old_job) == 1


def test_bad_guard_value_is_refused(tmp_path: Path) -> None:
    """guard accepts False, True or "strict" only."""
    with pytest.raises(ValueError) as info:
        PluginManagerSwapper(tmp_path, guard="loud")
    assert str(info.value) == "guard must be False, True or \"strict\", not 'loud'"


def test_invoke_each_and_its_twins_warn_for_the_callee_only(setup, caplog) -> None:
    """invoke_each (forward, backward, async) warns once per call for world, never for other,
    and still calls every plugin."""
    swapper, rebuild = setup(True)
    old_job = swapper.current().find_plugin("world").invoke_func("job", "a")
    rebuild()
    swapper.reload()
    manager = swapper.current()
    with caplog.at_level(logging.WARNING, logger="hotswap"):
        manager.invoke_each("process", old_job)
        manager.invoke_each_backward("process", old_job)
        asyncio.run(manager.ainvoke_each("process", old_job))
        asyncio.run(manager.ainvoke_each_backward("process", old_job))
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 4
    assert all(m.startswith('guard: plugin "world"') for m in warned)
    assert manager.find_plugin("world").lookup("CALLS") == ["process"] * 4
    assert manager.find_plugin("other").lookup("CALLS") == ["process"] * 4
