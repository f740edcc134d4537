"""The web demo's host for the end-to-end tests: start it on a free port, stop it after."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "demo" / "web" / "plugin"
START_TIMEOUT = 30.0


class Host:
    """A running ``python -m demo.web.host`` and its base URL."""

    def __init__(self, proc: subprocess.Popen[str], port: int, pid_file: Path) -> None:
        self.proc, self.port, self.pid_file = proc, port, pid_file
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"


def read_port(proc: subprocess.Popen[str]) -> int:
    """Wait (bounded) for the host's ``listening on http://127.0.0.1:<port>`` line."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        if line.startswith("listening on http://127.0.0.1:"):
            return int(line.rsplit(":", 1)[1])
    proc.kill()
    _, err = proc.communicate(timeout=10)
    raise AssertionError(f"the web host did not start (status {proc.returncode}):\n{err}")


@contextlib.contextmanager
def running_host(bin_dir: Path, pid_file: Path, free_delay: float) -> Iterator[Host]:
    """The web host serving ``bin_dir`` on a free loopback port; killed on the way out."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo.web.host", "--port", "0", "--plugin-dir", str(bin_dir),
         "--pid-file", str(pid_file), "--free-delay", str(free_delay)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "HOTSWAP_DEMO_INTERVAL": "0.1"})
    try:
        yield Host(proc, read_port(proc), pid_file)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
