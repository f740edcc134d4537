"""End to end (README "Sessions pinned to a version"): leases pin a session to the manager it started on.

The plugin is built by the real ``hotswap build``; ``free_delay`` is 0 throughout, so only a
lease (or code in flight) can keep a replaced version. Nothing asserts a duration.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for

from hotswap_runtime import HotswapError, Lease, PluginManagerSwapper

EVENTS = "hotswap_lease_events"

SOURCE = '''\
import hotswap_lease_events as _ev

STAMP = "none"
TOKEN = next(_ev.tokens)  # one per loaded version

def on_load(data):
    if data == "block":
        _ev.loading.set()
        _ev.gate.wait(10)

def on_init(vault):
    pass

def on_free():
    _ev.freed.append(STAMP)
    _ev.freed_tokens.add(TOKEN)

def export():
    return None

def import_():
    return None

def reloadable():
    return True

def invoke_func(name, *params):
    return TOKEN if name == "token" else STAMP
'''


@pytest.fixture
def ev() -> Iterator[types.ModuleType]:
    module = types.ModuleType(EVENTS)
    module.freed = []
    module.freed_tokens = set()
    module.tokens = itertools.count(1)
    module.gate = threading.Event()
    module.loading = threading.Event()
    sys.modules[EVENTS] = module
    yield module
    module.gate.set()
    del sys.modules[EVENTS]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """stamp -> the artifact of plugin ``a`` built with it."""
    from hotswap_build.build import build

    root = tmp_path_factory.mktemp("leases")
    src = root / "src" / "a"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text(SOURCE)
    out = {}
    for stamp in ("v1", "v2", "v3"):
        build(src, root / stamp, stamps={"STAMP": stamp})
        out[stamp] = root / stamp / "a.hsp"
    return out


@pytest.fixture
def host(tmp_path: Path, built) -> Iterator[Callable[..., tuple[PluginManagerSwapper, Callable[[str], None]]]]:
    """``host(**kwargs)``: (a swapper with ``a`` v1 loaded, ``install(stamp)``)."""
    made: list[PluginManagerSwapper] = []

    def make(**kwargs: Any) -> tuple[PluginManagerSwapper, Callable[[str], None]]:
        folder = tmp_path / "plugins"
        folder.mkdir()

        def install(stamp: str) -> None:
            shutil.copy(built[stamp], folder / "a.hsp")

        install("v1")
        kwargs.setdefault("free_delay", 0)
        swapper = PluginManagerSwapper(folder, **kwargs)
        made.append(swapper)
        swapper.load_plugins()
        return swapper, install

    yield make
    for swapper in made:
        swapper.close()


def stamp(manager: Any) -> str:
    return manager.find_plugin("a").invoke_func("stamp")


def test_pinned_calls_reach_their_version_while_current_moves_on(ev, host) -> None:
    swapper, install = host()
    lease = swapper.lease("ws 10.0.0.7:5531")
    assert isinstance(lease, Lease) and lease.name == "ws 10.0.0.7:5531"
    assert lease.manager is swapper.current() and lease.held
    assert isinstance(lease.taken, datetime) and lease.taken.tzinfo is UTC
    assert abs((datetime.now(UTC) - lease.taken).total_seconds()) < 60
    install("v2")
    swapper.reload()
    time.sleep(0.3)  # free_delay=0: the freer has looked several times
    assert stamp(swapper.current()) == "v2"
    assert stamp(lease.manager) == "v1"  # the session keeps talking to its version
    assert ev.freed == []
    states = [(s.state, s.leases) for s in swapper.stats()]
    assert states == [("pending free", ("ws 10.0.0.7:5531",)), ("current", ())]
    lease.release()
    wait_for(lambda: ev.freed == ["v1"])
    assert not lease.held
    lease.release()  # idempotent
    assert swapper.leases() == []


def test_with_block_pins_the_current_manager_and_releases_on_leaving(ev, host) -> None:
    swapper, install = host()
    with swapper.lease("match 42") as manager:
        assert manager is swapper.current()
        install("v2")
        swapper.reload()
        time.sleep(0.2)
        assert ev.freed == [] and stamp(manager) == "v1"
        assert [lease.name for lease in swapper.leases()] == ["match 42"]
    wait_for(lambda: ev.freed == ["v1"])
    assert swapper.leases() == []


def test_three_versions_alive_with_two_leases(ev, host) -> None:
    swapper, install = host()
    first = swapper.lease("match 1")
    install("v2")
    swapper.reload()
    second = swapper.lease("match 2")
    third = swapper.lease("match 2b")
    install("v3")
    swapper.reload()
    time.sleep(0.2)
    assert [stamp(m) for m in (first.manager, second.manager, swapper.current())] == ["v1", "v2", "v3"]
    assert [(s.state, s.leases) for s in swapper.stats()] == [
        ("pending free", ("match 1",)), ("pending free", ("match 2", "match 2b")), ("current", ())]
    listed = swapper.leases()
    assert [lease.name for lease in listed] == ["match 1", "match 2", "match 2b"]
    loads = [s.load for s in swapper.stats()]
    assert [lease.versions for lease in listed] == [(("a", loads[0]),), (("a", loads[1]),),
                                                   (("a", loads[1]),)]
    second.release()
    time.sleep(0.2)
    assert ev.freed == []  # match 2b still pins v2
    third.release()
    wait_for(lambda: ev.freed == ["v2"])
    assert stamp(first.manager) == "v1"
    first.release()
    wait_for(lambda: ev.freed == ["v2", "v1"])
    del listed  # the released leases themselves are still held: they keep nothing
    assert [s.state for s in swapper.stats(explain=True)] == ["current"]
    assert not (first.held or second.held or third.held)


def test_a_released_lease_the_host_still_holds_keeps_nothing_of_its_version(ev, host) -> None:
    """A session object outlives its session and keeps its lease: once released, the lease
    holds nothing of the manager, so the replaced version is freed *and* its memory goes."""
    import gc
    import weakref

    swapper, install = host()
    lease = swapper.lease("ws 10.0.0.7:5531")
    first = lease.manager.find_plugin("a")
    version_code = weakref.ref(first.lookup("invoke_func"))  # a module-level function of v1
    version_module = weakref.ref(sys.modules[first.lookup("invoke_func").__module__])
    del first
    install("v2")
    swapper.reload()
    lease.release()
    wait_for(lambda: ev.freed == ["v1"])
    session = {"lease": lease}  # what a host keeps: the released lease, nothing else
    gc.collect()
    assert version_code() is None and version_module() is None
    assert [s.state for s in swapper.stats(explain=True)] == ["current"]
    assert session["lease"].versions == () and not session["lease"].held
    assert repr(session["lease"]) == "<Lease 'ws 10.0.0.7:5531' released>"
    with pytest.raises(HotswapError, match='lease "ws 10.0.0.7:5531" is released.*swapper.lease'):
        _ = session["lease"].manager
    with pytest.raises(HotswapError, match="is released"), session["lease"]:
        pass


def test_a_leased_version_carried_over_is_kept_until_the_lease_goes(ev, host) -> None:
    """v1 carried over as unchanged into the next manager, then replaced: the lease on the
    first manager still pins it after the second manager is freed."""
    swapper, install = host()
    lease = swapper.lease("job 7")
    swapper.reload()  # the same artifact: a is carried over, unchanged
    install("v2")
    swapper.reload()
    time.sleep(0.3)
    assert ev.freed == [] and stamp(lease.manager) == "v1"
    lease.release()
    wait_for(lambda: ev.freed == ["v1"])


def test_free_timeout_caps_a_lease_and_names_it(ev, host, caplog) -> None:
    swapper, install = host(free_timeout=0.2)
    lease = swapper.lease("stuck session")
    install("v2")
    with caplog.at_level(logging.WARNING, logger="hotswap"):
        swapper.reload()
        wait_for(lambda: ev.freed == ["v1"])
    warned = [r.getMessage() for r in caplog.records if "free_timeout" in r.getMessage()]
    assert len(warned) == 1 and '"stuck session"' in warned[0] and "lease" in warned[0]
    lease.release()  # releasing after the forced free is harmless
    assert swapper.leases() == []


def test_take_and_release_never_wait_for_a_reload_in_progress(ev, host) -> None:
    swapper, install = host()
    install("v2")
    reloading = threading.Thread(target=swapper.reload, args=("block",))
    reloading.start()
    assert ev.loading.wait(10)  # the reload holds its lock, blocked in on_load
    taken: list[str] = []

    def session() -> None:
        with swapper.lease("during reload") as manager:
            taken.append(stamp(manager))
        lease = swapper.lease("again")
        lease.release()
        taken.append("released")

    worker = threading.Thread(target=session)
    worker.start()
    worker.join(5)
    assert not worker.is_alive() and taken == ["v1", "released"]
    assert reloading.is_alive()  # the reload was still in progress all along
    ev.gate.set()
    reloading.join(10)
    assert stamp(swapper.current()) == "v2"


def test_leasing_inside_a_prepared_reload_pins_the_running_manager(ev, host) -> None:
    swapper, install = host()
    install("v2")
    with swapper.prepare() as prepared:
        lease = swapper.lease("probe")
        assert lease.manager is swapper.current() and stamp(lease.manager) == "v1"
        prepared.commit()
    time.sleep(0.2)
    assert ev.freed == []
    lease.release()
    wait_for(lambda: ev.freed == ["v1"])


def test_a_lease_before_any_load_or_after_close_is_refused(tmp_path: Path, ev, host) -> None:
    swapper = PluginManagerSwapper(tmp_path, free_delay=0)
    with pytest.raises(HotswapError, match="no plugins loaded yet.*load_plugins"):
        swapper.lease("early")
    with pytest.raises(TypeError, match="lease name must be a str"):
        swapper.lease(42)
    loaded, _ = host()
    loaded.close()
    with pytest.raises(HotswapError, match="closed"):
        loaded.lease("late")


def test_leases_taken_and_released_while_reloading_in_a_loop(ev, host) -> None:
    """Many threads take and release leases while reloads go on: every version a lease pins
    answers through it, and each replaced version is freed once, after its last lease."""
    swapper, install = host()
    stop = threading.Event()
    wrong: list[str] = []

    def session() -> None:
        while not stop.is_set():
            with swapper.lease("s") as manager:
                token = manager.find_plugin("a").invoke_func("token")
                time.sleep(0.001)
                if token in ev.freed_tokens:
                    wrong.append(token)

    workers = [threading.Thread(target=session) for _ in range(8)]
    for worker in workers:
        worker.start()
    for n in range(30):
        install(("v1", "v2", "v3")[n % 3])
        swapper.reload()
    stop.set()
    for worker in workers:
        worker.join(10)
    assert wrong == []
    assert swapper.leases() == []
    # every version but the current one freed, and gone once garbage is collected
    wait_for(lambda: len(swapper.stats(explain=True)) == 1)
