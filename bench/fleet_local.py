"""Four workers of the web demo take a new release under load: a fleet channel vs rolling restarts.

The load of ``under_load.py`` (``--clients`` closed-loop HTTP clients on
``GET /p/greeter/hello``, ``--websockets`` websockets each sending a message every 50 ms) runs
against four workers of the same app on one socket, in three modes, one after the other in
the same run:

- ``fleet``: ``uvicorn --workers 4``, each worker following a folder channel from its lifespan;
  a new release is published (``hotswap_runtime.fleet.ops.publish``); ``fleet_converge_s`` is
  the time from the publish until all four report it (the latest ``updated`` of their reports,
  written right after each swap);
- ``gunicorn``: ``gunicorn -w 4 -k uvicorn_worker.UvicornWorker`` serving a plugin folder; the
  new artifacts are swapped into it and the master gets ``SIGHUP`` (gunicorn starts new workers
  and retires the old ones);
- ``uvicorn``: ``uvicorn --workers 4`` serving a plugin folder; ``SIGHUP`` makes it replace each
  worker (a new one first, then the old one goes).

For the two restarts, ``*_converge_s`` is the time from the signal until every worker process
is a new one and each has answered a request with the new code (the answer's stamp and its
``x-hotswap-worker`` pid). Each mode does ``--rounds`` rollouts, alternating two builds;
``*_failed_requests`` and ``*_dropped_ws`` count what the load lost from each trigger until
one second after it converged (summed over rounds); times are medians over rounds.

    .venv/bin/python bench/fleet_local.py [--rounds 5] [--quick] [--json]
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import _util
import httpx
from under_load import Load, Tally, http_client, ws_client

from hotswap_runtime.fleet import open_channel, ops
from hotswap_runtime.fleet.follower import parse_time

WORKERS = 4
SETTLE = 1.0          # seconds after convergence still counted as the rollout
CONVERGE_TIMEOUT = 60.0


class Seen:
    """Which worker answered with which stamp, from the load's responses."""

    def __init__(self) -> None:
        self.answers: set[tuple[int, str]] = set()

    def note(self, answer: httpx.Response) -> None:
        self.answers.add((int(answer.headers["x-hotswap-worker"]), answer.json()["version"]))


def children(pid: int) -> set[int]:
    """The worker processes of a server master (multiprocessing's helpers left out)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    out = set()
    for child in text.split():
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in cmdline and b"semaphore_tracker" not in cmdline:
            out.add(int(child))
    return out


def gunicorn_command(port: int, grace: float) -> list[str]:
    return [str(Path(sys.executable).with_name("gunicorn")), "-w", str(WORKERS), "-k",
            "uvicorn_worker.UvicornWorker", "-b", f"127.0.0.1:{port}", "--graceful-timeout",
            f"{grace:g}", "--log-level", "warning", "demo.web.app:create_app_from_env()"]


def uvicorn_command(port: int, grace: float | None = None) -> list[str]:
    extra = ["--timeout-graceful-shutdown", f"{grace:g}"] if grace is not None else []
    return [sys.executable, "-m", "uvicorn", "--workers", str(WORKERS), "--factory",
            "demo.web.app:create_app_from_env", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", *extra]


async def drive(base: str, args: object, rounds: int,
                trigger: Callable[[int], None],
                converged: Callable[[int, float, Seen], float | None]) -> tuple[list[float], Tally]:
    """Run the load; ``rounds`` times: trigger, wait for convergence, settle. Returns the
    convergence times and the tally of every rollout window."""
    load = Load(base)
    seen = Seen()
    load.tallies["roll"] = Tally()
    tasks = [asyncio.create_task(http_client(load, i, seen.note)) for i in range(args.clients)]
    tasks += [asyncio.create_task(ws_client(load, i)) for i in range(args.websockets)]
    times: list[float] = []
    try:
        await asyncio.sleep(args.steady)
        for n in range(rounds):
            load.phase = "roll"
            seen.answers.clear()
            started_wall, started = time.time(), time.monotonic()
            await asyncio.to_thread(trigger, n)
            while True:
                took = await asyncio.to_thread(converged, n, started_wall, seen)
                if took is not None:
                    times.append(took)
                    break
                if time.monotonic() - started > CONVERGE_TIMEOUT:
                    times.append(float("nan"))
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(SETTLE)
            load.phase = "steady"
            await asyncio.sleep(args.gap)
    finally:
        load.done = True
        await asyncio.wait(tasks, timeout=15)
        for task in tasks:
            task.cancel()
    return times, load.tallies["roll"]


def figures(prefix: str, times: list[float], tally: Tally) -> dict[str, float]:
    return {
        f"{prefix}_converge_s": _util.median(times),
        f"{prefix}_converge_max_s": max(times),
        f"{prefix}_failed_requests": tally.failed,
        f"{prefix}_dropped_ws": tally.dropped_ws,
        f"{prefix}_requests": len(tally.latencies) + tally.failed,
        f"{prefix}_rollouts": len(times),
    }


def fleet_mode(root: Path, builds: list[list[Path]], args: object) -> dict[str, float]:
    channel = root / "channel"
    ops.publish(channel, builds[0])
    port = _util.free_port()
    env = {**os.environ, "HOTSWAP_WEB_CHANNEL": str(channel),
           "HOTSWAP_WEB_CACHE": str(root / "cache"), "HOTSWAP_WEB_FLEET_HEARTBEAT": "1"}
    proc = subprocess.Popen(uvicorn_command(port, args.grace), cwd=_util.REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    chan = open_channel(channel)
    published: dict[int, int] = {}

    def reports(revision: int) -> list[dict] | None:
        pids = children(proc.pid)
        mine = [s for s in chan.statuses() if s.get("pid") in pids]
        if len(pids) == WORKERS and len(mine) == WORKERS and all(
                s["revision"] == revision and s["state"] == "ok" for s in mine):
            return mine
        return None

    def trigger(n: int) -> None:
        published[n] = ops.publish(chan, builds[(n + 1) % 2]).revision

    def converged(n: int, started_wall: float, seen: Seen) -> float | None:
        done = reports(published[n])
        if done is None:
            return None
        return max(parse_time(s["updated"]) for s in done) - started_wall

    try:
        _util.wait_until_serving(f"{base}/p/greeter/hello", proc)
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        while reports(1) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the four workers never reported revision 1")
            time.sleep(0.05)
        times, tally = asyncio.run(drive(base, args, args.rounds, trigger, converged))
    finally:
        _util.stop(proc)
    return figures("fleet", times, tally)


def restart_mode(prefix: str, command: list[str], root: Path, builds: list[list[Path]],
                 args: object) -> dict[str, float]:
    served = root / "served"
    served.mkdir()
    _util.swap_in(builds[0], served)
    env = {**os.environ, "HOTSWAP_WEB_PLUGIN_DIR": str(served)}
    proc = subprocess.Popen(command, cwd=_util.REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    base = command_base(command)
    before: dict[int, set[int]] = {}

    def trigger(n: int) -> None:
        before[n] = children(proc.pid)
        _util.swap_in(builds[(n + 1) % 2], served)
        os.kill(proc.pid, signal.SIGHUP)

    def converged(n: int, started_wall: float, seen: Seen) -> float | None:
        now = children(proc.pid)
        stamp = "b" if n % 2 == 0 else "a"
        if len(now) != WORKERS or now & before[n]:
            return None
        # the load's keep-alive connections stick to a few workers: probe on fresh connections
        # until each new worker has answered with the new code
        with httpx.Client(base_url=base, timeout=5.0,
                          limits=httpx.Limits(max_keepalive_connections=0)) as probe:
            for _ in range(4 * WORKERS):
                if all((pid, stamp) in seen.answers for pid in now):
                    return time.time() - started_wall
                try:
                    answer = probe.get("/p/greeter/hello", headers={"connection": "close"})
                    seen.note(answer)
                except (httpx.HTTPError, KeyError, ValueError):
                    return None
        return None

    try:
        _util.wait_until_serving(f"{base}/p/greeter/hello", proc)
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        while len(children(proc.pid)) != WORKERS:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{prefix}: four workers never started")
            time.sleep(0.05)
        time.sleep(1.0)   # every worker through its lifespan
        times, tally = asyncio.run(drive(base, args, args.rounds, trigger, converged))
    finally:
        _util.stop(proc)
    return figures(prefix, times, tally)


def command_base(command: list[str]) -> str:
    if "--port" in command:
        return f"http://127.0.0.1:{command[command.index('--port') + 1]}"
    return f"http://{command[command.index('-b') + 1]}"


def main() -> None:
    parser = _util.parser(__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--websockets", type=int, default=4)
    parser.add_argument("--steady", type=float, default=2.0)
    parser.add_argument("--gap", type=float, default=1.0)
    parser.add_argument("--grace", type=float, default=10.0,
                        help="graceful shutdown timeout of the restarted workers (gunicorn's "
                             "--graceful-timeout, uvicorn's --timeout-graceful-shutdown)")
    parser.add_argument("--mode", choices=("all", "fleet", "gunicorn", "uvicorn"), default="all")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.clients, args.websockets, args.steady, args.gap = 1, 2, 1, 0.5, 0.2
        args.grace = 1.0
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="hotswap-bench-fleet-") as tmp:
        root = Path(tmp)
        builds = [_util.build_web(root / "build" / stamp, stamp) for stamp in ("a", "b")]
        modes = {
            "fleet": lambda r: fleet_mode(r, builds, args),
            "gunicorn": lambda r: restart_mode(
                "gunicorn_hup", gunicorn_command(_util.free_port(), args.grace), r, builds, args),
            "uvicorn": lambda r: restart_mode(
                "uvicorn_hup", uvicorn_command(_util.free_port(), args.grace), r, builds, args),
        }
        for name, run_mode in modes.items():
            if args.mode not in ("all", name):
                continue
            _util.log(f"fleet_local: {name}: {WORKERS} workers, {args.rounds} rollouts under "
                      f"{args.clients} clients and {args.websockets} websockets")
            folder = root / name
            folder.mkdir()
            results.update(run_mode(folder))
    _util.emit(results, args.json)


if __name__ == "__main__":
    main()
