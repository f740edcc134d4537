"""The leak doctor: ``stats(explain=True)`` names what keeps a freed version alive."""

from __future__ import annotations

import gc
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hotswap_build.build import build
from hotswap_runtime import PluginManagerSwapper, VersionStats

HOOKS = """\
CompileTimeString = "1"

def on_load(data): pass
def on_init(vault): pass
def on_free(): pass
def export(): return None
def import_(): return None
def reloadable(): return True
"""

LEAKY = HOOKS + """
import dataclasses

@dataclasses.dataclass
class Job:
    name: str

def helper():
    return CompileTimeString

def invoke_func(name, *params):
    if name == "job":
        return Job(*params)
    if name == "helper":
        return helper
    if name == "stamp":
        return CompileTimeString
    if name == "lambda":
        return lambda: CompileTimeString
    return None
"""


def write(root: Path, name: str, source: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text(textwrap.dedent(source))
    return folder


@pytest.fixture
def host_mod() -> Iterator[types.ModuleType]:
    """A host-side module with a module-level cache, as a host application would have."""
    module = types.ModuleType("host_mod")
    module.cache = {}
    module.jobs = []
    sys.modules["host_mod"] = module
    yield module
    del sys.modules["host_mod"]


@pytest.fixture
def leaky(tmp_path: Path) -> Iterator[tuple[Callable[[str], None], PluginManagerSwapper]]:
    """``(rebuild(stamp), swapper)`` for plugin ``leaky`` built by the real build."""
    src, out = tmp_path / "src", tmp_path / "out"
    folder = write(src, "leaky", LEAKY)

    def rebuild(stamp: str) -> None:
        build(folder, out, stamps={"CompileTimeString": stamp})

    rebuild("1")
    swapper = PluginManagerSwapper(out, free_delay=0)
    yield rebuild, swapper
    swapper.close()


def freed(stats: list[VersionStats]) -> list[VersionStats]:
    return [s for s in stats if s.state == "freed"]


def test_host_cache_chain_is_named_then_the_version_dies(host_mod, leaky) -> None:
    """A job of version 1 in host_mod.cache keeps it alive, named as the chain; dropping it frees it."""
    rebuild, swapper = leaky
    swapper.load_plugins()
    first_load = swapper.stats()[0].load
    host_mod.cache["k"] = swapper.current().find_plugin("leaky").invoke_func("job", "a")
    rebuild("2")
    swapper.reload()
    gc.collect()
    plain = freed(swapper.stats())
    assert [(s.plugin, s.load) for s in plain] == [("leaky", first_load)]
    assert plain[0].referrers == ()  # only explain walks the heap
    explained = freed(swapper.stats(explain=True))
    assert explained[0].referrers == (f"host_mod.cache['k'] -> <Job of leaky#{first_load}>",)
    del host_mod.cache["k"]
    assert freed(swapper.stats(explain=True)) == []
    assert [s.state for s in swapper.stats()] == ["current"]


def test_chains_through_lists_attributes_and_closures(host_mod, leaky) -> None:
    """Chains name list indexes, instance attributes and closure cells, up to five per version."""
    rebuild, swapper = leaky
    swapper.load_plugins()
    load = swapper.stats()[0].load
    plugin = swapper.current().find_plugin("leaky")
    job = plugin.invoke_func("job", "in a list")
    helper = plugin.invoke_func("helper")

    class Holder:
        def __init__(self, current: object) -> None:
            self.current = current

    def make_closure(kept: object) -> Callable[[], object]:
        return lambda: kept

    host_mod.jobs.extend(["padding", job])
    host_mod.holder = Holder(job)
    host_mod.callback = make_closure(helper)
    del job, helper, plugin
    rebuild("2")
    swapper.reload()
    stats = freed(swapper.stats(explain=True))
    assert len(stats) == 1
    assert sorted(stats[0].referrers) == sorted([
        f"host_mod.jobs[1] -> <Job of leaky#{load}>",
        f"host_mod.holder.current -> <Job of leaky#{load}>",
        f"host_mod.callback.__closure__[0].cell_contents -> <function helper of leaky#{load}>",
    ])
    host_mod.jobs.clear()
    del host_mod.holder, host_mod.callback
    assert freed(swapper.stats(explain=True)) == []


def test_two_freed_versions_held_by_one_list_each_get_their_chain(host_mod, leaky) -> None:
    """Versions 1 and 2 both held by host_mod.jobs: each names its own item."""
    rebuild, swapper = leaky
    swapper.load_plugins()
    loads = [swapper.stats()[0].load]
    host_mod.jobs.append(swapper.current().find_plugin("leaky").invoke_func("job", "one"))
    rebuild("2")
    swapper.reload()
    loads.append(swapper.stats()[-1].load)
    host_mod.jobs.append(swapper.current().find_plugin("leaky").invoke_func("job", "two"))
    rebuild("3")
    swapper.reload()
    stats = freed(swapper.stats(explain=True))
    assert [(s.load, s.referrers) for s in stats] == [
        (loads[0], (f"host_mod.jobs[0] -> <Job of leaky#{loads[0]}>",)),
        (loads[1], (f"host_mod.jobs[1] -> <Job of leaky#{loads[1]}>",)),
    ]
    host_mod.jobs.clear()


def test_an_old_manager_kept_by_the_host_is_named(host_mod, leaky) -> None:
    """Keeping a replaced PluginManager in a global shows the path through the runtime's objects."""
    rebuild, swapper = leaky
    swapper.load_plugins()
    load = swapper.stats()[0].load
    host_mod.previous = swapper.current()
    rebuild("2")
    swapper.reload()
    chains = freed(swapper.stats(explain=True))[0].referrers
    assert f"host_mod.previous._plugins[0].invoke_func -> <function invoke_func of leaky#{load}>" \
        in chains
    del host_mod.previous
    assert freed(swapper.stats(explain=True)) == []


def test_unreachable_holder_is_reported_as_such(leaky) -> None:
    """A version held only by a local variable says no global chain was found."""
    rebuild, swapper = leaky
    swapper.load_plugins()
    job = swapper.current().find_plugin("leaky").invoke_func("job", "local")
    rebuild("2")
    swapper.reload()
    chains = freed(swapper.stats(explain=True))[0].referrers
    assert len(chains) == 1
    assert chains[0].startswith("no chain from a module-level global found within")
    del job
    assert freed(swapper.stats(explain=True)) == []


def test_class_attributes_and_the_five_chain_limit(host_mod, leaky) -> None:
    """A host class attribute reads as host_mod.Registry.last; at most five chains are given."""
    rebuild, swapper = leaky
    swapper.load_plugins()
    load = swapper.stats()[0].load
    job = swapper.current().find_plugin("leaky").invoke_func("job", "x")

    class Registry:
        last = job

    host_mod.Registry = Registry
    for index in range(7):
        setattr(host_mod, f"copy{index}", job)
    del job, Registry
    rebuild("2")
    swapper.reload()
    chains = freed(swapper.stats(explain=True))[0].referrers
    assert len(chains) == 5
    every = {f"host_mod.copy{i} -> <Job of leaky#{load}>" for i in range(7)}
    every.add(f"host_mod.Registry.last -> <Job of leaky#{load}>")
    assert set(chains) <= every
    host_mod.Registry.last = None
    for index in range(7):
        delattr(host_mod, f"copy{index}")
    del host_mod.Registry
    gc.collect()
    assert freed(swapper.stats(explain=True)) == []


def test_a_lambda_of_the_version_is_found_through_its_globals(host_mod, leaky) -> None:
    """A lambda (not a module-level function) keeps its version's globals: named as itself."""
    rebuild, swapper = leaky
    swapper.load_plugins()
    load = swapper.stats()[0].load
    host_mod.cache["cb"] = swapper.current().find_plugin("leaky").invoke_func("lambda")
    rebuild("2")
    swapper.reload()
    chains = freed(swapper.stats(explain=True))[0].referrers
    assert chains == (
        f"host_mod.cache['cb'] -> <function invoke_func.<locals>.<lambda> of leaky#{load}>",)
    host_mod.cache.clear()
    assert freed(swapper.stats(explain=True)) == []
