"""Helpers shared by the benchmark scripts: synthetic plugins, builds, medians, RSS, output.

Each script runs standalone (``python bench/<name>.py``), prints a readable table, and with
``--json`` prints only one JSON object of flat ``key -> number`` on stdout instead (what
``bench/run.py`` collects). ``--quick`` shrinks every size so a smoke test can run it in a few
seconds; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:   # run as a script from anywhere: the demo and the packages import
    sys.path.insert(0, str(REPO))

HOOKS = '''\
"""Synthetic benchmark plugin {name} ({count} modules)."""

from __future__ import annotations

import logging

from . import {imports}

CompileTimeString = "dev"

log = logging.getLogger(__name__)


def on_load(data):
    log.debug("loaded %s", CompileTimeString)


def on_init(vault):
    pass


def on_free():
    pass


def export():
    return None


def import_():
    return None


def invoke_func(name, *params):
    if name == "work":
        return {first}.work(*params)
    return CompileTimeString


def reloadable():
    return True
'''

MODULE = '''\
"""Module {index} of a synthetic benchmark plugin: uses logging and typing like real code."""

from __future__ import annotations

import dataclasses
import logging
import typing
from typing import Generic, Optional, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclasses.dataclass
class Record{index}:
    key: str
    value: int = 0
    tags: list[str] = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        return f"{{self.key}}={{self.value}}"


class Box{index}(Generic[T]):
    def __init__(self, item: T) -> None:
        self.item = item


# module-level subscriptions: typing memoises them, holding this version's classes
MaybeRecord = Optional[Record{index}]
RecordBox = Box{index}[Record{index}]
RecordList = typing.List[Record{index}]


@typing.overload
def pick(items: list[Record{index}]) -> Record{index}: ...
@typing.overload
def pick(items: None) -> None: ...
def pick(items):
    return items[0] if items else None


def work(count: int = 3) -> dict[str, int]:
    log.debug("work %d", count)
    records = [Record{index}(str(i), i) for i in range(count)]
    return {{"total": sum(r.value for r in records), "boxed": len(RecordBox.__args__)}}
'''


def make_plugin(root: Path, name: str, count: int) -> Path:
    """Write plugin ``name`` of ``count`` modules (``__init__`` plus count-1 submodules) under root."""
    plugin = root / name
    plugin.mkdir(parents=True, exist_ok=True)
    subs = [f"mod_{i:04d}" for i in range(max(count - 1, 1))]
    (plugin / "__init__.py").write_text(HOOKS.format(name=name, count=count,
                                                     imports=", ".join(subs), first=subs[0]))
    for index, sub in enumerate(subs):
        (plugin / f"{sub}.py").write_text(MODULE.format(index=index))
    return plugin


def build(plugin: Path, out: Path, stamp: str) -> Path:
    """Build ``plugin`` into ``out`` with ``CompileTimeString=stamp``; the artifact's path."""
    from hotswap_build.build import build as hotswap_build
    result = hotswap_build(plugin, out, stamps={"CompileTimeString": stamp})
    assert result.artifact is not None
    return result.artifact


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (nan for none)."""
    return statistics.median(values) if values else float("nan")


def rss_bytes() -> int:
    """This process's resident set size now (Linux ``/proc``; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every script shares: ``--quick``, ``--json``."""
    made = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    made.add_argument("--quick", action="store_true",
                      help="tiny sizes, for the smoke test (numbers mean nothing)")
    made.add_argument("--json", action="store_true",
                      help="print only a JSON object of flat key -> number on stdout")
    return made


def log(*args: object) -> None:
    """Progress for a human: stderr, so ``--json`` output stays clean."""
    print(*args, file=sys.stderr, flush=True)


def emit(results: Mapping[str, float], as_json: bool, table: str = "") -> None:
    """Print the figures: as one JSON line with ``--json``, else ``table`` (or key = value)."""
    clean = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in results.items()}
    if as_json:
        print(json.dumps(clean, sort_keys=True), flush=True)
        return
    if table:
        print(table)
    else:
        width = max(map(len, clean), default=0)
        for key, value in clean.items():
            print(f"{key:<{width}}  {value:g}")


# ------------------------------------------------------------------------- the web demo host

WEB_PLUGINS = ("greeter", "stats")


def build_web(out: Path, stamp: str, extra: Sequence[Path] = ()) -> list[Path]:
    """Build the web demo's plugins (plus ``extra`` plugin folders) into ``out``."""
    plugins = [REPO / "demo" / "web" / "plugin" / name for name in WEB_PLUGINS] + list(extra)
    return [build(plugin, out, stamp) for plugin in plugins]


def swap_in(artifacts: Sequence[Path], folder: Path) -> None:
    """Put copies of ``artifacts`` into ``folder`` atomically (temporary name, then rename)."""
    import shutil
    for artifact in artifacts:
        tmp = folder / f".{artifact.name}.swap"
        shutil.copyfile(artifact, tmp)
        os.replace(tmp, folder / artifact.name)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def host_command(plugin_dir: Path, port: int, free_delay: float = 1.0) -> list[str]:
    """The command line starting the web demo's host."""
    return [sys.executable, "-m", "demo.web.host", "--port", str(port), "--plugin-dir",
            str(plugin_dir), "--pid-file", str(plugin_dir / "host.pid"),
            "--free-delay", str(free_delay)]


def uvicorn_reload_command(port: int, watch: Path) -> list[str]:
    """The same app under ``uvicorn --reload`` (restarts its worker process on a change)."""
    return [sys.executable, "-m", "uvicorn", "--factory", "demo.web.app:create_app_from_env",
            "--host", "127.0.0.1", "--port", str(port), "--reload", "--reload-dir", str(watch),
            "--log-level", "warning"]


def wait_until_serving(url: str, proc: Any, timeout: float = 30.0) -> float:
    """Poll ``url`` until it answers 200; the time it took (s) from now. Raises if it never does."""
    import time

    import httpx
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while True:
            try:
                if client.get(url).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {proc.returncode} before "
                                   f"serving {url}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} was not served within {timeout} s")
            time.sleep(0.002)


def stop(proc: Any, timeout: float = 20.0) -> int:
    """SIGTERM ``proc`` (its whole process group when it leads one); kill it if it lingers."""
    import signal
    import subprocess
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError, AttributeError):
            proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError, AttributeError):
                proc.kill()
            proc.wait(timeout=timeout)
    return int(proc.returncode)
