"""``map_sources=True`` (README "Static linking and debugging"): breakpoints set on the
plugin's own source file hit in hot-loaded versions, with pdb's machinery and a real debugpy."""

from __future__ import annotations

import bdb
import json
import linecache
import os
import socket
import subprocess
import sys
import textwrap
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hotswap_build.build import build
from hotswap_runtime import PluginManagerSwapper

ROOT = """\
CompileTimeString = "one"

from mapped.jobs import work


def on_load(data): pass
def on_init(vault): pass
def on_free(): pass
def export(): return None
def import_(): return None
def reloadable(): return True
def invoke_func(name, *params):
    return work(*params)
"""

# BREAK_LINE is the line of "total += step" below
JOBS = """\
import mapped


def live_work(n):
    return work(n)


def work(n):
    total = 0
    for step in range(n):
        total += step
    return f"{mapped.CompileTimeString}:{total}"
"""
BREAK_LINE = 11


def write_plugin(src: Path) -> Path:
    folder = src / "mapped"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text(ROOT)
    (folder / "jobs.py").write_text(JOBS)
    return folder


def build_two(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(plugin folder, artifacts of version one, of version two): one source, two stamps."""
    folder = write_plugin(tmp_path / "src")
    one, two = tmp_path / "one", tmp_path / "two"
    build(folder, one)
    build(folder, two, stamps={"CompileTimeString": "two"})
    return folder, one, two


class Recorder(bdb.Bdb):
    """pdb's engine (bdb), driven in-process: a breakpoint by file and line, as pdb's ``b``."""

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[tuple[str, int, str]] = []

    def user_line(self, frame: Any) -> None:
        if self.break_here(frame):
            self.hits.append((frame.f_code.co_filename, frame.f_lineno,
                              frame.f_globals["__name__"]))
        self.set_continue()


def stop_in(source: Path, call: Callable[[], Any]) -> tuple[Any, list[tuple[str, int, str]]]:
    debugger = Recorder()
    assert debugger.set_break(str(source), BREAK_LINE) is None  # None: the line exists
    try:
        result = debugger.runcall(call)
    finally:
        debugger.clear_all_breaks()
        sys.settrace(None)
    return result, debugger.hits


def test_pdb_breakpoint_on_the_source_hits_in_every_version(tmp_path: Path) -> None:
    """A bdb breakpoint on mapped/jobs.py stops in version one and in version two, both alive;
    each frame names the original file and runs in its own version's module."""
    folder, one, two = build_two(tmp_path)
    swapper = PluginManagerSwapper(one, free_delay=60, map_sources=True,
                                   runtime_dir=tmp_path / "runtime")
    try:
        swapper.load_plugins()
        first = swapper.current().vault.live_funcs["live_work"]
        swapper.reset_plugin_dir(two)
        swapper.reload()
        second = swapper.current().vault.live_funcs["live_work"]
        loads = [s.load for s in swapper.stats()]
        source = folder / "jobs.py"
        for call, load, stamp in ((first, loads[0], "one"), (second, loads[1], "two")):
            result, hits = stop_in(source, lambda c=call: c(3))
            assert result == f"{stamp}:3"
            assert hits and {hit[:2] for hit in hits} == {(str(source), BREAK_LINE)}
            assert {hit[2] for hit in hits} == {f"_hotswap_mapped_{load}.jobs"}
        # the root package was rewritten by the build (stamp, own import made relative), and
        # still maps: what is compared is the file the build read
        assert first.__globals__["mapped"].on_load.__code__.co_filename == str(folder / "__init__.py")
        # __file__ stays the version's own file
        assert first.__globals__["__file__"].endswith("/mapped/jobs.py")
        assert "#" in first.__globals__["__file__"]
    finally:
        swapper.close()


PDB_HOST = textwrap.dedent("""\
    import sys
    from hotswap_runtime import PluginManagerSwapper

    one, two, runtime = sys.argv[1:4]
    swapper = PluginManagerSwapper(one, free_delay=60, map_sources=True, runtime_dir=runtime)
    swapper.load_plugins()
    first = swapper.current().vault.live_funcs["live_work"]
    swapper.reset_plugin_dir(two)
    swapper.reload()
    second = swapper.current().vault.live_funcs["live_work"]
    print("results", first(1), second(1))
    swapper.close()
    """)


def test_a_real_pdb_session_stops_on_the_source_in_every_version(tmp_path: Path) -> None:
    """``python -m pdb host.py``, then ``b <plugin>/jobs.py:11`` and ``c``, as a developer
    types them: the debugger stops on that line of the original file in version one, then in
    version two (both alive), each running its own module."""
    folder, one, two = build_two(tmp_path)
    host = tmp_path / "host.py"
    host.write_text(PDB_HOST)
    source = folder / "jobs.py"
    commands = [f"b {source}:{BREAK_LINE}", "c",
                "p ('at', __name__, mapped.CompileTimeString)", "c",
                "p ('at', __name__, mapped.CompileTimeString)", "c", "q"]
    done = subprocess.run([sys.executable, "-m", "pdb", str(host), str(one), str(two),
                           str(tmp_path / "runtime")],
                          input="\n".join(commands) + "\n", capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    out = done.stdout
    assert done.returncode == 0, done.stderr + out
    assert out.count(f"> {source}({BREAK_LINE})work()") == 2, out
    stops = [line.split("'at', ", 1)[1] for line in out.splitlines() if "('at', " in line]
    assert len(stops) == 2 and stops[0] != stops[1], out
    for stop, stamp in zip(stops, ("one", "two"), strict=True):
        assert stop.startswith("'_hotswap_mapped_") and stop.endswith(f".jobs', '{stamp}')"), out
    assert "results one:0 two:0" in out


def test_a_changed_or_missing_source_falls_back_to_the_versions_own_path(tmp_path: Path) -> None:
    """Edited since the build: the version's own path (the breakpoint would sit on other code);
    removed: likewise; without map_sources: always the version's own path."""
    folder, one, _ = build_two(tmp_path)
    (folder / "jobs.py").write_text(JOBS + "\n# edited after the build\n")
    (folder / "__init__.py").unlink()
    swapper = PluginManagerSwapper(one, map_sources=True, runtime_dir=tmp_path / "runtime")
    plain = PluginManagerSwapper(one, runtime_dir=tmp_path / "runtime")
    try:
        for s in (swapper, plain):
            s.load_plugins()
            fn = s.current().vault.live_funcs["live_work"]
            assert fn.__code__.co_filename == fn.__globals__["__file__"]
            assert fn.__code__.co_filename.startswith(str(tmp_path / "runtime"))
            root = fn.__globals__["mapped"]
            assert root.on_load.__code__.co_filename == root.__file__
        result, hits = stop_in(folder / "jobs.py", lambda: fn(2))
        assert result == "one:1" and hits == []
    finally:
        swapper.close()
        plain.close()


def test_a_traceback_shows_the_lines_that_ran_after_the_source_is_edited(tmp_path: Path) -> None:
    """The developer edits the mapped file while its version runs: the version's tracebacks
    (and linecache, which pdb lists from) still show the lines it runs, not the edited file's;
    the version built from the edit shows its own; once freed, nothing is left pinned."""
    folder = write_plugin(tmp_path / "src")
    failing = JOBS.replace("    return f\"{mapped", "    raise ValueError(total)\n    return f\"{mapped")
    (folder / "jobs.py").write_text(failing)
    build(folder, tmp_path / "bin")
    source = str(folder / "jobs.py")
    swapper = PluginManagerSwapper(tmp_path / "bin", free_delay=0, map_sources=True,
                                   runtime_dir=tmp_path / "runtime")

    def failure_lines() -> list[str]:
        try:
            swapper.current().vault.live_funcs["live_work"](3)
        except ValueError as exc:
            frames = traceback.extract_tb(exc.__traceback__)
            return [f"{f.filename}:{f.lineno}: {f.line}" for f in frames if f.filename == source]
        raise AssertionError("live_work did not fail")

    try:
        swapper.load_plugins()
        ran = [f"{source}:5: return work(n)", f"{source}:12: raise ValueError(total)"]
        assert failure_lines() == ran
        # edited, not rebuilt: two lines on top, the raise gone
        (folder / "jobs.py").write_text("# one\n# two\n" + JOBS)
        linecache.checkcache()
        assert failure_lines() == ran
        assert linecache.getline(source, 12).strip() == "raise ValueError(total)"
        # rebuilt and reloaded: the new version maps the edited file and shows its lines
        build(folder, tmp_path / "bin")
        swapper.reload()
        assert swapper.current().vault.live_funcs["live_work"](3) == "one:3"
        assert linecache.getline(source, 13).strip() == "total += step"
    finally:
        swapper.close()
    assert source not in linecache.cache


# -- a real debugpy, driven over the Debug Adapter Protocol ---------------------------------------

HOST = textwrap.dedent("""
    import sys
    import debugpy
    from hotswap_runtime import PluginManagerSwapper

    one, two, runtime = sys.argv[1:4]
    host, port = debugpy.listen(("127.0.0.1", 0))
    print(port, flush=True)
    debugpy.wait_for_client()  # returns once the client sent configurationDone
    swapper = PluginManagerSwapper(one, free_delay=60, map_sources=True, runtime_dir=runtime)
    swapper.load_plugins()
    first = swapper.current().vault.live_funcs["live_work"]
    swapper.reset_plugin_dir(two)
    swapper.reload()
    second = swapper.current().vault.live_funcs["live_work"]
    print(first(3), second(4), flush=True)
    swapper.close()
""")


class Dap:
    """A small Debug Adapter Protocol client: requests, responses and events over a socket."""

    def __init__(self, port: int, deadline: float) -> None:
        self.deadline = deadline
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.seq = 0
        self.events: list[dict[str, Any]] = []

    def request(self, command: str, **arguments: Any) -> int:
        self.seq += 1
        body = json.dumps({"seq": self.seq, "type": "request", "command": command,
                           "arguments": arguments}).encode()
        self.sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return self.seq

    def _read(self) -> dict[str, Any]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        header, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        length = int(next(line.split(b":")[1] for line in header.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return json.loads(body)

    def _fill(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the debug adapter did not answer in time")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the debug adapter closed the connection")
        self.buffer += chunk

    def response(self, seq: int) -> dict[str, Any]:
        while True:
            message = self._read()
            if message["type"] == "event":
                self.events.append(message)
            elif message["type"] == "response" and message["request_seq"] == seq:
                assert message["success"], message
                return message

    def event(self, name: str) -> dict[str, Any]:
        for index, message in enumerate(self.events):
            if message["event"] == name:
                return self.events.pop(index)
        while True:
            message = self._read()
            if message["type"] == "event" and message["event"] == name:
                return message
            if message["type"] == "event":
                self.events.append(message)
            elif not message.get("success", True):  # a refused request: say why, not time out
                raise AssertionError(f"the debug adapter refused a request: {message}")

    def call(self, command: str, **arguments: Any) -> dict[str, Any]:
        return self.response(self.request(command, **arguments))

    def close(self) -> None:
        self.sock.close()


def test_debugpy_breakpoint_on_the_source_hits_in_hot_loaded_versions(tmp_path: Path) -> None:
    """An IDE's way: attach to debugpy.listen in a host, setBreakpoints on mapped/jobs.py; the
    host loads version one and two of the plugin and calls each: both stop on that line."""
    folder, one, two = build_two(tmp_path)
    source = str(folder / "jobs.py")
    repo = Path(__file__).resolve().parents[2]
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, str(one), str(two), str(tmp_path / "runtime")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(repo)})
    dap = None
    try:
        assert host.stdout is not None
        port = int(host.stdout.readline())
        dap = Dap(port, time.monotonic() + 90)
        dap.call("initialize", clientID="hotswap-test", adapterID="debugpy", pathFormat="path",
                 linesStartAt1=True, columnsStartAt1=True)
        attach = dap.request("attach", justMyCode=True)  # as IDEs send it by default
        dap.event("initialized")
        placed = dap.call("setBreakpoints", source={"path": source},
                          breakpoints=[{"line": BREAK_LINE}])
        assert placed["body"]["breakpoints"][0]["verified"], placed
        dap.call("configurationDone")
        dap.response(attach)
        # first(3) passes the line 3 times in version one, then second(4) 4 times in version two
        seen = []
        while len(seen) < 7:
            stopped = dap.event("stopped")
            assert stopped["body"]["reason"] == "breakpoint", stopped
            thread = stopped["body"]["threadId"]
            frame = dap.call("stackTrace", threadId=thread, levels=1)["body"]["stackFrames"][0]
            module = dap.call("evaluate", expression="__name__", frameId=frame["id"],
                              context="watch")["body"]["result"]
            seen.append((frame["source"]["path"], frame["line"], module.strip("'")))
            dap.call("continue", threadId=thread)
        assert {(path, line) for path, line, _ in seen} == {(source, BREAK_LINE)}
        modules = [module for _, _, module in seen]
        assert len(set(modules[:3])) == 1 and len(set(modules[3:])) == 1, modules
        assert modules[0] != modules[3]
        assert all(m.startswith("_hotswap_mapped_") and m.endswith(".jobs") for m in modules)
        dap.call("disconnect", terminateDebuggee=False)
        out, err = host.communicate(timeout=60)
        assert host.returncode == 0, err
        assert out.split() == ["one:3", "two:6"]
    finally:
        if dap is not None:
            dap.close()
        if host.poll() is None:
            host.kill()
            host.communicate(timeout=30)
