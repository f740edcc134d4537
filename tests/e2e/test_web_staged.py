"""End to end: the web demo's loopback-only admin routes for plan and rollback (README "Staged reloads")."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from web_host import Host, running_host


@pytest.fixture
def host(build_web: Callable[[str], Path], tmp_path: Path) -> Iterator[Host]:
    """The web host with a free_delay long enough to roll back within."""
    with running_host(build_web("v1"), tmp_path / "host.pid", free_delay=60) as started:
        yield started


def test_plan_then_reload_then_rollback(host: Host, build_web: Callable[[str], Path]) -> None:
    """plan previews without loading, rollback brings v1 back; remote clients get 403."""
    with httpx.Client(base_url=host.url, timeout=10) as http:
        refused = http.post("/admin/rollback")
        assert refused.status_code == 409
        assert "no reload has replaced a manager yet" in refused.json()["error"]
        build_web("v2")
        assert http.get("/admin/plan").json() == {"plan": {"greeter.hsp": "ok",
                                                           "stats.hsp": "ok"}}
        assert http.get("/p/greeter/hello").json()["version"] == "v1"  # plan loaded nothing
        assert http.post("/admin/reload").status_code == 200
        assert http.get("/admin/plan").json()["plan"] == {"greeter.hsp": "unchanged",
                                                          "stats.hsp": "unchanged"}
        assert http.get("/p/greeter/hello").json()["version"] == "v2"
        remote = {"X-Forwarded-For": "203.0.113.9"}
        for method, route in (("GET", "/admin/plan"), ("POST", "/admin/rollback")):
            answer = http.request(method, route, headers=remote)
            assert answer.status_code == 403
            assert answer.json()["error"].startswith(
                f"{route} refused for client 203.0.113.9: it only accepts loopback clients")
        rolled = http.post("/admin/rollback")
        assert rolled.status_code == 200
        assert rolled.json() == {"details": {"greeter.hsp": "rolled back",
                                             "stats.hsp": "rolled back"}, "reloads": 2}
        assert http.get("/p/greeter/hello").json()["version"] == "v1"
    host.proc.send_signal(signal.SIGTERM)
    assert host.proc.wait(timeout=20) == 0
