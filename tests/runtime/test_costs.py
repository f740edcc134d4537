"""A reload costs what changed: bounded bookkeeping, frees that survive concurrent imports."""

from __future__ import annotations

import gc
import sys
import threading
import traceback
import types
import weakref
from pathlib import Path

import pytest
from handmade import hooks_source, pack_plugin
from helpers import wait_for

from hotswap_runtime.importer import parse_mount_name


def _mounted(name: str) -> list[str]:
    return [key for key in list(sys.modules) if (parse_mount_name(key) or ("",))[0] == name]


def test_free_racing_a_concurrent_importer_still_unloads(plugin_dir: Path, events,
                                                         make_swapper) -> None:
    """Versions freed while another thread imports modules all leave ``sys.modules``."""
    files = {f"m{i}.py": f"X = {i}\n" for i in range(40)}
    stop = threading.Event()

    def importer() -> None:
        # an importer as the host has them: modules arriving in and leaving sys.modules
        keys = [f"hotswap_test_racer_{n}" for n in range(50)]
        while not stop.is_set():
            for key in keys:
                sys.modules[key] = types.ModuleType(key)
            for key in keys:
                sys.modules.pop(key, None)

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    thread = threading.Thread(target=importer, daemon=True)
    swapper = make_swapper()
    try:
        pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a"), **files})
        swapper.load_plugins()
        thread.start()
        for round_ in range(30):
            pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", stamp=f"v{round_}"),
                                          **files})
            swapper.reload()
            wait_for(lambda n=round_: len(events.hooks("on_free")) > n)
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(old_interval)
    # a prune that failed midway leaves the version's modules behind for good
    current = swapper.current().find_plugin("a").lookup("__name__")
    wait_for(lambda: {key.split(".")[0] for key in _mounted("a")} == {current})
    swapper.stats()  # waits for a free still pruning (its modules leave sys.modules first)
    gc.collect()
    assert [s.state for s in swapper.stats()] == ["current"]


def test_freed_versions_are_forgotten_without_stats(plugin_dir: Path, events,
                                                    make_swapper) -> None:
    """Reloading many times without ever calling ``stats()`` keeps no freed version alive."""
    swapper = make_swapper()
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a")})
    swapper.load_plugins()
    versions: list[weakref.ref[object]] = []
    for round_ in range(40):
        pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", stamp=f"v{round_}")})
        versions.append(weakref.ref(swapper.current().find_plugin("a")._version))
        swapper.reload()
        wait_for(lambda n=round_: len(events.hooks("on_free")) > n)
        gc.collect()  # as the interpreter does now and then in a long-running host
    # every replaced version is freed (free_delay=0) and nothing but the swapper held them
    root = swapper.current().find_plugin("a").lookup("__name__")
    wait_for(lambda: {key.split(".")[0] for key in _mounted("a")} == {root})
    gc.collect()
    alive = [ref for ref in versions if ref() is not None]
    assert len(alive) <= 2, f"{len(alive)} of 40 freed versions are still held"


def test_a_version_keeps_no_bytecode_of_modules_that_ran(plugin_dir: Path, events,
                                                          make_swapper) -> None:
    """Once a module ran, its bytecode is dropped from the version's snapshot; sources stay
    (get_source, tracebacks), and a module imported later still loads, from its bytecode."""
    import importlib
    import inspect

    pack_plugin(plugin_dir, "a", {
        "__init__.py": hooks_source("a") + "from . import eager\n",
        "eager.py": "def f():\n    return 'eager'\n",
        "lazy.py": "def g():\n    raise ValueError('from lazy')\n",
    })
    swapper = make_swapper()
    swapper.load_plugins()
    root = swapper.current().find_plugin("a").lookup("__name__")
    eager = sys.modules[f"{root}.eager"]
    loader = eager.__loader__
    origin = eager.__file__.rsplit("/a/eager.py", 1)[0]
    tag = sys.implementation.cache_tag

    def held(member: str) -> bool:
        try:
            loader.get_data(f"{origin}/{member}")
        except OSError:
            return False
        return True

    assert not held(f"a/__pycache__/eager.{tag}.pyc")
    assert not held(f"a/__pycache__/__init__.{tag}.pyc")
    assert held(f"a/__pycache__/lazy.{tag}.pyc")  # not imported yet: still needed
    assert inspect.getsource(eager.f) == "def f():\n    return 'eager'\n"
    lazy = importlib.import_module(f"{root}.lazy")
    assert not held(f"a/__pycache__/lazy.{tag}.pyc")
    with pytest.raises(ValueError) as info:
        lazy.g()
    assert "raise ValueError('from lazy')" in "".join(traceback.format_exception(info.value))
    assert importlib.reload(eager).f() == "eager"  # compiled from the source it kept
