"""The web demo under load while it reloads every 200 ms: hot swap vs ``uvicorn --reload``.

A closed-loop load — ``--clients`` HTTP connections each sending ``GET /p/greeter/hello`` as
soon as the previous answer arrives, plus ``--websockets`` open websockets each sending a
message every 50 ms and awaiting its answer — runs for ``--steady`` seconds with no reload,
then for ``--hot`` seconds while the server reloads every ``--interval`` seconds:

- ``hot_*``: the web demo host (``python -m demo.web.host``); each reload swaps freshly built
  artifacts (two builds with different stamps, alternated) into its plugin folder and calls
  ``POST /admin/reload``;
- ``restart_*``: the same app under ``uvicorn --reload``, a file in its watched folder
  rewritten at the same rate (each change restarts the worker process).

Reported per mode: requests sent, failed (an error or a status other than 200), websockets
dropped (closed by the server or erroring; the client reconnects and goes on), p50/p99 of the
request latency while steady and while reloading, the maximum while reloading, and the
ratios to the steady p99. With ``--runs`` > 1 counts are summed over runs and latency figures
are medians of the runs'.

    .venv/bin/python bench/under_load.py [--runs 3] [--steady 5] [--hot 10] [--quick] [--json]
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import _util
import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException


@dataclass
class Tally:
    """What one phase of the load saw."""

    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    dropped_ws: int = 0
    ws_messages: int = 0
    reloads: int = 0
    reload_errors: int = 0


@dataclass
class Load:
    """The running load: the current phase and a Tally per phase."""

    base: str
    phase: str = "steady"
    done: bool = False
    tallies: dict[str, Tally] = field(default_factory=lambda: {"steady": Tally(), "hot": Tally()})

    @property
    def tally(self) -> Tally:
        return self.tallies[self.phase]


async def http_client(load: Load, index: int,
                      on_answer: Callable[[httpx.Response], None] | None = None) -> None:
    """One closed-loop client; ``on_answer`` sees each 200 answer (fleet_local notes who
    answered with which code)."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=load.base, timeout=10.0, limits=limits) as client:
        while not load.done:
            tally = load.tally
            started = time.perf_counter()
            try:
                answer = await client.get("/p/greeter/hello", params={"name": f"c{index}"})
                ok = answer.status_code == 200
                if ok and on_answer is not None:
                    on_answer(answer)
            except httpx.HTTPError:
                ok = False
            if ok:
                tally.latencies.append(time.perf_counter() - started)
            else:
                tally.failed += 1
                await asyncio.sleep(0.005)


async def ws_client(load: Load, index: int) -> None:
    url = load.base.replace("http://", "ws://") + "/ws/greeter"
    while not load.done:
        try:
            async with connect(url, open_timeout=10, close_timeout=2) as ws:
                while not load.done:
                    await ws.send(f"ws{index}")
                    json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
                    load.tally.ws_messages += 1
                    await asyncio.sleep(0.05)
        except (TimeoutError, WebSocketException, OSError):
            if not load.done:
                load.tally.dropped_ws += 1
                await asyncio.sleep(0.05)


async def run_load(base: str, clients: int, websockets: int, steady: float, hot: float,
                   interval: float, reload: Callable[[], Awaitable[bool]]) -> Load:
    load = Load(base)
    tasks = [asyncio.create_task(http_client(load, i)) for i in range(clients)]
    tasks += [asyncio.create_task(ws_client(load, i)) for i in range(websockets)]
    await asyncio.sleep(steady)
    load.phase = "hot"
    end = time.monotonic() + hot
    while time.monotonic() < end:
        tick = time.monotonic()
        ok = await reload()
        load.tally.reloads += 1
        load.tally.reload_errors += not ok
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - tick)))
    load.done = True
    await asyncio.wait(tasks, timeout=15)
    for task in tasks:
        task.cancel()
    return load


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(prefix: str, load: Load) -> dict[str, float]:
    steady, hot = load.tallies["steady"], load.tallies["hot"]
    steady_p99 = _percentile(steady.latencies, 0.99)
    hot_max = max(hot.latencies, default=float("nan"))
    return {
        f"{prefix}_requests": len(hot.latencies) + hot.failed,
        f"{prefix}_failed_requests": hot.failed,
        f"{prefix}_dropped_ws": hot.dropped_ws,
        f"{prefix}_reloads": hot.reloads,
        f"{prefix}_reload_errors": hot.reload_errors,
        f"{prefix}_ws_messages": hot.ws_messages,
        f"{prefix}_steady_failed": steady.failed + steady.dropped_ws,
        f"{prefix}_steady_p50_ms": _percentile(steady.latencies, 0.5) * 1000,
        f"{prefix}_steady_p99_ms": steady_p99 * 1000,
        f"{prefix}_p50_ms": _percentile(hot.latencies, 0.5) * 1000,
        f"{prefix}_p99_ms": _percentile(hot.latencies, 0.99) * 1000,
        f"{prefix}_max_ms": hot_max * 1000,
        f"{prefix}_p99_ratio": _percentile(hot.latencies, 0.99) / steady_p99,
        f"{prefix}_max_ratio": hot_max / steady_p99,
    }


def hot_mode(root: Path, args: object) -> dict[str, float]:
    variants = [_util.build_web(root / name, name) for name in ("a", "b")]
    live = root / "live"
    live.mkdir(exist_ok=True)
    _util.swap_in(variants[0], live)
    port = _util.free_port()
    proc = subprocess.Popen(_util.host_command(live, port, free_delay=1.0), cwd=_util.REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    flip = [0]

    async def measure() -> Load:
        async with httpx.AsyncClient(base_url=base, timeout=30.0) as admin:
            async def reload() -> bool:
                flip[0] += 1
                _util.swap_in(variants[flip[0] % 2], live)
                try:
                    answer = await admin.post("/admin/reload")
                except httpx.HTTPError:
                    return False
                return answer.status_code == 200 and set(answer.json()["details"].values()) == {"ok"}

            return await run_load(base, args.clients, args.websockets, args.steady, args.hot,
                                  args.interval, reload)

    try:
        _util.wait_until_serving(f"{base}/p/greeter/hello", proc)
        load = asyncio.run(measure())
    finally:
        _util.stop(proc)
    return summarise("hot", load)


def restart_mode(root: Path, args: object) -> dict[str, float]:
    served = root / "served"
    _util.build_web(served, "r")
    watch = root / "watch"
    watch.mkdir(exist_ok=True)
    touched = watch / "touched.py"
    touched.write_text("# changed 0\n")
    port = _util.free_port()
    env = {**os.environ, "HOTSWAP_WEB_PLUGIN_DIR": str(served)}
    proc = subprocess.Popen(_util.uvicorn_reload_command(port, watch), cwd=_util.REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    count = [0]

    async def touch() -> bool:
        count[0] += 1
        touched.write_text(f"# changed {count[0]}\n")
        return True

    try:
        _util.wait_until_serving(f"{base}/p/greeter/hello", proc)
        time.sleep(1.0)   # the reloader's watch is up before the first change
        load = asyncio.run(run_load(base, args.clients, args.websockets, args.steady, args.hot,
                                    args.interval, touch))
    finally:
        _util.stop(proc)
    return summarise("restart", load)


def combine(samples: list[dict[str, float]]) -> dict[str, float]:
    counts = ("_requests", "_failed_requests", "_dropped_ws", "_reloads", "_reload_errors",
              "_ws_messages", "_steady_failed")
    out: dict[str, float] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        out[key] = sum(values) if key.endswith(counts) else _util.median(values)
    return out


def main() -> None:
    parser = _util.parser(__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--websockets", type=int, default=4)
    parser.add_argument("--steady", type=float, default=5.0)
    parser.add_argument("--hot", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--mode", choices=("both", "hot", "restart"), default="both")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.clients, args.websockets, args.steady, args.hot = 1, 2, 1, 0.5, 1.0
    results: dict[str, float] = {}
    for mode, run_mode in (("hot", hot_mode), ("restart", restart_mode)):
        if args.mode not in ("both", mode):
            continue
        samples = []
        for run in range(args.runs):
            _util.log(f"under_load: {mode} run {run + 1}/{args.runs}: {args.clients} clients, "
                      f"{args.websockets} websockets, {args.steady}s steady, {args.hot}s "
                      f"reloading every {args.interval}s")
            with tempfile.TemporaryDirectory(prefix=f"hotswap-bench-load-{mode}-") as tmp:
                samples.append(run_mode(Path(tmp), args))
        results.update(combine(samples))
    _util.emit(results, args.json)


if __name__ == "__main__":
    main()
