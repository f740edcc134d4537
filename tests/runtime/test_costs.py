"""A reload costs what changed: bounded bookkeeping, frees that survive concurrent imports."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
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
        root = swapper.current().find_plugin("a").lookup("__name__")
        # the replaced version is freed (its modules are gone), then collected, as the
        # interpreter does now and then in a long-running host
        wait_for(lambda r=root: {key.split(".")[0] for key in _mounted("a")} == {r})
        gc.collect()
    # every replaced version is freed (free_delay=0) and nothing but the swapper held them
    root = swapper.current().find_plugin("a").lookup("__name__")
    wait_for(lambda: {key.split(".")[0] for key in _mounted("a")} == {root})

    def alive() -> list[weakref.ref[object]]:
        # the freer thread may still be finishing the last release (its locals hold the
        # versions it freed) when the modules are gone: wait for it, collecting meanwhile
        gc.collect()
        return [ref for ref in versions if ref() is not None]

    try:
        wait_for(lambda: len(alive()) <= 2)
    except AssertionError:
        raise AssertionError(f"{len(alive())} of 40 freed versions are still held") from None


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
    # a module that ran keeps its source (deflated with the others), byte for byte
    assert loader.get_data(f"{origin}/a/eager.py") == b"def f():\n    return 'eager'\n"
    assert loader.get_source(f"{root}.eager") == "def f():\n    return 'eager'\n"
    lazy = importlib.import_module(f"{root}.lazy")
    assert not held(f"a/__pycache__/lazy.{tag}.pyc")
    with pytest.raises(ValueError) as info:
        lazy.g()
    assert "raise ValueError('from lazy')" in "".join(traceback.format_exception(info.value))
    assert importlib.reload(eager).f() == "eager"  # compiled from the source it kept


def _count_reads(monkeypatch) -> list[str]:
    """The artifacts the runtime reads and verifies from now on (base names)."""
    from hotswap_runtime import selection

    reads: list[str] = []
    real = selection.read_artifact

    def counting(path, **kwargs):
        reads.append(Path(path).name)
        return real(path, **kwargs)

    monkeypatch.setattr(selection, "read_artifact", counting)
    return reads


def _count_hashes(monkeypatch) -> list[str]:
    from hotswap_runtime import selection

    hashed: list[str] = []
    real = selection._hashes_to

    def counting(path, snapshot):
        hashed.append(Path(path).name)
        return real(path, snapshot)

    monkeypatch.setattr(selection, "_hashes_to", counting)
    return hashed


@pytest.mark.parametrize("recent", [True, False], ids=["just-read", "read-long-after"])
def test_reload_reads_only_the_rebuilt_artifact(plugin_dir: Path, events, make_swapper,
                                                monkeypatch, recent: bool) -> None:
    """After rebuilding 1 of 3 plugins, reload() and plan() read and verify that one only.

    Artifacts read just after they were written are confirmed by one hash of the file (a write
    in the same clock tick would leave its identity unchanged); read long after, the identity
    alone stands for them."""
    from hotswap_runtime import selection

    if not recent:  # as if every artifact had been read long after it was written
        monkeypatch.setattr(selection, "RACY_NS", -10**18)
    for name in "abc":
        pack_plugin(plugin_dir, name, {"__init__.py": hooks_source(name)})
    swapper = make_swapper()
    swapper.load_plugins()
    reads, hashed = _count_reads(monkeypatch), _count_hashes(monkeypatch)
    pack_plugin(plugin_dir, "b", {"__init__.py": hooks_source("b", stamp="v2")})
    assert swapper.plan() == {str(plugin_dir / f"{n}.hsp"): word
                              for n, word in zip("abc", ["unchanged", "ok", "unchanged"],
                                                 strict=True)}
    assert reads == ["b.hsp"]
    details = swapper.reload()
    assert str(details) == "a: unchanged, b: ok, c: unchanged"
    assert reads == ["b.hsp", "b.hsp"]
    # within RACY_NS of their writes, plan() and reload() each confirm a and c by a hash
    assert sorted(hashed) == (["a.hsp", "a.hsp", "c.hsp", "c.hsp"] if recent else [])
    assert swapper.current().find_plugin("b").invoke_func("stamp") == "v2"
    # long after the writes, the identity alone stands for the files
    reads.clear()
    hashed.clear()
    if recent:
        monkeypatch.setattr(selection, "RACY_NS", -10**18)
    assert str(swapper.reload()) == "a: unchanged, b: unchanged, c: unchanged"
    assert reads == [] and hashed == []


def _tamper_in_place(path: Path) -> None:
    """Change one byte of ``a/__init__.py``'s stored data in place: the same size, the same
    inode, the mtime put back (the ctime changes, as it always does)."""
    import zipfile

    before = path.stat()
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo("a/__init__.py").header_offset
    names, extra = int.from_bytes(raw[offset + 26:offset + 28], "little"), \
        int.from_bytes(raw[offset + 28:offset + 30], "little")
    raw[offset + 30 + names + extra] ^= 0x01
    with open(path, "r+b") as handle:  # in place: no new inode
        handle.write(raw)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino, before.st_size, before.st_mtime_ns)


@pytest.mark.parametrize("recent", [True, False], ids=["just-read", "read-long-after"])
def test_artifact_changed_in_place_is_read_again_and_refused(plugin_dir: Path, events,
                                                             make_swapper, monkeypatch,
                                                             recent: bool) -> None:
    """A file changed in place with its size kept and its mtime restored is not taken for the
    running version's: it is read again and refused; the old version keeps serving."""
    from hotswap_runtime import HotswapError, selection

    path = pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a")})
    swapper = make_swapper()
    swapper.load_plugins()
    if not recent:
        # the identity alone decides: make sure the change gets a ctime of its own
        monkeypatch.setattr(selection, "RACY_NS", -10**18)
        ctime = path.stat().st_ctime_ns
        deadline = time.monotonic() + 5
        while time.time_ns() <= ctime + 20_000_000 and time.monotonic() < deadline:
            time.sleep(0.01)
    reads = _count_reads(monkeypatch)
    _tamper_in_place(path)
    with pytest.raises(HotswapError, match=r"a\.hsp"):
        swapper.reload()
    assert reads == ["a.hsp"]
    assert swapper.current().find_plugin("a").invoke_func("stamp") == "v1"
    assert "error:" in swapper.plan()[str(path)]
