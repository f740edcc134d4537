"""End to end: the web demo served by uvicorn, reloaded while a websocket stays open."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from helpers import this_python_env
from web_host import PLUGINS, REPO, Host, read_port, running_host
from websockets.sync.client import connect


@pytest.fixture
def host(build_web: Callable[[str], Path], tmp_path: Path) -> Iterator[Host]:
    with running_host(build_web("v1"), tmp_path / "host.pid", free_delay=0) as started:
        yield started


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_reload_keeps_websocket_and_counters(host: Host, build_web: Callable[[str], Path]) -> None:
    """A reload through the admin route: the open websocket keeps talking to the version it
    connected on (leased), a new one gets the new code, state survives; closing the first
    websocket releases the old version."""
    with httpx.Client(base_url=host.url, timeout=10) as http, \
            connect(f"{host.ws_url}/ws/greeter", open_timeout=10, close_timeout=5) as ws:
        page = http.get("/chat")  # what a browser tab opens: it talks to this websocket
        assert page.status_code == 200 and '"/ws/greeter"' in page.text
        first = http.get("/p/greeter/hello", params={"name": "ann"})
        assert first.status_code == 200
        assert first.json() == {"message": "hello, ann", "version": "v1", "greetings": 1}
        ws.send("hi")
        assert json.loads(ws.recv(timeout=10)) == {
            "echo": "hi", "version": "v1", "messages": 1}

        build_web("v2")
        reloaded = http.post("/admin/reload")
        assert reloaded.status_code == 200
        assert reloaded.json()["details"] == {"greeter.hsp": "ok", "stats.hsp": "ok"}
        assert reloaded.json()["reloads"] == 1

        ws.send("again")   # the same connection: still the version it connected on
        assert json.loads(ws.recv(timeout=10)) == {
            "echo": "again", "version": "v1", "messages": 2}
        with connect(f"{host.ws_url}/ws/greeter", open_timeout=10, close_timeout=5) as newer:
            newer.send("hello")  # a new conversation: the new code
            assert json.loads(newer.recv(timeout=10)) == {
                "echo": "hello", "version": "v2", "messages": 1}
            leases = http.get("/").json()["leases"]
            assert [[(p["name"], p["version"]) for p in lease["plugins"]] for lease in leases] == [
                [("greeter", "v1"), ("stats", "v1")], [("greeter", "v2"), ("stats", "v2")]]
            assert all(lease["name"].startswith("ws 127.0.0.1:") for lease in leases)
        ws.send("still")
        assert json.loads(ws.recv(timeout=10))["version"] == "v1"
        second = http.get("/p/greeter/hello", params={"name": "bob"})
        assert second.json() == {"message": "hello, bob", "version": "v2", "greetings": 2}
        summary = http.get("/p/stats/summary").json()
        assert summary["version"] == "v2"
        assert summary["reloads"] == 1
        assert summary["counters"]["requests"] == 3
        assert summary["counters"]["ws_messages"] == 4
        assert summary["sessions"]["ws"] == 1
        index = http.get("/").json()
        assert [(p["name"], p["version"]) for p in index["plugins"]] == [
            ("greeter", "v2"), ("stats", "v2")]
    # the first websocket closed: nothing pins v1 any more
    with httpx.Client(base_url=host.url, timeout=10) as http:
        _wait_for(lambda: http.get("/").json()["leases"] == [], "the lease to be released")

    host.proc.send_signal(signal.SIGTERM)
    assert host.proc.wait(timeout=20) == 0
    assert not host.pid_file.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(host.proc.pid, 0)


def test_sigusr1_reloads_and_sigterm_closes_open_websocket(
        host: Host, build_web: Callable[[str], Path]) -> None:
    """SIGUSR1 reloads while serving (the heartbeat shows the new stamp); SIGTERM with a
    websocket open still exits 0."""
    assert int(host.pid_file.read_text()) == host.proc.pid
    with httpx.Client(base_url=host.url, timeout=10) as http, \
            connect(f"{host.ws_url}/ws/stats?follow=1", open_timeout=10, close_timeout=5) as ws:
        build_web("v3")
        host.proc.send_signal(signal.SIGUSR1)
        _wait_for(lambda: http.get("/p/greeter/hello").json()["version"] == "v3",
                  "the SIGUSR1 reload")
        ws.send("status")
        reply = json.loads(ws.recv(timeout=10))
        assert reply["version"] == "v3"
        assert reply["reloads"] == 1
        time.sleep(0.5)   # a few heartbeats (every 0.1 s) of the new version
        host.proc.send_signal(signal.SIGTERM)
        assert host.proc.wait(timeout=20) == 0
    stderr = host.proc.stderr.read() if host.proc.stderr is not None else ""
    assert "reload on SIGUSR1: greeter: ok, stats: ok" in stderr
    assert "heartbeat: greeter v3, stats v3; " in stderr
    assert "Traceback" not in stderr


def test_admin_reload_refuses_non_loopback_clients(host: Host,
                                                   build_web: Callable[[str], Path]) -> None:
    """A client forwarded from a non-loopback address gets 403 and nothing reloads."""
    build_web("v4")
    with httpx.Client(base_url=host.url, timeout=10) as http:
        refused = http.post("/admin/reload", headers={"X-Forwarded-For": "203.0.113.9"})
        assert refused.status_code == 403
        assert refused.json()["error"].startswith(
            "reload refused for client 203.0.113.9: /admin/reload only accepts loopback clients")
        assert http.get("/p/greeter/hello").json()["version"] == "v1"
        assert http.get("/p/nope/hello").status_code == 404
        assert http.get("/p/greeter/nope").json() == {
            "error": 'plugin "greeter" has no action "nope"; try hello'}
    host.proc.send_signal(signal.SIGTERM)
    assert host.proc.wait(timeout=20) == 0


def test_failed_reload_keeps_the_old_version_serving(
        host: Host, build_plugin: Callable[..., object], tmp_path: Path) -> None:
    """A rebuilt plugin whose on_load raises: 500 with the cause, the old code keeps serving."""
    broken = tmp_path / "broken" / "greeter"
    shutil.copytree(PLUGINS / "greeter", broken, ignore=shutil.ignore_patterns("__pycache__"))
    source = broken / "__init__.py"
    source.write_text(source.read_text().replace(
        'log.info("greeter %s loaded", CompileTimeString)',
        'raise RuntimeError("no database")'))
    build_plugin(broken, tmp_path / "bin", stamps={"CompileTimeString": "v5"})
    with httpx.Client(base_url=host.url, timeout=10) as http:
        failed = http.post("/admin/reload")
        assert failed.status_code == 500
        error = failed.json()["error"]
        assert error.startswith("reload failed, the previous plugins keep serving: ")
        assert "greeter" in error and "on_load" in error and "no database" in error
        assert http.get("/p/greeter/hello").json()["version"] == "v1"
        assert http.get("/").json()["reloads"] == 0
    host.proc.send_signal(signal.SIGTERM)
    assert host.proc.wait(timeout=20) == 0


def test_run_sh_and_reload_sh_from_any_directory(tmp_path: Path) -> None:
    """run.sh builds and serves (port 0 printed), reload.sh rebuilds with a stamp and reloads."""
    bin_dir = tmp_path / "bin"
    env = {**this_python_env(), "HOTSWAP_DEMO_BIN": str(bin_dir), "HOTSWAP_WEB_PORT": "0",
           "PYTHONUNBUFFERED": "1"}
    host_log = tmp_path / "host-stderr.log"
    with host_log.open("w") as stderr:  # a file, not a pipe: nothing must block the host
        proc = subprocess.Popen(["bash", str(REPO / "demo" / "web" / "run.sh"), "first"],
                                cwd="/", env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        port = read_port(proc)
        assert int((bin_dir / "host.pid").read_text()) == proc.pid
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert http.get("/p/greeter/hello").json()["version"] == "first"
            reloaded = subprocess.run(["bash", str(REPO / "demo" / "web" / "reload.sh"), "second"],
                                      cwd="/", env=env, capture_output=True, text=True, timeout=120)
            assert reloaded.returncode == 0, reloaded.stderr
            assert reloaded.stdout.splitlines()[-1].startswith("sent SIGUSR1 to the web host")
            _wait_for(lambda: http.get("/p/greeter/hello").json()["version"] == "second",
                      "the reload.sh reload")
            assert http.get("/p/stats/summary").json()["version"] == "second"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert not (bin_dir / "host.pid").exists()
    except BaseException:
        # a failing host's own words: shown with the failure (pytest's captured stderr)
        sys.stderr.write(f"--- demo/web/run.sh stderr ---\n{host_log.read_text()}")
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    missing = subprocess.run(["bash", str(REPO / "demo" / "web" / "reload.sh")], cwd="/", env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1
    assert "host.pid not found: is the host running? start it with demo/web/run.sh" in missing.stderr
