"""End to end (README "Forked workers"): a swapper loaded before a fork keeps working in the
children: gunicorn ``--preload`` workers and ``os.fork()`` children each reload, the old
version's ``on_free`` runs in the child, and its modules really go.

Each scenario runs in a process of its own (the hosts fork; pytest's process never does, so no
fork-with-threads warning of Python 3.12+ is raised here). Nothing asserts a duration; every
wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SOURCE = '''\
import os
import hotswap_fork_events as _ev

STAMP = "none"

def on_load(data):
    if data == "block":
        _ev.loading.set()
        _ev.gate.wait(60)

def on_init(vault):
    pass

def on_free():
    _ev.freed.append([STAMP, os.getpid()])

def export():
    return None

def import_():
    return None

def reloadable():
    return True

def invoke_func(name, *params):
    return STAMP
'''

#: what every host script starts with: the events module the plugin reports to, and helpers
PRELUDE = '''\
import gc, json, os, shutil, sys, threading, time, types, weakref
from pathlib import Path

ev = types.ModuleType("hotswap_fork_events")
ev.freed, ev.loading, ev.gate = [], threading.Event(), threading.Event()
sys.modules["hotswap_fork_events"] = ev

from hotswap_runtime import PluginManagerSwapper

BUILT = Path(os.environ["FORK_BUILT"])


def install(folder, stamp):
    """Put ``stamp``'s artifact in ``folder`` atomically (a watcher never sees half of it)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    shutil.copy(BUILT / stamp / "a.hsp", Path(folder) / ".a.hsp.tmp")
    os.replace(Path(folder) / ".a.hsp.tmp", Path(folder) / "a.hsp")


def module_of(swapper):
    """A weak reference to the running version's root module."""
    plugin = swapper.current().find_plugin("a")
    return weakref.ref(sys.modules[plugin.lookup("invoke_func").__module__])


def freed_here():
    return [stamp for stamp, pid in ev.freed if pid == os.getpid()]


def wait(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def gone(ref):
    gc.collect()
    return ref() is None
'''


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``<stamp>/a.hsp`` for v1, v2, v3 (the real build)."""
    from hotswap_build.build import build

    root = tmp_path_factory.mktemp("fork")
    src = root / "src" / "a"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text(SOURCE)
    for stamp in ("v1", "v2", "v3"):
        build(src, root / "built" / stamp, stamps={"STAMP": stamp})
    return root / "built"


def run_host(script: str, built: Path, tmp_path: Path, *args: str,
             timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FORK_BUILT": str(built)}
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(script), *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


FORKED_CHILDREN = '''
swapper = PluginManagerSwapper("plugins", free_delay=3.0, runtime_dir="runtime")
install("plugins", "v1")
swapper.load_plugins()
v1 = module_of(swapper)
install("plugins", "v2")
swapper.reload()          # v1 is replaced: its free is due in 3 s, after the forks below
v2 = module_of(swapper)
children = {}
for n in range(2):
    pid = os.fork()
    if pid == 0:
        report = {"pid": os.getpid()}
        try:
            # what the parent replaced before the fork is freed here too
            report["v1 freed"] = wait(lambda: "v1" in freed_here()) and wait(lambda: gone(v1))
            # and a reload in the child frees the version it replaces, in the child
            install(f"child{n}", "v3")
            swapper.reset_plugin_dir(f"child{n}")
            swapper.reload()
            report["serves"] = swapper.current().find_plugin("a").invoke_func("x")
            report["v2 freed"] = wait(lambda: "v2" in freed_here()) and wait(lambda: gone(v2))
            report["freed here"] = freed_here()
            report["states"] = [s.state for s in swapper.stats(explain=True)]
            swapper.close()
            Path(f"child{n}.json").write_text(json.dumps(report))
        finally:
            os._exit(0)
    children[n] = pid
for n, pid in children.items():
    os.waitpid(pid, 0)
wait(lambda: "v1" in freed_here())
print(json.dumps({"parent freed": freed_here(), "parent serves": swapper.current().find_plugin("a").invoke_func("x")}))
swapper.close()
'''


def test_forked_children_free_what_the_parent_replaced_and_what_they_replace(built, tmp_path) -> None:
    """A host loads v1, reloads to v2 (v1 pending free), forks two children: in each child v1's
    on_free runs and its module is gone, then the child's own reload to v3 frees v2 there too;
    the parent frees v1 once and keeps serving v2."""
    done = run_host(FORKED_CHILDREN, built, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"parent freed": ["v1"], "parent serves": "v2"}
    for n in range(2):
        report = json.loads((tmp_path / f"child{n}.json").read_text())
        assert report["v1 freed"] is True, (report, done.stderr[-3000:])
        assert report["serves"] == "v3" and report["v2 freed"] is True, report
        assert report["freed here"] == ["v1", "v2"] and report["states"] == ["current"], report


RELOADING_AT_FORK = '''
import logging
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
swapper = PluginManagerSwapper("plugins", free_delay=0, runtime_dir="runtime")
install("plugins", "v1")
swapper.load_plugins()
install("plugins", "v2")
reloading = threading.Thread(target=swapper.reload, args=("block",))
reloading.start()
assert ev.loading.wait(30)           # another thread is in the middle of a reload: fork now
pid = os.fork()
if pid == 0:
    try:
        before = swapper.current().find_plugin("a").invoke_func("x")
        swapper.reload()                 # would wait for ever for the parent's reload
        after = swapper.current().find_plugin("a").invoke_func("x")
        Path("child.json").write_text(json.dumps([before, after]))
    finally:
        os._exit(0)
_, status = os.waitpid(pid, 0)
ev.gate.set()
reloading.join(30)
print(json.dumps(swapper.current().find_plugin("a").invoke_func("x")))
swapper.close()
'''


def test_a_child_forked_during_a_reload_in_another_thread_can_reload(built, tmp_path) -> None:
    """The reload running in another thread at the fork has no thread in the child: the child
    still serves what was current, its own reload goes through (no wait for ever), and a
    warning says what happened; the parent's reload completes as usual."""
    done = run_host(RELOADING_AT_FORK, built, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == "v2"
    assert json.loads((tmp_path / "child.json").read_text()) == ["v1", "v2"]
    assert "was forked while a reload ran in another thread" in done.stderr
    assert "reload again in this process" in done.stderr


APP = '''
import logging
logging.basicConfig(level=logging.INFO)
swapper = PluginManagerSwapper(os.environ["FORK_PLUGINS"], free_delay=3.0,
                               runtime_dir=os.environ["FORK_RUNTIME"])
install(os.environ["FORK_PLUGINS"], "v1")
swapper.load_plugins()
install(os.environ["FORK_PLUGINS"], "v2")
swapper.reload()  # the master's freer thread runs, v1's free is pending at the forks


def app(environ, start_response):
    body = json.dumps({"pid": os.getpid(), "serves": swapper.current().find_plugin("a").invoke_func("x")})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]
'''

CONFIG = '''
import json, os, sys
from pathlib import Path


def post_worker_init(worker):
    """Each worker reloads on its own (to a folder of its own) and reports what it freed."""
    app = sys.modules["fork_app"]
    folder = Path(os.environ["FORK_OUT"]) / f"plugins-{os.getpid()}"
    app.install(folder, "v3")
    old = app.module_of(app.swapper)
    app.swapper.reset_plugin_dir(folder)
    app.swapper.reload()
    freed = app.wait(lambda: sorted(app.freed_here()) == ["v1", "v2"]) and app.wait(lambda: app.gone(old))
    report = {"v2 freed": freed, "freed here": sorted(app.freed_here()),
              "freer": [t.name for t in __import__("threading").enumerate() if t.name == "hotswap-free"]}
    Path(os.environ["FORK_OUT"], f"{os.getpid()}.json").write_text(json.dumps(report))
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(120)
def test_gunicorn_preload_workers_each_reload_and_free_in_their_process(built, tmp_path) -> None:
    """gunicorn --preload: the master loads v1 and reloads to v2 (its freer thread runs, v1's
    free is pending), then forks two workers; each worker reloads to v3 in its own process, the
    on_free of v1 and v2 runs there and the replaced module is gone, and both serve v3 over
    HTTP."""
    pytest.importorskip("gunicorn")
    (tmp_path / "fork_app.py").write_text(PRELUDE + textwrap.dedent(APP))
    (tmp_path / "fork_conf.py").write_text(textwrap.dedent(CONFIG))
    out = tmp_path / "out"
    out.mkdir()
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
           "FORK_BUILT": str(built), "FORK_PLUGINS": str(tmp_path / "plugins"),
           "FORK_RUNTIME": str(tmp_path / "runtime"), "FORK_OUT": str(out)}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", "--workers", "2", "--config",
         str(tmp_path / "fork_conf.py"), "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5",
         "fork_app:app"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        deadline = time.monotonic() + 60
        while len(list(out.glob("*.json"))) < 2 and time.monotonic() < deadline:
            assert server.poll() is None, server.stdout.read()
            time.sleep(0.05)
        reports = {int(p.stem): json.loads(p.read_text()) for p in out.glob("*.json")}
        assert len(reports) == 2, "the workers did not report in 60 s"
        for pid, report in reports.items():
            assert report == {"v2 freed": True, "freed here": ["v1", "v2"], "freer": ["hotswap-free"]}, (
                pid, server.stdout.read() if server.poll() is not None else "")
        for _ in range(10):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
                answer = json.loads(response.read())
            assert answer["serves"] == "v3" and answer["pid"] in reports
    finally:
        server.terminate()
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate(timeout=30)
    shutil.rmtree(tmp_path / "runtime", ignore_errors=True)


SIGNAL_TRIGGER = '''
import signal
from hotswap_runtime.triggers import reload_on_signal

swapper = PluginManagerSwapper("plugins", free_delay=0, runtime_dir="runtime")
install("plugins", "v1")
swapper.load_plugins()
stop = reload_on_signal(swapper)
ready_r, ready_w = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        install("child", "v2")
        swapper.reset_plugin_dir("child")
        os.write(ready_w, b"!")
        reloaded = wait(lambda: swapper.current().find_plugin("a").invoke_func("x") == "v2")
        stop()   # the stop function the parent got stops the child's trigger
        wait(lambda: "v1" in freed_here())
        Path("child.json").write_text(json.dumps({"reloaded": reloaded, "freed": freed_here()}))
    finally:
        os._exit(0)
os.read(ready_r, 1)
os.kill(pid, signal.SIGUSR1)
os.waitpid(pid, 0)
print(json.dumps({"parent reloads": swapper.reload_counter}))
stop()
swapper.close()
'''


def test_reload_on_signal_in_a_forked_child_reloads_the_child_not_the_parent(built, tmp_path) -> None:
    """The trigger installed before the fork carries over: SIGUSR1 sent to the child reloads the
    child's swapper (it used to wake the parent's thread through the shared pipe, reloading the
    parent), and the parent does not reload."""
    done = run_host(SIGNAL_TRIGGER, built, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    child = json.loads((tmp_path / "child.json").read_text())
    assert child == {"reloaded": True, "freed": ["v1"]}, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"parent reloads": 0}


WATCH_TRIGGER = '''
import select
from hotswap_runtime.triggers import watch_plugin_dir

swapper = PluginManagerSwapper("plugins", free_delay=0, runtime_dir="runtime")
install("plugins", "v1")
swapper.load_plugins()
stop = watch_plugin_dir(swapper, debounce=0.05)
done_r, done_w = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        reloaded = wait(lambda: swapper.current().find_plugin("a").invoke_func("x") == "v2", 60)
        stop()
        wait(lambda: "v1" in freed_here())
        Path("child.json").write_text(json.dumps({"reloaded": reloaded, "freed": freed_here()}))
    finally:
        os.write(done_w, b"!")
        os._exit(0)
# the child's watch starts in the background and may miss what changes before it runs: write
# the artifact again each second until the child has reloaded
deadline = time.monotonic() + 60
while not select.select([done_r], [], [], 1.0)[0] and time.monotonic() < deadline:
    install("plugins", "v2")
os.waitpid(pid, 0)
wait(lambda: swapper.current().find_plugin("a").invoke_func("x") == "v2")
print(json.dumps({"parent serves": swapper.current().find_plugin("a").invoke_func("x")}))
stop()
swapper.close()
'''


def test_watch_plugin_dir_carries_over_into_a_forked_child(built, tmp_path) -> None:
    """A watch started before the fork watches in the child too: a rebuilt artifact reloads
    the child's swapper (and the parent's)."""
    pytest.importorskip("watchfiles")
    done = run_host(WATCH_TRIGGER, built, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    child = json.loads((tmp_path / "child.json").read_text())
    assert child == {"reloaded": True, "freed": ["v1"]}, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"parent serves": "v2"}


FOLLOWER = '''
import logging
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from hotswap_runtime import HotswapError
from hotswap_runtime.fleet import Follower, ops

ops.publish("channel", [BUILT / "v1" / "a.hsp"])
swapper = PluginManagerSwapper("plugins", free_delay=0, runtime_dir="runtime")
follower = Follower(swapper, "channel", cache_dir="cache", heartbeat=0.2)
assert follower.start(timeout=30)
unstarted = Follower(PluginManagerSwapper("plugins", runtime_dir="runtime"), "channel",
                     cache_dir="cache", heartbeat=0.2)
pid = os.fork()
if pid == 0:
    report = {}
    try:
        report["serves"] = swapper.current().find_plugin("a").invoke_func("x")
        try:
            follower.start(timeout=1)
        except HotswapError as exc:
            report["start"] = str(exc)
        began = time.monotonic()
        swapper.close()          # stops the follower: returns at once, nothing to wait for
        report["close quick"] = time.monotonic() - began < 5
        # made before the fork, started after it (in the worker): the worker's own instance
        report["unstarted follows"] = unstarted.start(timeout=30)
        report["its instance"] = unstarted.instance.rsplit(":", 1)[1] == str(os.getpid())
        unstarted.swapper.close()
    finally:
        Path("child.json").write_text(json.dumps(report))
        os._exit(0)
os.waitpid(pid, 0)
ops.publish("channel", [BUILT / "v2" / "a.hsp"])
wait(lambda: swapper.current().find_plugin("a").invoke_func("x") == "v2")
print(json.dumps(swapper.current().find_plugin("a").invoke_func("x")))
swapper.close()
'''


def test_a_follower_does_not_follow_in_a_forked_child_and_says_so(built, tmp_path) -> None:
    """A follower started before a fork is the parent's instance: in the child it does not
    follow, a warning and start() say to make one per worker after the fork, close() does not
    wait for it; the parent's follower goes on taking releases. One made before the fork and
    started in the child follows there, as the child's own instance (``host:<child pid>``)."""
    done = run_host(FOLLOWER, built, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "child.json").read_text())
    assert report["serves"] == "v1" and report["close quick"] is True, report
    assert report["unstarted follows"] is True and report["its instance"] is True, report
    assert "before this process" in report["start"] and "does not follow here" in report["start"]
    assert "make a new Follower in each worker after the fork" in report["start"]
    assert "does not follow here" in done.stderr  # the warning, at the fork
    assert json.loads(done.stdout.splitlines()[-1]) == "v2"
