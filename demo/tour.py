"""What the unattended tours (``make demo-fleet``, ``make demo-fleet-nats``) share: printing
steps and commands as a user would type them, running them with a bounded time, finding the
checkout's tools. A failed step raises ``StepFailed`` with what to check.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: seconds any one step may take
STEP_TIMEOUT = 60.0


class StepFailed(Exception):
    """A step of the tour did not do what it should; the message says what to check."""


def say(text: str = "") -> None:
    print(text, flush=True)


def step(title: str) -> None:
    say(f"\n=== {title}")


def shown(cmd: Sequence[object]) -> str:
    """``cmd`` as a user would type it from the repository root."""
    def short(c: object) -> str:
        p = Path(str(c))
        return str(p.relative_to(ROOT)) if p.is_absolute() and p.is_relative_to(ROOT) else str(c)
    return shlex.join(short(c) for c in cmd)


def run(cmd: Sequence[object], *, expect: int = 0, quiet: bool = False) -> str:
    """Run ``cmd`` from the repository root, echo it and (unless ``quiet``) its output; its
    stdout. StepFailed unless it exits ``expect``."""
    say(f"  $ {shown(cmd)}")
    done = subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True,
                          timeout=STEP_TIMEOUT * 2)
    for line in ([] if quiet else (done.stdout + done.stderr).splitlines()):
        say(f"    {line}")
    if done.returncode != expect:
        raise StepFailed(f"`{shown(cmd)}` exited {done.returncode}, expected {expect}")
    return done.stdout


def tool(name: str) -> str:
    """The console script ``name`` beside this Python (the .venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise StepFailed(f"no {name} command: run `make install` first")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
