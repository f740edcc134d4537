"""``make demo-fleet``: four workers of the web demo follow a release channel, under load.

An unattended tour: build two releases of the web demo's plugins (and a broken greeter),
publish the first to a folder channel, start four workers (``uvicorn --workers 4``, or
gunicorn with the uvicorn worker class with ``--server gunicorn``) that each follow the
channel from their lifespan, then, while HTTP clients and a websocket keep them busy:
publish v2 and gate on ``hotswap status --wait``; roll out the broken greeter with the first
step sized so exactly one worker is the canary, and watch the rollout roll itself back; roll
back to v1 by hand. Every command is printed as a user would type it; it ends with the load's
tally (0 failed requests and 0 dropped websockets expected) and exit status 0, or says what
went wrong and exits 1.

    python -m demo.web.fleet [--server uvicorn|gunicorn] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from demo.tour import ROOT, STEP_TIMEOUT, StepFailed, free_port, run, say, step, tool
from hotswap_runtime.fleet import cohort_bucket

PLUGINS = ("greeter", "stats")
WORKERS = 4


class Load:
    """HTTP clients and one websocket hitting the workers until stopped; counts what fails."""

    def __init__(self, base: str, clients: int = 4) -> None:
        import httpx

        self.base = base
        self.stop = threading.Event()
        self.requests = self.failed = self.ws_messages = self.dropped_ws = 0
        self.versions: set[str] = set()
        self.ws_versions: list[str] = []
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._http, args=(httpx,), daemon=True)
                         for _ in range(clients)]
        self._threads.append(threading.Thread(target=self._ws, daemon=True))
        for thread in self._threads:
            thread.start()

    def _http(self, httpx: object) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:  # type: ignore[attr-defined]  # the module
            while not self.stop.is_set():
                try:
                    response = client.get("/p/greeter/hello", params={"name": "fleet"})
                    ok = response.status_code == 200
                    if ok:
                        self.versions.add(response.json()["version"])
                except Exception as exc:  # noqa: BLE001 - counted, shown at the end
                    ok = False
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                self.requests += 1
                if not ok:
                    self.failed += 1
                time.sleep(0.005)

    def _ws(self) -> None:
        from websockets.sync.client import connect

        # follow=1: this websocket follows each release (a plain one keeps its version)
        url = self.base.replace("http://", "ws://") + "/ws/greeter?follow=1"
        while not self.stop.is_set():
            try:
                with connect(url) as ws:
                    while not self.stop.is_set():
                        ws.send("ping")
                        reply = json.loads(ws.recv(timeout=10))
                        self.ws_messages += 1
                        if not self.ws_versions or self.ws_versions[-1] != reply["version"]:
                            self.ws_versions.append(reply["version"])
                        time.sleep(0.02)
            except Exception as exc:  # noqa: BLE001 - a dropped websocket, counted
                if not self.stop.is_set():
                    self.dropped_ws += 1
                    self.errors.append(f"websocket: {type(exc).__name__}: {exc}")
                    time.sleep(0.1)

    def end(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(15)


def build(hotswap: str, source: Path, out: Path, stamp: str) -> None:
    run([hotswap, "build", source, out, "--", "-X", f"CompileTimeString={stamp}"])


def broken_greeter(work: Path) -> Path:
    """A copy of the greeter whose on_load raises: the bad release of the tour."""
    copy = work / "broken-src" / "greeter"
    shutil.copytree(ROOT / "demo/web/plugin/greeter", copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    init = copy / "__init__.py"
    init.write_text(init.read_text() + '\n\ndef on_load(data: Any) -> None:  # the broken build\n'
                    '    raise RuntimeError("greeter v3 cannot reach its database")\n')
    return copy


def start_server(server: str, port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    if server == "gunicorn":
        cmd = [tool("gunicorn"), "-w", str(WORKERS), "-k", "uvicorn_worker.UvicornWorker",
               "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5",
               "demo.web.app:create_app_from_env()"]
    else:
        cmd = [tool("uvicorn"), "--workers", str(WORKERS), "--factory",
               "demo.web.app:create_app_from_env", "--host", "127.0.0.1", "--port", str(port),
               "--timeout-graceful-shutdown", "5"]
    env_text = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k.startswith("HOTSWAP_WEB"))
    say(f"  $ {env_text} {shlex.join(Path(cmd[0]).name if i == 0 else c for i, c in enumerate(cmd))} &")
    log = open(Path(env["HOTSWAP_WEB_CACHE"]).parent / "server.log", "w")  # noqa: SIM115  # the server writes it until stopped
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=log,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for_workers(hotswap: str, channel: Path, proc: subprocess.Popen[str]) -> list[dict]:
    """The reports of the workers once all of them have reported (status gates on those that
    reported; a deploy script that knows how many to expect waits for them first)."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        done = subprocess.run([hotswap, "status", str(channel), "--json"], capture_output=True,
                              text=True, timeout=STEP_TIMEOUT)
        if done.stdout:
            live = [s for s in json.loads(done.stdout)["instances"] if not s["stale"]]
            if len(live) >= WORKERS:
                return live
        if proc.poll() is not None:
            raise StepFailed(f"the server exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise StepFailed(f"waited {STEP_TIMEOUT:g} s for {WORKERS} workers to report")
        time.sleep(0.2)


def tour(server: str, work: Path) -> None:
    hotswap = tool("hotswap")
    channel = work / "channel"
    step("1. Build two releases of the web demo's plugins, and a broken greeter")
    for stamp in ("v1", "v2"):
        for name in PLUGINS:
            build(hotswap, ROOT / "demo/web/plugin" / name, work / stamp, stamp)
    build(hotswap, broken_greeter(work), work / "broken", "v3")

    step("2. Publish v1 to a new channel folder (publish creates it)")
    run([hotswap, "publish", channel, *(work / "v1" / f"{n}.hsp" for n in PLUGINS),
         "--note", "first release"])

    step(f"3. Start {WORKERS} workers under {server}; each follows the channel from its lifespan")
    port = free_port()
    env = {"HOTSWAP_WEB_CHANNEL": str(channel), "HOTSWAP_WEB_CACHE": str(work / "cache"),
           "HOTSWAP_WEB_FLEET_HEARTBEAT": "1"}
    proc = start_server(server, port, env)
    load = None
    try:
        live = wait_for_workers(hotswap, channel, proc)
        run([hotswap, "status", channel, "--wait", "--timeout", str(STEP_TIMEOUT)])

        step("4. Under load (4 HTTP clients, 1 websocket), publish v2 and gate on status --wait")
        load = Load(f"http://127.0.0.1:{port}")
        time.sleep(1.0)
        run([hotswap, "publish", channel, *(work / "v2" / f"{n}.hsp" for n in PLUGINS),
             "--note", "v2 for everyone"])
        run([hotswap, "status", channel, "--wait", "--timeout", str(STEP_TIMEOUT)])
        time.sleep(0.5)

        step("5. Roll out a broken greeter: the canary fails, the rollout rolls back by itself")
        canary = min(live, key=lambda s: cohort_bucket(s["instance"]))
        first = cohort_bucket(canary["instance"]) + 1
        say(f"    (the first step is {first}%: only {canary['instance']}, bucket "
            f"{cohort_bucket(canary['instance'])}, is in it)")
        run([hotswap, "rollout", channel, work / "broken" / "greeter.hsp",
             work / "v2" / "stats.hsp", "--steps", f"{first},100" if first < 100 else "100",
             "--pause", "1", "--timeout", "30"], expect=1)
        run([hotswap, "status", channel, "--wait", "--timeout", str(STEP_TIMEOUT)])

        step("6. Roll back to the first release by hand (a new revision with its artifacts)")
        run([hotswap, "rollback", channel, "--to", "1"])
        run([hotswap, "status", channel, "--wait", "--timeout", str(STEP_TIMEOUT)])
        time.sleep(0.5)
    finally:
        if load is not None:
            load.end()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    step("7. What the load saw")
    assert load is not None
    say(f"    {load.requests} requests, {load.failed} failed; {load.ws_messages} websocket "
        f"messages on one connection, {load.dropped_ws} dropped; the websocket was answered by "
        f"{' -> '.join(load.ws_versions)}")
    if load.failed or load.dropped_ws:
        raise StepFailed(f"the load saw {load.failed} failed requests and {load.dropped_ws} "
                         f"dropped websockets: {load.errors[:3]}")
    if load.ws_versions[-3:] != ["v1", "v2", "v1"]:
        raise StepFailed(f"the websocket saw {load.ws_versions}, expected v1 -> v2 -> v1")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tour; 0 when every step worked, else 1 with the reason on stderr."""
    parser = argparse.ArgumentParser(prog="python -m demo.web.fleet", description=__doc__.split("\n")[0])
    parser.add_argument("--server", choices=("uvicorn", "gunicorn"), default="uvicorn")
    parser.add_argument("--keep", type=Path, default=None,
                        help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    say("hotswap fleet demo: four workers, one channel, every worker swaps in process.")
    work = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="hotswap-fleet-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        tour(args.server, work)
    except StepFailed as exc:
        log = work / "server.log"
        tail = log.read_text().splitlines()[-30:] if log.exists() else []
        print("\n".join(["", "server log (last lines):", *tail]), file=sys.stderr)
        print(f"\nmake demo-fleet FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    say("\nDone: four workers took v2 together under load, a failing canary was rolled back "
        "automatically, and a manual rollback went back to v1, with no failed request and no "
        "dropped websocket. See demo/web/README.md to do it by hand.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
