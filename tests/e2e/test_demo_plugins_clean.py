"""The demos' own plugins pass the plugin authors' check: ``assert_reloads_cleanly``."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotswap_runtime.manager import PluginManager
from hotswap_runtime.testing import assert_reloads_cleanly

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo"


@pytest.fixture(autouse=True)
def _demo_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo plugins import their host's shared module (``demo.<name>.shared``)."""
    monkeypatch.syspath_prepend(str(ROOT))


def test_hello_plugins_reload_cleanly() -> None:
    """english and french say hello on a heartbeat, and leave nothing behind."""
    from demo.hello.shared import Heartbeat

    def beat(manager: PluginManager) -> None:
        manager.invoke_each("heartbeat", Heartbeat(1))

    assert_reloads_cleanly([DEMO / "hello/plugin/english", DEMO / "hello/plugin/french"],
                           times=5, call=beat)


def test_extension_plugin_reloads_cleanly() -> None:
    """pages fills each manager's Router; serving a page keeps no version alive."""
    from demo.extension.shared import Router

    def serve(manager: PluginManager) -> None:
        router = manager.vault.extension
        assert isinstance(router, Router)
        assert router.get("/hello").startswith("Hello from pages")

    assert_reloads_cleanly(DEMO / "extension/plugin/pages", times=5, call=serve,
                           extension_factory=Router)


def test_livex_kitchen_reloads_cleanly() -> None:
    """kitchen schedules an order in a host queue (as live data), which keeps no version alive."""
    from demo.livex.shared import JobQueue

    queue = JobQueue(delay=0)

    def order(manager: PluginManager) -> None:
        manager.find_plugin("kitchen").invoke_func("take_order", queue, 1)

    assert_reloads_cleanly(DEMO / "livex/plugin/kitchen", times=5, call=order)
    assert queue.pending() == 5  # the orders outlive the versions that took them


def test_trine_plugins_reload_cleanly() -> None:
    """gamma -> beta -> alpha, wired through export/import_, all go when closed."""
    assert_reloads_cleanly([DEMO / "trine/plugin" / n for n in ("alpha", "beta", "gamma")],
                           times=5)


def test_slink_plugin_reloads_cleanly_when_built_as_an_artifact() -> None:
    """fib, built as an artifact rather than linked statically, reloads cleanly."""
    assert_reloads_cleanly(DEMO / "slink/plugin/fib", times=5)


def test_web_plugins_reload_cleanly() -> None:
    """greeter and stats answer a request and a websocket message (stats asynchronously);
    the host state they write to keeps no version alive."""
    import asyncio

    from demo.web.shared import Call, HostState

    state = HostState()

    def serve(manager: PluginManager) -> None:
        session = state.session(None, "ws")
        call = Call("hello", {"name": "ann"}, session, state, 0)
        greeter = manager.find_plugin("greeter")
        assert greeter.invoke_func("hello", call)["message"] == "hello, ann"
        assert greeter.invoke_func("ws", call, "hi")["echo"] == "hi"
        summary = asyncio.run(manager.find_plugin("stats").invoke_func("summary", call))
        assert summary["version"] == "dev"

    assert_reloads_cleanly([DEMO / "web/plugin/greeter", DEMO / "web/plugin/stats"], times=5,
                           call=serve)
    assert state.snapshot()["counters"] == {"greetings": 5}  # written by five versions
