"""The web demo's host: serve ``demo.web.app`` with uvicorn on 127.0.0.1.

    python -m demo.web.host [--port N] [--plugin-dir DIR] [--pid-file FILE]

``--port 0`` (or ``$HOTSWAP_WEB_PORT=0``) picks a free port. Once the plugins are loaded and
the server is ready, it prints ``listening on http://127.0.0.1:<port>`` on stdout and writes
its pid file; ``kill -USR1 <pid>`` or ``POST /admin/reload`` reloads the plugins; ``SIGTERM``
or Ctrl-C shuts it down cleanly (open websockets are closed, every ``on_free`` runs, exit 0).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import uvicorn

from .app import create_app

PORT_ENV = "HOTSWAP_WEB_PORT"
BIN_ENV = "HOTSWAP_DEMO_BIN"
HOST = "127.0.0.1"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the host's command line (defaults from ``$HOTSWAP_WEB_PORT``/``$HOTSWAP_DEMO_BIN``)."""
    default_bin = Path(os.environ.get(BIN_ENV) or Path(__file__).resolve().parent / "bin")
    parser = argparse.ArgumentParser(
        prog="python -m demo.web.host",
        description="the web demo's host: serves its plugins on 127.0.0.1 and reloads them "
                    "on SIGUSR1 or POST /admin/reload")
    parser.add_argument("--port", type=int, default=int(os.environ.get(PORT_ENV) or 8000),
                        help=f"TCP port on {HOST}; 0 picks a free one [default: ${PORT_ENV} "
                             "or 8000]")
    parser.add_argument("--plugin-dir", type=Path, default=default_bin,
                        help="folder of the built plugins (*.hsp) [default: %(default)s]")
    parser.add_argument("--pid-file", type=Path, default=None,
                        help="where to write the pid [default: <plugin-dir>/host.pid]")
    parser.add_argument("--free-delay", type=float, default=5.0,
                        help="seconds before a replaced plugin version is freed "
                             "[default: %(default)s]")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a TCP port; give 0..65535 (0 picks a free one)")
    if args.pid_file is None:
        args.pid_file = args.plugin_dir / "host.pid"
    return args


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again under the
    # handler that was installed before it: this one, so the process ends with status 0
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the host until SIGTERM or Ctrl-C; returns the exit status."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if not args.plugin_dir.is_dir():
        print(f"error: plugin folder {args.plugin_dir} does not exist; build the plugins first "
              "(demo/web/run.sh does)", file=sys.stderr)
        return 2
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP; without
    # it uvicorn's separate header and body writes meet delayed ACKs (~40 ms per response)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, args.port))
    except OSError as exc:
        sock.close()
        print(f"error: cannot listen on {HOST}:{args.port} ({exc.strerror}); pick another "
              "--port, or 0 for a free one", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]
    pid_file: Path = args.pid_file

    def ready() -> None:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{os.getpid()}\n")
        print(f"listening on http://{HOST}:{port}", flush=True)

    app = create_app(args.plugin_dir, free_delay=args.free_delay, on_ready=ready)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
