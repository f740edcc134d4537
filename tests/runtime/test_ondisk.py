"""Each version's files on disk (README "Under the hood", files on disk): real, read-only, its own, swept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hotswap_build.build import build
from hotswap_runtime import HotswapError, PluginManagerSwapper
from hotswap_runtime.ondisk import guard_active

HOOKS = """\
CompileTimeString = "one"

def on_load(data):
    if data == "fail":
        raise RuntimeError("refused on purpose")
def on_init(vault): pass
def on_free(): pass
def export(): return None
def import_(): return None
def reloadable(): return True
def invoke_func(name, *params): return None
"""

READER = HOOKS + '''
import glob
import importlib.resources
import inspect
import json
import os
import pkgutil
from pathlib import Path

import jinja2

HERE = Path(__file__).parent


def live_items():
    with open(HERE / "items.json") as handle:
        return json.load(handle)


def live_listing():
    return sorted(os.listdir(HERE))


def live_glob():
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(HERE, "templates", "*.txt")))


def live_modules():
    return sorted(module.name for module in pkgutil.iter_modules(__path__))


def live_sourcefile():
    return inspect.getsourcefile(live_items)


def live_render(name):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"))
    return env.get_template(name).render(stamp=CompileTimeString)


def live_resource():
    return importlib.resources.files(__package__).joinpath("items.json").read_text()


def live_where():
    return __file__, __spec__.origin, list(__path__)


def live_write(how):
    target = HERE / "items.json"
    if how == "open":
        with open(target, "w") as handle:
            handle.write("corrupted")
    elif how == "append":
        with open(target, "a") as handle:
            handle.write("corrupted")
    elif how == "write_text":
        target.write_text("corrupted")
    elif how == "new_file":
        (HERE / "new.txt").write_text("x")
    elif how == "remove":
        os.remove(target)
    elif how == "chmod":
        os.chmod(target, 0o666)
    elif how == "rename":
        os.rename(target, HERE / "moved.json")
    elif how == "replace_folder":
        os.rename(HERE / "templates", HERE / "gone")
    elif how == "os_open":
        os.close(os.open(target, os.O_WRONLY | os.O_TRUNC))
    return "written"
'''


def write_plugin(root: Path, stamp: str, items: object, extra: dict[str, str] | None = None
                 ) -> Path:
    folder = root / "files"
    (folder / "templates").mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text(READER.replace('"one"', repr(stamp)))
    (folder / "jobs.py").write_text("def work():\n    return 'jobs'\n")
    (folder / "items.json").write_text(json.dumps(items))
    (folder / "templates" / "hello.txt").write_text("hello {{ stamp }}\n")
    for rel, text in (extra or {}).items():
        (folder / rel).write_text(text)
    return folder


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Callable[..., None], Path, Path]]:
    """``(rebuild(stamp, items, extra=None), plugins folder, runtime folder)`` for plugin
    ``files`` (``extra``: more files, relative path -> text)."""
    src, out, runtime = tmp_path / "src", tmp_path / "plugins", tmp_path / "runtime"

    def rebuild(stamp: str, items: object, extra: dict[str, str] | None = None) -> None:
        build(write_plugin(src, stamp, items, extra), out, include=r"\.(json|txt)$")

    rebuild("one", [1])
    yield rebuild, out, runtime


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def live(swapper: PluginManagerSwapper, name: str) -> Callable[..., object]:
    manager = swapper.current()
    assert manager is not None
    return manager.vault.live_funcs[name]


def test_modules_have_real_files_that_everything_reads(env) -> None:
    """__file__, __spec__.origin and __path__ are in the version's folder, which shows plugin and
    load; open, listdir, glob, pkgutil, inspect, jinja2 and importlib.resources all work."""
    rebuild, out, runtime = env
    swapper = PluginManagerSwapper(out, free_delay=0, runtime_dir=runtime)
    try:
        swapper.load_plugins()
        load = swapper.stats()[0].load
        file, origin, path = live(swapper, "live_where")()
        assert file == origin and file.endswith(f"/files#{load}/files/__init__.py")
        assert file.startswith(str(runtime) + os.sep)
        assert path == [os.path.dirname(file)]
        assert Path(file).read_text().startswith("CompileTimeString = 'one'")
        assert live(swapper, "live_items")() == [1]
        assert {"__init__.py", "jobs.py", "items.json", "templates"} <= set(live(swapper, "live_listing")())
        assert live(swapper, "live_glob")() == ["hello.txt"]
        assert live(swapper, "live_modules")() == ["_hotswap_registration", "jobs"]
        assert live(swapper, "live_sourcefile")() == file
        assert live(swapper, "live_render")("hello.txt") == "hello one"
        assert json.loads(live(swapper, "live_resource")()) == [1]
    finally:
        swapper.close()


READERS = ("live_items", "live_listing", "live_glob", "live_modules", "live_sourcefile",
           "live_render", "live_resource", "live_where")


def read_all(funcs: dict[str, Callable[..., object]]) -> dict[str, object]:
    """What every way of reading the version's files returns."""
    return {name: funcs[name]("hello.txt") if name == "live_render" else funcs[name]()
            for name in READERS}


def test_two_versions_alive_each_see_their_own_files(env) -> None:
    """While versions 1 and 2 are still alive, version 3 reads its own files and each older one
    still reads its own, by every way of reading them: open, listdir, glob, pkgutil, inspect,
    jinja2, importlib.resources."""
    rebuild, out, runtime = env
    swapper = PluginManagerSwapper(out, free_delay=60, runtime_dir=runtime)
    try:
        swapper.load_plugins()
        versions = [dict(swapper.current().vault.live_funcs)]
        seen = [read_all(versions[0])]
        rebuild("two", [2, 2], {"templates/more.txt": "more", "reports.py": "X = 2\n"})
        swapper.reload()
        versions.append(dict(swapper.current().vault.live_funcs))
        seen.append(read_all(versions[1]))
        rebuild("three", [3], {"templates/last.txt": "last", "audit.py": "X = 3\n"})
        swapper.reload()
        versions.append(dict(swapper.current().vault.live_funcs))
        seen.append(read_all(versions[2]))
        assert [s["live_items"] for s in seen] == [[1], [2, 2], [3]]
        assert [s["live_render"] for s in seen] == ["hello one", "hello two", "hello three"]
        assert [s["live_glob"] for s in seen] == [
            ["hello.txt"], ["hello.txt", "more.txt"], ["hello.txt", "last.txt", "more.txt"]]
        assert [s["live_modules"] for s in seen] == [
            ["_hotswap_registration", "jobs"], ["_hotswap_registration", "jobs", "reports"],
            ["_hotswap_registration", "audit", "jobs", "reports"]]
        assert "reports.py" not in seen[0]["live_listing"]
        assert "audit.py" in seen[2]["live_listing"]
        folders = [Path(s["live_where"][0]).parent for s in seen]
        assert len(set(folders)) == 3
        for folder, s in zip(folders, seen, strict=True):
            assert s["live_sourcefile"] == str(folder / "__init__.py")
            assert json.loads(s["live_resource"]) == s["live_items"]
        # every version, read again now that three are alive, still sees its own files
        assert [read_all(funcs) for funcs in versions] == seen
        assert [s.state for s in swapper.stats()] == ["pending free", "pending free", "current"]
    finally:
        swapper.close()


def test_a_rebuild_links_the_files_that_did_not_change(env) -> None:
    """The next version's copy hard-links each file equal to the running version's and writes
    the others: a one-file change writes one file (the root package holds the stamp, so two)."""
    rebuild, out, runtime = env
    swapper = PluginManagerSwapper(out, free_delay=60, runtime_dir=runtime)
    try:
        swapper.load_plugins()
        old = Path(live(swapper, "live_where")()[0]).parent
        rebuild("one", [2])  # only items.json changes
        swapper.reload()
        new = Path(live(swapper, "live_where")()[0]).parent
        assert old != new
        same = os.path.samestat
        assert same(os.stat(old / "jobs.py"), os.stat(new / "jobs.py"))
        assert same(os.stat(old / "templates" / "hello.txt"), os.stat(new / "templates" / "hello.txt"))
        assert not same(os.stat(old / "items.json"), os.stat(new / "items.json"))
        assert json.loads((old / "items.json").read_text()) == [1]
        assert live(swapper, "live_items")() == [2]
    finally:
        swapper.close()


def test_folder_goes_with_its_version_and_close_leaves_nothing(env) -> None:
    """A freed version's folder is removed; after close() the runtime folder is gone."""
    rebuild, out, runtime = env
    swapper = PluginManagerSwapper(out, free_delay=0, runtime_dir=runtime)
    swapper.load_plugins()
    first = Path(live(swapper, "live_where")()[0]).parent.parent
    assert first.is_dir()
    rebuild("two", [2])
    swapper.reload()
    assert [s.state for s in swapper.stats() if s.state != "freed"] == ["current"]
    assert not os.path.lexists(first)
    second = Path(live(swapper, "live_where")()[0]).parent.parent
    assert second.is_dir()
    swapper.close()
    assert files_under(runtime) == []
    assert not runtime.exists()


def test_failed_load_removes_its_folder(env) -> None:
    """A load whose on_load raises leaves no folder behind, and the old version keeps its files."""
    rebuild, out, runtime = env
    swapper = PluginManagerSwapper(out, free_delay=0, runtime_dir=runtime)
    try:
        swapper.load_plugins()
        before = files_under(runtime)
        rebuild("two", [2])
        with pytest.raises(HotswapError, match="refused on purpose"):
            swapper.reload("fail")
        assert live(swapper, "live_items")() == [1]
        links = [name for name in files_under(runtime / "procs") if "#" in name]
        assert len(links) == 1, links  # the failed version's folder went
        assert [p for p in files_under(runtime) if "files#" in p] == [p for p in before if "files#" in p]
    finally:
        swapper.close()


@pytest.mark.parametrize("how", ["open", "append", "write_text", "new_file", "remove", "chmod",
                                 "rename", "replace_folder", "os_open"])
def test_a_plugin_cannot_write_its_own_files(env, how: str) -> None:
    """Writing, creating, removing, renaming or chmod-ing in its own folder is a PermissionError,
    for whoever runs the tests (root included: file modes do not stop root, the guard does), and
    the next load of the same artifact reads intact files."""
    rebuild, out, runtime = env
    swapper = PluginManagerSwapper(out, free_delay=0, runtime_dir=runtime)
    try:
        swapper.load_plugins()
        if os.geteuid() == 0:
            assert guard_active()
        with pytest.raises(PermissionError):
            live(swapper, "live_write")(how)
        assert live(swapper, "live_items")() == [1]
        assert live(swapper, "live_glob")() == ["hello.txt"]
        rebuild("two", [1])  # another build: a fresh version of the same items
        swapper.reload()
        assert live(swapper, "live_items")() == [1]
        assert "new.txt" not in live(swapper, "live_listing")()
    finally:
        swapper.close()


def test_a_changed_shared_copy_is_never_reused(env, caplog) -> None:
    """Files changed behind the runtime's back (another process, C code) are caught at the next
    load of that artifact: it gets a fresh copy, with a warning."""
    rebuild, out, runtime = env
    swapper = PluginManagerSwapper(out, free_delay=0, runtime_dir=runtime)
    try:
        swapper.load_plugins()
        items = Path(live(swapper, "live_where")()[0]).parent / "items.json"
        # a child process: no guard there; as root the modes do not stop it, so open them first
        script = ("import os, sys; p = sys.argv[1]; os.chmod(os.path.dirname(p), 0o755); "
                  "os.chmod(p, 0o644); open(p, 'w').write('[666]')")
        subprocess.run([sys.executable, "-c", script, str(items)], check=True, timeout=60)
        assert live(swapper, "live_items")() == [666]  # what is on disk now
        rebuild("two", [2])
        swapper.reload()
        rebuild("one", [1])  # the first artifact again, byte for byte
        swapper.reload()
        assert live(swapper, "live_items")() == [1]
        assert "were changed after they were written" in caplog.text
    finally:
        swapper.close()


def test_code_runs_from_the_snapshot_never_from_the_files(env) -> None:
    """A module imported after its file on disk was changed (by another process) still runs the
    verified snapshot's code."""
    rebuild, out, runtime = env
    swapper = PluginManagerSwapper(out, free_delay=0, runtime_dir=runtime)
    try:
        swapper.load_plugins()
        jobs = Path(live(swapper, "live_where")()[0]).parent / "jobs.py"
        script = ("import os, sys; p = sys.argv[1]; os.chmod(os.path.dirname(p), 0o755); "
                  "os.chmod(p, 0o644); open(p, 'w').write('def work():\\n    return \\'disk\\'\\n')")
        subprocess.run([sys.executable, "-c", script, str(jobs)], check=True, timeout=60)
        assert "disk" in jobs.read_text()
        root = swapper.current().find_plugin("files").lookup("__name__")
        module = __import__(f"{root}.jobs", fromlist=["work"])
        assert module.work() == "jobs"
    finally:
        swapper.close()


def test_runtime_dir_that_cannot_be_created_is_an_error_at_construction(tmp_path: Path) -> None:
    """A runtime_dir below a file (or that is a file) is a HotswapError naming it, before any load."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for bad in (blocker / "runtime", blocker):
        with pytest.raises(HotswapError) as info:
            PluginManagerSwapper(tmp_path, runtime_dir=bad)
        message = str(info.value)
        assert f'runtime folder "{bad}" cannot be used' in message
        assert "check that it is a folder" in message and info.value.step == "runtime_dir"


HOST = textwrap.dedent("""
    import sys, time
    from hotswap_runtime import PluginManagerSwapper
    swapper = PluginManagerSwapper(sys.argv[1], runtime_dir=sys.argv[2])
    swapper.load_plugins()
    print(swapper.current().vault.live_funcs["live_where"]()[0], flush=True)
    for line in sys.stdin:
        print(swapper.current().vault.live_funcs["live_items"](), flush=True)
""")


def start_host(out: Path, runtime: Path) -> tuple[subprocess.Popen[str], Path]:
    host = subprocess.Popen([sys.executable, "-c", HOST, str(out), str(runtime)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert host.stdout is not None
    line = host.stdout.readline().strip()
    assert line, "the host printed nothing"
    return host, Path(line)


def test_a_killed_hosts_folder_is_swept_by_the_next_swapper(env) -> None:
    """A host killed with SIGKILL leaves its folder; the next swapper on that runtime folder
    removes it, while a live host's folder and files stay untouched."""
    rebuild, out, runtime = env
    dead, dead_file = start_host(out, runtime)
    alive, alive_file = start_host(out, runtime)
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait(timeout=30)
        assert dead_file.is_file()
        swapper = PluginManagerSwapper(out, free_delay=0, runtime_dir=runtime)
        try:
            assert not os.path.lexists(dead_file.parent.parent)
            assert not os.path.lexists(dead_file.parent.parent.parent)  # its proc folder
            assert alive_file.is_file()
            assert alive.stdin is not None and alive.stdout is not None
            alive.stdin.write("\n")
            alive.stdin.flush()
            assert alive.stdout.readline().strip() == "[1]"
        finally:
            swapper.close()
        assert alive_file.is_file()  # close() leaves the other host's files alone
    finally:
        for host in (dead, alive):
            if host.poll() is None:
                host.kill()
            host.wait(timeout=30)
    PluginManagerSwapper(out, runtime_dir=runtime).close()  # sweeps the second one
    assert files_under(runtime) == []


def test_hosts_writing_one_new_artifact_at_once_end_with_one_copy(env) -> None:
    """Swappers loading the same new artifact at the same moment all load; one copy is kept."""
    import threading

    rebuild, out, runtime = env
    swappers = [PluginManagerSwapper(out, runtime_dir=runtime) for _ in range(4)]
    barrier = threading.Barrier(len(swappers))
    errors: list[BaseException] = []

    def load(s: PluginManagerSwapper) -> None:
        try:
            barrier.wait(10)
            s.load_plugins()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(s,)) for s in swappers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert [live(s, "live_items")() for s in swappers] == [[1]] * 4
        assert len(os.listdir(runtime / "store")) == 1  # no second copy, no temporary left
    finally:
        for s in swappers:
            s.close()
    assert files_under(runtime) == []


def test_versions_of_one_artifact_share_one_written_copy(env) -> None:
    """Loads of the same artifact (here two swappers) reuse one copy: each has its own folder
    name, one store entry behind them."""
    rebuild, out, runtime = env
    first = PluginManagerSwapper(out, runtime_dir=runtime)
    second = PluginManagerSwapper(out, runtime_dir=runtime)
    try:
        first.load_plugins()
        second.load_plugins()
        a, b = (Path(live(s, "live_where")()[0]) for s in (first, second))
        assert a != b and a.parent.parent.name != b.parent.parent.name
        assert os.path.samefile(a, b)
        assert len(os.listdir(runtime / "store")) == 1
    finally:
        first.close()
        second.close()
    assert files_under(runtime) == []


def _without_dac_override() -> None:
    """In a child about to exec: drop CAP_DAC_OVERRIDE from the bounding set, so the exec'd
    root process obeys file modes like any user (prctl PR_CAPBSET_DROP)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override = 24, 1
    if libc.prctl(pr_capbset_drop, cap_dac_override, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE)")


def test_where_file_modes_bind_they_refuse_the_write(env) -> None:
    """In a process that file modes bind (the tests' user if not root; else root without
    CAP_DAC_OVERRIDE), the read-only modes refuse the write and no audit hook is installed."""
    rebuild, out, runtime = env
    script = textwrap.dedent("""
        import os, sys
        from hotswap_runtime import PluginManagerSwapper
        from hotswap_runtime.ondisk import guard_active
        swapper = PluginManagerSwapper(sys.argv[1], runtime_dir=sys.argv[2])
        swapper.load_plugins()
        try:
            swapper.current().vault.live_funcs["live_write"]("open")
        except PermissionError as exc:
            print("refused", exc.errno, guard_active())
        swapper.close()
        print("left", os.path.exists(sys.argv[2]))
        os.mkdir(sys.argv[3], 0o555)
        try:
            PluginManagerSwapper(sys.argv[1], runtime_dir=os.path.join(sys.argv[3], "runtime"))
        except Exception as exc:
            print(type(exc).__name__, exc)
        os.mkdir(sys.argv[4], 0o555)  # a runtime folder that exists but cannot be written
        try:
            PluginManagerSwapper(sys.argv[1], runtime_dir=sys.argv[4])
        except Exception as exc:
            print(type(exc).__name__, exc)
        print("kept", sorted(os.listdir(sys.argv[4])))
    """)
    repo = Path(__file__).resolve().parents[2]
    locked = runtime.parent / "read-only"
    existing = runtime.parent / "existing-read-only"
    done = subprocess.run([sys.executable, "-c", script, str(out), str(runtime), str(locked),
                           str(existing)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(repo)},
                          preexec_fn=_without_dac_override if os.geteuid() == 0 else None)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["refused 13 False", "left False"]
    # a runtime_dir in a folder it cannot write to: refused by the constructor, named
    assert lines[2].startswith(f'HotswapError runtime folder "{locked / "runtime"}" cannot be used')
    assert "Permission denied" in lines[2] and "writable by this user" in lines[2]
    assert lines[3].startswith(f'HotswapError runtime folder "{existing}" cannot be used')
    assert "Permission denied" in lines[3] and "writable by this user" in lines[3]
    assert lines[4] == "kept []"


def test_a_forked_child_gets_its_own_folder_and_leaves_the_parents_alone(env) -> None:
    """A worker forked after the first load reloads into a proc folder of its own; its close()
    removes that one only, and the parent's version keeps its files."""
    rebuild, out, runtime = env
    swapper = PluginManagerSwapper(out, free_delay=0, runtime_dir=runtime)
    try:
        swapper.load_plugins()
        parent_file = Path(live(swapper, "live_where")()[0])
        rebuild("two", [2])
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, then leave without running the parent's cleanup
            code = 1
            try:
                swapper.reload()
                child_file = Path(live(swapper, "live_where")()[0])
                report = [str(child_file), live(swapper, "live_items")(), parent_file.is_file()]
                swapper.close()
                report.append(child_file.exists())
                os.write(write, json.dumps(report).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read) as pipe:
            report = json.loads(pipe.read() or "null")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        child_file, items, parent_seen, child_left = report
        assert items == [2] and parent_seen and not child_left
        # different proc folders: <runtime>/procs/<pid>-…/files#N/files/__init__.py
        assert Path(child_file).parents[2] != parent_file.parents[2]
        assert parent_file.is_file() and live(swapper, "live_items")() == [1]
    finally:
        swapper.close()
    assert files_under(runtime) == []


CHURN = textwrap.dedent("""
    import sys
    from hotswap_runtime import PluginManagerSwapper
    for _ in range(15):
        swapper = PluginManagerSwapper(sys.argv[1], runtime_dir=sys.argv[2])
        swapper.load_plugins()
        assert swapper.current().vault.live_funcs["live_items"]() == [1]
        swapper.close()
""")


def test_hosts_starting_and_closing_at_once_never_trip_over_each_other(env) -> None:
    """Hosts that start, load and close over and over on one runtime folder (the last to close
    removes the folder while another starts) all succeed and leave nothing."""
    rebuild, out, runtime = env
    repo = Path(__file__).resolve().parents[2]
    hosts = [subprocess.Popen([sys.executable, "-c", CHURN, str(out), str(runtime)],
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(repo)}) for _ in range(4)]
    try:
        for host in hosts:
            _, err = host.communicate(timeout=120)
            assert host.returncode == 0, err
    finally:
        for host in hosts:
            if host.poll() is None:
                host.kill()
                host.communicate(timeout=30)
    assert files_under(runtime) == []


STUCK = textwrap.dedent("""
    import fcntl, os, sys, time
    fds = []
    for path in sys.argv[1:]:
        fds.append(os.open(path, os.O_RDONLY | (0 if os.path.isdir(path) else os.O_CREAT)))
        fcntl.flock(fds[-1], fcntl.LOCK_EX)
    print("holding", flush=True)
    time.sleep(600)
""")

CYCLE = textwrap.dedent("""
    import sys
    from hotswap_runtime import PluginManagerSwapper
    swapper = PluginManagerSwapper(sys.argv[1], runtime_dir=sys.argv[2], free_delay=0)
    swapper.load_plugins()
    first = swapper.current().vault.live_funcs["live_where"]()[0]
    swapper.reload()
    print(swapper.current().vault.live_funcs["live_items"](), first, flush=True)
    swapper.close()
""")


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_hosts_never_wait_for_each_other_over_other_artifacts(env, tmp_path: Path) -> None:
    """A process that holds the lock of one artifact's copy for good (a host frozen while
    linking or collecting it), and the folder-wide lock older runtimes took, does not stop
    other hosts: they start, load another artifact, reload, free, close and sweep a killed
    host's folder on the same runtime folder."""
    rebuild, out, runtime = env
    other = tmp_path / "other"
    build(write_plugin(tmp_path / "src2", "two", [2]), other, include=r"\.(json|txt)$")
    victim, victim_file = start_host(out, runtime)
    (entry,) = os.listdir(runtime / "store")
    stuck = subprocess.Popen([sys.executable, "-c", STUCK, str(runtime / "store" / entry),
                              str(runtime / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert stuck.stdout is not None and stuck.stdout.readline().strip() == "holding"
        victim.kill()
        victim.wait(timeout=30)
        repo = Path(__file__).resolve().parents[2]
        hosts = [subprocess.Popen([sys.executable, "-c", CYCLE, str(other), str(runtime)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": str(repo)})
                 for _ in range(3)]
        for host in hosts:
            try:
                printed, err = host.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                for h in hosts:
                    h.kill()
                pytest.fail("a host waited for the process holding another artifact's lock")
            assert host.returncode == 0, err
            items, where = printed.split(" ", 1)
            assert items == "[2]" and f"{os.sep}files#" in where
        # the killed host's proc folder was swept by the hosts that started after it
        assert not os.path.lexists(victim_file.parent.parent.parent)
    finally:
        stuck.kill()
        stuck.wait(timeout=30)
        if victim.poll() is None:
            victim.kill()
            victim.wait(timeout=30)
    PluginManagerSwapper(out, runtime_dir=runtime).close()  # the entry it held goes now
    assert files_under(runtime) == []


def test_a_close_that_cannot_remove_files_keeps_no_version_alive(
        env, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A close whose file clean-up fails (another host swept the same folder first) warns, and
    the warning kept by a handler (here pytest's caplog) keeps no freed version alive: it holds
    the error's text, not the exception, whose traceback's frames would hold the versions."""
    import gc
    import weakref

    from hotswap_runtime import ondisk

    _rebuild, out, runtime = env
    swapper = PluginManagerSwapper(out, free_delay=0, runtime_dir=runtime)
    swapper.load_plugins()
    manager = swapper.current()
    assert manager is not None
    freed = weakref.ref(manager)
    del manager

    def swept_first(self: object) -> None:
        raise FileNotFoundError(2, "No such file or directory", "procs/.gone-0")

    monkeypatch.setattr(ondisk.RuntimeFolder, "_collect", swept_first)
    swapper.close()
    assert "cannot remove the files of this host's versions" in caplog.text
    gc.collect()
    assert freed() is None, "the closed swapper's manager is still alive"
