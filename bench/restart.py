"""What a restart costs compared with a hot reload of the same host and plugins.

The host is the web demo (``python -m demo.web.host``) serving its two plugins plus a
synthetic 10-module plugin. ``restart_ms``: from starting the process to the first request it
serves (interpreter start, imports, plugin load, bind included), the cost a restart-based
reload pays at best. ``reload_10_http_ms``: the same plugins rebuilt with a new stamp, swapped
into the plugin folder and reloaded through ``POST /admin/reload`` of a running host, measured
by the client (round trip included). ``restart_vs_reload_10`` is their ratio. Medians.

    .venv/bin/python bench/restart.py [--runs 7] [--quick] [--json]
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import _util
import httpx


def measure(runs: int, modules: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hotswap-bench-restart-") as tmp:
        root = Path(tmp)
        bulk = _util.make_plugin(root / "src", "bulk", modules)
        variants = [_util.build_web(root / name, name, [bulk]) for name in ("a", "b")]
        live = root / "live"
        live.mkdir()
        _util.swap_in(variants[0], live)
        env = {**os.environ, "PYTHONPATH": str(_util.REPO)}

        restarts = []
        for _ in range(runs):
            port = _util.free_port()
            started = time.perf_counter()
            proc = subprocess.Popen(_util.host_command(live, port), cwd=_util.REPO, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            try:
                _util.wait_until_serving(f"http://127.0.0.1:{port}/p/greeter/hello", proc)
                restarts.append(time.perf_counter() - started)
            finally:
                _util.stop(proc)

        port = _util.free_port()
        # free_delay 0 and a pause between reloads: each reload is timed alone, not overlapped
        # with the freeing of the versions earlier reloads replaced
        proc = subprocess.Popen(_util.host_command(live, port, free_delay=0), cwd=_util.REPO,
                                env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        client_ms, server_ms = [], []
        try:
            base = f"http://127.0.0.1:{port}"
            _util.wait_until_serving(f"{base}/p/greeter/hello", proc)
            with httpx.Client(base_url=base, timeout=30) as client:
                for run in range(runs):  # alternate the variants: each reload changes code
                    _util.swap_in(variants[(run + 1) % 2], live)
                    started = time.perf_counter()
                    answer = client.post("/admin/reload")
                    client_ms.append((time.perf_counter() - started) * 1000)
                    answer.raise_for_status()
                    details = answer.json()["details"]
                    if set(details.values()) != {"ok"}:
                        raise RuntimeError(f"reload did not load fresh versions: {details}")
                    server_ms.append(answer.json()["reload_ms"])
                    time.sleep(0.3)
        finally:
            _util.stop(proc)
    restart_ms = _util.median(restarts) * 1000
    reload_ms = _util.median(client_ms)
    return {"restart_ms": restart_ms, "reload_10_http_ms": reload_ms,
            "reload_10_server_ms": _util.median(server_ms),
            "restart_vs_reload_10": restart_ms / reload_ms}


def main() -> None:
    parser = _util.parser(__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--modules", type=int, default=10)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.modules = 1, 3
    _util.log(f"restart: {args.runs} runs, web demo plugins + a {args.modules}-module plugin")
    _util.emit(measure(args.runs, args.modules), args.json)


if __name__ == "__main__":
    main()
