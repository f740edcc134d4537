"""The demos, end to end, as a user runs them: run.sh, reload.sh, the heartbeat, SIGTERM.

Each test starts a demo's ``run.sh`` in its own session (built plugins and the pid file go to
``tmp_path`` through ``HOTSWAP_DEMO_BIN``), waits for the first heartbeat, runs ``reload.sh``
with a new stamp, waits for the new stamp in the heartbeat, stops the host with SIGTERM, and
checks it exited 0 and left no process behind. Every wait is bounded.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import this_python_env

ROOT = Path(__file__).resolve().parents[2]
#: seconds any single expected line may take to show up
WAIT = 30.0


class Host:
    """A demo host started by its run.sh, with its stdout and stderr merged and searchable."""

    def __init__(self, demo: str, env: dict[str, str], command: list[str] | None = None,
                 cwd: str | Path = "/", stdin: str | None = None) -> None:
        """Start ``run.sh`` (or ``command``, in ``cwd``), fed ``stdin`` when given."""
        self.demo = demo
        self.env = env
        self.proc = subprocess.Popen(
            command or ["bash", str(ROOT / "demo" / demo / "run.sh")], cwd=cwd, env=env,
            stdin=subprocess.PIPE if stdin is not None else None,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            start_new_session=True,
        )
        if stdin is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(stdin)
            self.proc.stdin.close()
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_for(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """Return the match of the first new output line matching ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                pytest.fail(f"{self.demo} host exited ({self.proc.wait()}) before printing "
                            f"{pattern!r}; output:\n" + "\n".join(self.output))
            self.output.append(line)
            if match := regex.search(line):
                return match
        pytest.fail(f"{self.demo} host printed no line matching {pattern!r} within {timeout} s; "
                    "output:\n" + "\n".join(self.output))

    def wait_for_all(self, *patterns: str, timeout: float = WAIT) -> None:
        """Consume output until every one of ``patterns`` has matched a line, in any order."""
        left = [re.compile(p) for p in patterns]
        deadline = time.monotonic() + timeout
        while left:
            remaining = max(deadline - time.monotonic(), 0.001)
            line = self.wait_for("|".join(f"(?:{r.pattern})" for r in left), remaining).string
            left = [r for r in left if not r.search(line)]

    def heartbeats(self, count: int, pattern: str = r"^heartbeat \d+: ") -> list[str]:
        """The next ``count`` heartbeat lines."""
        return [self.wait_for(pattern).string for _ in range(count)]

    def reload(self, stamp: str, *flags: str) -> None:
        """Run the demo's reload.sh with ``stamp``, as a user would from another terminal."""
        run_reload_sh(self.demo, self.env, *flags, stamp)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the host to stop; return its exit status once it and its session are gone."""
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=WAIT)
        while (line := self._lines.get(timeout=WAIT)) is not None:
            self.output.append(line)
        with pytest.raises(ProcessLookupError):
            os.killpg(self.proc.pid, 0)   # nothing of the demo's session is left
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def run_reload_sh(demo: str, env: dict[str, str], *args: str) -> None:
    """Run ``demo/<demo>/reload.sh args...`` and check it succeeded."""
    done = subprocess.run(["bash", str(ROOT / "demo" / demo / "reload.sh"), *args],
                          cwd="/", env=env, capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def demo_env(tmp_path: Path) -> dict[str, str]:
    env = this_python_env()
    env["HOTSWAP_DEMO_INTERVAL"] = "0.2"
    env["HOTSWAP_DEMO_BIN"] = str(tmp_path / "bin")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def start(demo_env: dict[str, str]) -> Iterator:
    started: list[Host] = []

    def start(demo: str) -> Host:
        host = Host(demo, demo_env)
        started.append(host)
        return host

    yield start
    for host in started:
        host.kill()


def test_hello_reloads_both_plugins_and_frees_the_old_versions(start, demo_env) -> None:
    """hello serves v1, serves v2 after reload.sh in the same process, frees v1, exits 0."""
    host = start("hello")
    host.wait_for(r"^heartbeat \d+: english v1: Hello, world!$")
    host.wait_for(r"^heartbeat \d+: french v1: Bonjour")
    pid = int((Path(demo_env["HOTSWAP_DEMO_BIN"]) / "host.pid").read_text())
    assert pid == host.proc.pid

    host.reload("v2")
    host.wait_for_all(r"^heartbeat \d+: english v2: Hello, world!$",
                      r"^heartbeat \d+: french v2: Bonjour",
                      r"^english v1: on_free", r"^french v1: on_free")

    assert host.stop() == 0
    assert not (Path(demo_env["HOTSWAP_DEMO_BIN"]) / "host.pid").exists()
    assert any("english v2: on_free" in line for line in host.output)


def test_hello_keeps_serving_when_a_reload_fails(start, demo_env) -> None:
    """A reload that fails (a corrupt artifact) is logged; v1 keeps serving; a later one works."""
    host = start("hello")
    host.wait_for(r"^heartbeat \d+: english v1:")
    bad = Path(demo_env["HOTSWAP_DEMO_BIN"]) / "broken.hsp"
    bad.write_bytes(b"this is not an artifact")
    os.kill(host.proc.pid, signal.SIGUSR1)
    host.wait_for(r"broken")
    assert all(" v1: " in line for line in host.heartbeats(4))
    assert host.proc.poll() is None

    bad.unlink()
    host.reload("v2")
    host.wait_for(r"^heartbeat \d+: english v2:")
    assert host.stop() == 0


def test_extension_serves_the_pages_of_the_new_version(start) -> None:
    """extension: after reload.sh the new manager's router serves v2's pages; Ctrl-C stops it."""
    host = start("extension")
    host.wait_for(r"^heartbeat \d+: GET /hello -> Hello from pages v1$")
    host.wait_for(r"^heartbeat \d+: GET /time -> .* served by pages v1$")
    host.reload("v2")
    host.wait_for(r"^heartbeat \d+: GET /hello -> Hello from pages v2$")
    host.wait_for(r"^heartbeat \d+: GET /time -> .* served by pages v2$")
    assert host.stop(signal.SIGINT) == 0     # Ctrl-C


REPORT = (r"scheduled (?P<scheduled>\d+), done (?P<done>\d+) \(by version: (?P<per>[^)]*)\), "
          r"handed over (?P<handed>\d+), pending (?P<pending>\d+), lost (?P<lost>\d+)")


def test_livex_hands_jobs_to_the_next_version_and_loses_none(start) -> None:
    """livex: orders taken by v1 are cooked by v2 after reload.sh; on exit every job is done."""
    host = start("livex")
    host.wait_for(r"^job \d+: order \d+: .*, taken by v1, cooked by v1$")
    host.reload("v2")
    host.wait_for(r"^heartbeat \d+: kitchen v2: ")
    # the two orders v1 took last are due after that heartbeat: one is a banquet (leased), which
    # v1 still cooks, the other is handed over to v2
    host.wait_for_all(r'^job \d+: order \d+: .*, taken by v1, cooked by v1 on its version '
                      r'\(lease "banquet \d+"\)$',
                      r"^job \d+: order \d+: .*, taken by v1, cooked by v2$",
                      r"^job \d+: order \d+: .*, taken by v2, cooked by v2.*$")
    host.wait_for(r"^kitchen v1: on_free$")  # once its last banquet is cooked
    beat = host.wait_for(r"^heartbeat \d+: kitchen v2: " + REPORT)
    assert int(beat["handed"]) >= 1
    assert "v1=" in beat["per"] and "v2=" in beat["per"]

    code = host.stop()
    summary = next(re.search(REPORT, line) for line in host.output if line.startswith("summary: "))
    assert code == 0
    assert summary["scheduled"] == summary["done"]
    assert (summary["pending"], summary["lost"]) == ("0", "0")
    done = [int(m[1]) for line in host.output if (m := re.match(r"^job \d+: order (\d+):", line))]
    assert sorted(done) == list(range(1, int(summary["scheduled"]) + 1))
    freed = host.output.index("kitchen v1: on_free")
    assert not [line for line in host.output[freed:] if "taken by v1, cooked by v1" in line]


def test_livex_queue_hands_every_pending_job_to_the_next_version(tmp_path, monkeypatch,
                                                                   capsys) -> None:
    """Jobs scheduled by kitchen v1 and due after a reload are all handled by v2's live code."""
    monkeypatch.syspath_prepend(str(ROOT))
    from demo.livex.host import Worker
    from demo.livex.shared import JobQueue
    from hotswap_build.build import build
    from hotswap_runtime import PluginManagerSwapper

    # v2 changes the live type: a new field with a default, which the live function shows
    v1_dir = ROOT / "demo/livex/plugin/kitchen"
    v2_dir = tmp_path / "v2" / "kitchen"
    shutil.copytree(v1_dir, v2_dir, ignore=shutil.ignore_patterns("__pycache__"))
    orders = v2_dir / "orders.py"
    source = orders.read_text()
    new_source = source.replace(
        "    notes: list[str] = field(default_factory=list)\n",
        "    notes: list[str] = field(default_factory=list)\n    spicy: bool = True\n",
    ).replace("x {order.dish}", "x {'spicy ' if order.spicy else ''}{order.dish}")
    assert new_source.count("spicy") == 3
    orders.write_text(new_source)

    bin_dir = tmp_path / "bin"
    build(v1_dir, bin_dir, stamps={"CompileTimeString": "v1"})
    swapper = PluginManagerSwapper(bin_dir, free_delay=0)
    queue = JobQueue(delay=0)
    try:
        swapper.load_plugins(None)
        worker = Worker(swapper, queue)
        kitchen = swapper.current().find_plugin("kitchen")
        for number in range(1, 21):
            kitchen.invoke_func("take_order", queue, number)
        for _ in range(5):
            assert worker.handle(queue.next_due(timeout=0))

        build(v2_dir, bin_dir, stamps={"CompileTimeString": "v2"})
        assert list(swapper.reload(None).values()) == ["ok"]
        while (job := queue.next_due(timeout=0)) is not None:
            assert worker.handle(job)
    finally:
        swapper.close()

    assert dict(queue.done_by) == {"v1": 5, "v2": 15}
    assert (queue.scheduled, queue.handed_over, queue.pending()) == (20, 15, 0)
    cooked = [line for line in capsys.readouterr().out.splitlines() if line.startswith("job ")]
    assert len(cooked) == 20
    assert all("spicy" not in line and line.endswith("taken by v1, cooked by v1")
               for line in cooked[:5])
    assert all(" x spicy " in line and line.endswith("taken by v1, cooked by v2")
               for line in cooked[5:])
    assert [int(re.match(r"job \d+: order (\d+):", line)[1]) for line in cooked] == \
        list(range(1, 21))


def test_livex_banquet_is_cooked_by_the_version_that_took_it(tmp_path, monkeypatch,
                                                             capsys) -> None:
    """A job carrying a lease is handled by the leased version after a reload; that version's
    on_free runs only once the job is done and the lease released."""
    monkeypatch.syspath_prepend(str(ROOT))
    from demo.livex.host import Worker
    from demo.livex.shared import JobQueue
    from hotswap_build.build import build
    from hotswap_runtime import PluginManagerSwapper

    source = ROOT / "demo/livex/plugin/kitchen"
    bin_dir = tmp_path / "bin"
    build(source, bin_dir, stamps={"CompileTimeString": "v1"})
    swapper = PluginManagerSwapper(bin_dir, free_delay=0)
    queue = JobQueue(delay=0)
    try:
        swapper.load_plugins(None)
        worker = Worker(swapper, queue)
        lease = swapper.lease("banquet 1")
        with queue.pinned_to(lease):
            lease.manager.find_plugin("kitchen").invoke_func("take_order", queue, 1)
        swapper.current().find_plugin("kitchen").invoke_func("take_order", queue, 2)
        build(source, bin_dir, stamps={"CompileTimeString": "v2"})
        swapper.reload(None)
        time.sleep(0.3)  # free_delay=0: only the lease keeps v1
        assert "kitchen v1: on_free" not in capsys.readouterr().out
        assert [s.leases for s in swapper.stats()] == [("banquet 1",), ()]
        while (job := queue.next_due(timeout=0)) is not None:
            assert worker.handle(job)
        deadline = time.monotonic() + 10
        while "kitchen v1: on_free" not in capsys.readouterr().out:
            assert time.monotonic() < deadline, "v1 was not freed after its lease went"
            time.sleep(0.02)
    finally:
        swapper.close()
    assert dict(queue.done_by) == {"v1": 1, "v2": 1}
    assert not lease.held and swapper.leases() == []


def test_slink_refuses_the_reload_and_keeps_serving(start) -> None:
    """slink runs from source; reload.sh's request is refused, logged, and v1 keeps serving."""
    host = start("slink")
    first = host.wait_for(r"^heartbeat \d+: fib (\S+): fib\(\d+\) = \d+$")
    served = first[1]
    host.reload("v2")
    host.wait_for(r"reload refused: running under static linking mode")
    later = host.heartbeats(3)
    assert all(f": fib {served}: " in line for line in later), later
    assert host.proc.poll() is None
    assert host.stop() == 0


def test_slink_map_sources_hot_swaps_and_pdb_stops_in_each_version(demo_env) -> None:
    """slink's README, "Or debug hot-loaded versions": the artifacts built (reload.sh
    --map-sources), ``SLINK_MAP_SOURCES=1 python -m pdb -m demo.slink.host`` from the repository root
    with a breakpoint on the loop of demo/slink/plugin/fib/__init__.py stops there in version
    v1, and after reload.sh --map-sources v2 in the new version too; the host serves v2."""
    fib = "demo/slink/plugin/fib/__init__.py"
    loop = next(n for n, line in enumerate((ROOT / fib).read_text().splitlines(), 1)
                if line.strip() == "a, b = b, a + b")
    at = "p ('stop', __name__, CompileTimeString, '#' in __file__)"
    commands = [f'b {fib}:{loop}, CompileTimeString == "v1"',
                f'b {fib}:{loop}, CompileTimeString == "v2"',
                "c", at, "disable 1", "c", at, "disable 2", "c", "q"]
    run_reload_sh("slink", demo_env, "--map-sources", "v1")  # builds the artifacts
    host = Host("slink", {**demo_env, "SLINK_MAP_SOURCES": "1"},
                [sys.executable, "-m", "pdb", "-m", "demo.slink.host"], cwd=ROOT,
                stdin="\n".join(commands) + "\n")
    try:
        host.wait_for(rf"^> {ROOT / fib}\({loop}\)fib\(\)$")
        host.wait_for(r"\('stop', '_hotswap_fib_\d+', 'v1', True\)$")
        host.wait_for(r"^heartbeat \d+: fib v1: ")
        host.reload("v2", "--map-sources")
        # v2's first call (and so the stop) may come before or after the host logs the reload
        host.wait_for_all(r"demo.slink: reloaded: fib: ok$",
                          rf"^> {ROOT / fib}\({loop}\)fib\(\)$",
                          r"\('stop', '_hotswap_fib_\d+', 'v2', True\)$")
        host.heartbeats(2, r"^heartbeat \d+: fib v2: fib\(\d+\) = \d+$")
        assert host.stop() == 0
        stops = [line for line in host.output if "('stop', " in line]
        assert len(stops) == 2 and stops[0].split("'")[3] != stops[1].split("'")[3], stops
    finally:
        host.kill()


def test_trine_rebuilds_alpha_alone_and_rewires_beta_and_gamma(start, demo_env) -> None:
    """trine's reload.sh rebuilds only alpha; beta and gamma get fresh versions wired to it."""
    host = start("trine")
    host.wait_for(r"^heartbeat \d+: gamma v1 -> beta v1 -> alpha v1 \[reload 0: ")
    bin_dir = Path(demo_env["HOTSWAP_DEMO_BIN"])

    def digests() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in bin_dir.glob("*.hsp")}

    before = digests()
    host.reload("v2")
    after = digests()
    assert sorted(before) == ["alpha.hsp", "beta.hsp", "gamma.hsp"]
    assert [name for name in before if before[name] != after[name]] == ["alpha.hsp"]
    host.wait_for(r"^heartbeat \d+: gamma v1 -> beta v1 -> alpha v2 "
                  r"\[reload 1: alpha ok, beta ok, gamma ok\]$")
    assert host.stop() == 0


def run_walkthrough(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "demo.hello.walkthrough"], cwd=ROOT,
                          env={**env, "PYTHONPATH": pythonpath}, capture_output=True, text=True,
                          timeout=120)


def test_make_demo_walkthrough_shows_a_hot_swap_and_exits_0(demo_env) -> None:
    """``make demo``'s walkthrough runs every step, sees v2 served, and exits 0."""
    done = run_walkthrough(demo_env)
    assert done.returncode == 0, done.stdout + done.stderr
    for expected in ("=== Step 1: build the plugins", "$ kill -USR1 ",
                     "host | heartbeat", "english v2: Hello, world!",
                     "-> the host exited with status 0.", "Done: "):
        assert expected in done.stdout, done.stdout


def test_make_demo_walkthrough_fails_clearly_when_the_host_cannot_start(demo_env) -> None:
    """A host that dies at start-up makes the walkthrough exit 1 saying what went wrong."""
    done = run_walkthrough({**demo_env, "HOTSWAP_DEMO_INTERVAL": "soon"})
    assert done.returncode == 1
    assert "HOTSWAP_DEMO_INTERVAL='soon' is not a positive number" in done.stdout
    assert ("make demo FAILED: the host exited (status 1) while waiting for the first heartbeat "
            "of english v1") in done.stderr
