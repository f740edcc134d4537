"""``make demo``: a guided, unattended tour of a real hot swap with the hello demo.

It builds the hello plugins, starts the host, waits for its heartbeat, rebuilds the plugins
with a visible change (a new ``CompileTimeString``), triggers the hot reload with SIGUSR1,
waits until the heartbeat shows the new version, then stops the host and checks it exited
cleanly. Every step is printed, with the command a user would type; every wait is bounded,
and any failure ends the tour with a message and exit status 1.

Run it from anywhere: ``python -m demo.hello.walkthrough`` with the repository root on
``sys.path`` (``make demo`` does exactly that).
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ("english", "french")
#: seconds a single step may take before the tour gives up
STEP_TIMEOUT = 60.0


class StepFailed(Exception):
    """A step of the tour did not do what it should; the message says what to check."""


def hotswap_command() -> str:
    """The ``hotswap`` console script next to this Python (the .venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("hotswap")
    if beside.exists():
        return str(beside)
    found = shutil.which("hotswap")
    if found is None:
        raise StepFailed("no hotswap command found: run `make install` (or `make demo`) first")
    return found


def show(cmd: Sequence[str]) -> str:
    """Render ``cmd`` as a user would type it from the repository root."""
    parts = []
    for part in cmd:
        path = Path(part)
        if path.is_absolute() and path.is_relative_to(ROOT):
            part = str(path.relative_to(ROOT))
        parts.append(part)
    return shlex.join(parts)


class Host:
    """The host process, its output echoed with a ``host |`` prefix and searchable."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1,
                                     start_new_session=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, what: str, timeout: float = STEP_TIMEOUT) -> str:
        """Echo the host's output until a line matches ``pattern``; return that line."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StepFailed(f"waited {timeout:.0f} s for {what}; it never came")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait()
                raise StepFailed(f"the host exited (status {code}) while waiting for {what}")
            print(f"    host | {line}", flush=True)
            if regex.search(line):
                return line

    def wait_for_all(self, patterns: dict[str, str]) -> None:
        """Like ``wait_for``, for several patterns (pattern -> what) matched in any order."""
        left = dict(patterns)
        deadline = time.monotonic() + STEP_TIMEOUT
        while left:
            timeout = max(deadline - time.monotonic(), 0.001)
            line = self.wait_for("|".join(f"(?:{p})" for p in left), " and ".join(left.values()),
                                 timeout)
            left = {p: what for p, what in left.items() if not re.search(p, line)}

    def drain(self, timeout: float) -> None:
        """Echo what the host prints until it closes its output or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                return
            if line is None:
                return
            print(f"    host | {line}", flush=True)

    def kill(self) -> None:
        """Stop the host for good (used only when the tour fails)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def step(number: int, title: str, explanation: str) -> None:
    print(f"\n=== Step {number}: {title}", flush=True)
    for line in textwrap.dedent(explanation).strip().splitlines():
        print(f"    {line}", flush=True)


def build(hotswap: str, bin_dir: Path, stamp: str) -> None:
    for plugin in PLUGINS:
        cmd = [hotswap, "build", str(ROOT / "demo/hello/plugin" / plugin), str(bin_dir),
               "--", "-X", f"CompileTimeString={stamp}"]
        print(f"  $ {show(cmd)}", flush=True)
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=STEP_TIMEOUT)
        for line in (done.stdout + done.stderr).splitlines():
            print(f"    {line}", flush=True)
        if done.returncode != 0:
            raise StepFailed(f"`{show(cmd)}` failed with status {done.returncode}")


def wait_for_file(path: Path, what: str, host: Host) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    while not path.exists():
        if host.proc.poll() is not None:
            raise StepFailed(f"the host exited (status {host.proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise StepFailed(f"waited {STEP_TIMEOUT:.0f} s for {what} ({path}); it never came")
        time.sleep(0.05)


def tour(bin_dir: Path) -> None:
    hotswap = hotswap_command()
    bin_dir.mkdir(parents=True, exist_ok=True)
    for old in bin_dir.glob("*.hsp"):
        old.unlink()
    pid_file = bin_dir / "host.pid"
    pid_file.unlink(missing_ok=True)

    step(1, "build the plugins",
         """
         Each plugin is a package under demo/hello/plugin/. `hotswap build` turns it into one
         verifiable artifact, <name>.hsp. `-X CompileTimeString=v1` stamps a version string
         into the plugin's code, so we can see which version is running.
         """)
    build(hotswap, bin_dir, "v1")

    step(2, "start the host",
         """
         The host (demo/hello/host.py) loads every artifact at start-up, then prints a
         heartbeat: it calls `invoke_each("heartbeat", ...)` and each plugin adds a line.
         It reloads its plugins when it receives SIGUSR1.
         """)
    env = dict(os.environ)
    env.setdefault("HOTSWAP_DEMO_INTERVAL", "1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "demo.hello.host", "--plugin-dir", str(bin_dir)]
    print(f"  $ {show(cmd)}", flush=True)
    host = Host(cmd, env)
    try:
        host.wait_for_all({rf"^heartbeat \d+: {plugin} v1:": f"the first heartbeat of {plugin} v1"
                           for plugin in PLUGINS})
        wait_for_file(pid_file, "the host's pid file", host)
        print("  -> the host is serving version v1 of both plugins.", flush=True)

        step(3, "change the plugins and rebuild them",
             """
             Now we rebuild both plugins with a new stamp, v2: a real code change would work the
             same way. The host keeps running version v1 meanwhile: nothing is restarted.
             """)
        build(hotswap, bin_dir, "v2")
        host.drain(0.2)

        step(4, "hot-reload: send SIGUSR1 to the host",
             """
             The host's trigger (hotswap_runtime.triggers.reload_on_signal) reloads in a
             background thread: it loads v2, runs its hooks, and swaps it in atomically.
             Calls in flight finish on v1; new calls reach v2; v1's on_free runs a second later.
             """)
        pid = int(pid_file.read_text())
        print(f"  $ kill -USR1 {pid}", flush=True)
        os.kill(pid, signal.SIGUSR1)
        host.wait_for_all({rf"^heartbeat \d+: {plugin} v2:": f"the heartbeat of {plugin} v2"
                           for plugin in PLUGINS})
        print("  -> the same host process now serves version v2: a hot swap.", flush=True)
        host.wait_for_all({rf"^{plugin} v1: on_free": f"on_free of {plugin} v1"
                           for plugin in PLUGINS})
        print("  -> the old version v1 has been freed.", flush=True)

        step(5, "stop the host",
             """
             SIGTERM (or Ctrl-C) stops the triggers, frees the plugins and exits with status 0.
             """)
        print(f"  $ kill -TERM {pid}", flush=True)
        host.proc.send_signal(signal.SIGTERM)
        try:
            code = host.proc.wait(timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise StepFailed(f"the host did not exit within {STEP_TIMEOUT:.0f} s of SIGTERM") from None
        host.drain(1.0)
        if code != 0:
            raise StepFailed(f"the host exited with status {code}, expected 0")
        print("  -> the host exited with status 0.", flush=True)
    finally:
        host.kill()


def main() -> int:
    """Run the tour; return 0 when every step worked, else 1 with the reason on stderr."""
    bin_dir = Path(os.environ.get("HOTSWAP_DEMO_BIN") or ROOT / "demo/hello/bin").resolve()
    print("hotswap demo: reload plugin code inside a running Python process, no restart.")
    try:
        tour(bin_dir)
    except StepFailed as exc:
        print(f"\nmake demo FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\nmake demo interrupted; the host was stopped", file=sys.stderr, flush=True)
        return 130
    print(
        "\nDone: you watched a running host switch from v1 to v2 of its plugins.\n"
        "Try it by hand, in two terminals:\n"
        "    demo/hello/run.sh        # build and serve (Ctrl-C stops it)\n"
        "    demo/hello/reload.sh     # rebuild with a new stamp and hot-reload\n"
        "Then see demo/extension, demo/livex, demo/slink and demo/trine (each has a README).",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
