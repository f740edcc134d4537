"""What every demo host shares: arguments, logging, the heartbeat interval, pid file, shutdown.

Kept apart so each ``host.py`` reads as the hotswap calls it makes and nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = [
    "DEMO_ROOT",
    "HostArgs",
    "cannot_load",
    "configure_logging",
    "heartbeat_interval",
    "heartbeats",
    "nothing_built",
    "parse_args",
    "pid_file",
    "start",
    "stop_event",
]

#: the ``demo/`` folder of the checkout
DEMO_ROOT = Path(__file__).resolve().parent

_INTERVAL_ENV = "HOTSWAP_DEMO_INTERVAL"
_BIN_ENV = "HOTSWAP_DEMO_BIN"


class HostArgs(argparse.Namespace):
    """The command line of a demo host."""

    plugin_dir: Path
    pid_file: Path


def parse_args(demo: str, argv: Sequence[str] | None = None,
               flags: Sequence[tuple[str, str]] = ()) -> HostArgs:
    """Parse a demo host's command line.

    The plugin folder defaults to ``$HOTSWAP_DEMO_BIN`` or ``demo/<demo>/bin``, where ``run.sh``
    builds the artifacts; the pid file defaults to ``host.pid`` inside it. ``flags`` adds the
    host's own on/off options, ``(--name, help)`` each (``args.name``, False by default).
    """
    default_bin = Path(os.environ.get(_BIN_ENV) or DEMO_ROOT / demo / "bin")
    parser = argparse.ArgumentParser(
        prog=f"python -m demo.{demo}.host",
        description=f"the host of the {demo} demo: serves its plugins and reloads them on demand",
    )
    parser.add_argument("--plugin-dir", type=Path, default=default_bin,
                        help="folder of the built plugins (*.hsp) [default: %(default)s]")
    parser.add_argument("--pid-file", type=Path, default=None,
                        help="where to write the host's pid [default: <plugin-dir>/host.pid]")
    for flag, text in flags:
        parser.add_argument(flag, action="store_true", help=text)
    args = parser.parse_args(argv, namespace=HostArgs())
    if args.pid_file is None:
        args.pid_file = args.plugin_dir / "host.pid"
    return args


def configure_logging() -> None:
    """Log at INFO to stderr, so the runtime's and the triggers' lines (Details) show."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def heartbeat_interval() -> float:
    """Seconds between heartbeats: ``$HOTSWAP_DEMO_INTERVAL`` or 2.

    Raises:
        SystemExit: the variable is set to something other than a positive number.
    """
    raw = os.environ.get(_INTERVAL_ENV, "").strip()
    if not raw:
        return 2.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise SystemExit(f"error: {_INTERVAL_ENV}={raw!r} is not a positive number of seconds; "
                         f"unset it or give e.g. {_INTERVAL_ENV}=0.5")
    return value


def stop_event() -> threading.Event:
    """Return an event set by SIGINT (Ctrl-C) or SIGTERM, so the host can shut down cleanly."""
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop


@contextlib.contextmanager
def pid_file(path: Path) -> Iterator[None]:
    """Write this process's pid to ``path`` for ``reload.sh``; remove it on the way out.

    Call it once the reload trigger is installed: the file's presence tells ``reload.sh`` that
    the host is ready for its signal.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def start(demo: str, argv: Sequence[str] | None = None, flags: Sequence[tuple[str, str]] = ()
          ) -> tuple[HostArgs, float, threading.Event]:
    """A demo host's start-up: its arguments (``flags`` as for ``parse_args``), logging,
    heartbeat interval and stop event.

    Returns:
        the parsed command line, the seconds between heartbeats, and the event that SIGINT or
        SIGTERM sets.
    """
    args = parse_args(demo, argv, flags)
    configure_logging()
    interval = heartbeat_interval()
    return args, interval, stop_event()


def say(line: str) -> None:
    """Print ``line`` in one write: ``print()`` writes the text and the newline apart, and a
    plugin printing from another thread meanwhile (``on_free`` runs on the freer thread) would
    land between them, leaving two half lines."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def heartbeats(stop: threading.Event, interval: float) -> Iterator[int]:
    """Yield 1, 2, 3... once per ``interval`` seconds until ``stop`` is set."""
    tick = 0
    while not stop.is_set():
        tick += 1
        yield tick
        stop.wait(interval)


def cannot_load(demo: str, exc: Exception) -> int:
    """Log that the demo's first ``load_plugins`` failed; return the host's exit status, 1."""
    logging.getLogger(f"demo.{demo}").error("cannot load the plugins: %s", exc)
    return 1


def nothing_built(demo: str, plugin_dir: Path) -> int:
    """Log that ``plugin_dir`` holds no plugin and how to build them; return the exit status, 1."""
    logging.getLogger(f"demo.{demo}").error(
        "no plugins in %s: build them first with demo/%s/run.sh", plugin_dir, demo)
    return 1
