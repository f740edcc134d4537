"""Many hosts on one runtime folder at once (the default ``/tmp/hotswap-<uid>``, shared by every
host of a user, made by the first and removed by the last): loading, reloading, closing, being
killed and starting, none of them loses a file it uses, fails, or logs a warning, and the folder
ends empty."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_ondisk import files_under, write_plugin

from hotswap_build.build import build
from hotswap_runtime import PluginManagerSwapper
from hotswap_runtime.ondisk import NEW_PREFIX, PROCS, STORE

REPO = Path(__file__).resolve().parents[2]

#: one host: for ``seconds``, make a swapper on its own plugins folder and the shared runtime
#: folder, load and reload artifacts the other hosts load too, read each version's files from
#: disk, close (the ``keeper`` host keeps its first version and reads it all along); any
#: exception or logged warning is printed on stderr
HOST = textwrap.dedent("""
    import logging, os, random, shutil, sys, time
    from hotswap_runtime import PluginManagerSwapper
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    runtime, mine, seconds, artifacts = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]
    os.makedirs(mine, exist_ok=True)
    deadline = time.monotonic() + seconds
    keeper = os.path.basename(mine) == "keeper"
    rounds = 0
    print("started", flush=True)
    while time.monotonic() < deadline:
        swapper = PluginManagerSwapper(mine, runtime_dir=None if runtime == "default" else runtime,
                                       free_delay=0)
        try:
            for step in range(random.randrange(1, 5)):
                i = random.randrange(len(artifacts))
                shutil.copyfile(artifacts[i], os.path.join(mine, "files.part"))
                os.replace(os.path.join(mine, "files.part"), os.path.join(mine, "files.hsp"))
                if step == 0:
                    swapper.load_plugins()
                else:
                    swapper.reload()
                funcs = swapper.current().vault.live_funcs
                assert funcs["live_items"]() == [i], (funcs["live_items"](), i)
                assert funcs["live_render"]("hello.txt") == f"hello s{i}"
                while keeper and time.monotonic() < deadline:  # one version, read all along
                    assert funcs["live_items"]() == [i], (funcs["live_items"](), i)
                    assert funcs["live_render"]("hello.txt") == f"hello s{i}"
                    time.sleep(0.01)
        finally:
            swapper.close()
        rounds += 1
    print("rounds", rounds, flush=True)
""")


def _host(tmp: Path, mine: Path, seconds: float, artifacts: list[Path]) -> subprocess.Popen[str]:
    """A host on the default runtime folder, in temporary folder ``tmp`` (``TMPDIR``)."""
    host = subprocess.Popen([sys.executable, "-c", HOST, "default", str(mine), str(seconds),
                             *map(str, artifacts)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)})
    assert host.stdout is not None and host.stdout.readline().strip() == "started"
    return host


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL, flock")
def test_hosts_sharing_a_runtime_folder_never_lose_each_others_files(tmp_path: Path) -> None:
    """Four hosts load, reload and close over and over on the default runtime folder for a few seconds
    while two others are SIGKILLed mid-work and new ones start (each start sweeps the killed
    hosts' leftovers, each close collects unused copies and may remove the folder's skeleton as
    the last user), and one keeps its first version and reads its files all along: every host
    that was not killed reads its own files and ends cleanly, with
    no warning logged, and one more host start and close leaves the folder empty."""
    tmp = tmp_path / "tmp"  # the hosts' temporary folder: their default runtime folder is in it
    tmp.mkdir()
    runtime = tmp / f"hotswap-{os.getuid()}"
    artifacts = []
    for i in range(3):
        out = tmp_path / f"build{i}"
        build(write_plugin(tmp_path / f"src{i}", f"s{i}", [i]), out, include=r"\.(json|txt)$")
        artifacts.append(out / "files.hsp")
    hosts: list[subprocess.Popen[str]] = []
    try:
        hosts = [_host(tmp, tmp_path / "keeper", 6.0, artifacts)]
        hosts += [_host(tmp, tmp_path / f"host{n}", 6.0, artifacts) for n in range(4)]
        killed = []
        for n in range(2):
            time.sleep(1.0)
            victim = _host(tmp, tmp_path / f"victim{n}", 30.0, artifacts)
            time.sleep(0.5 + 0.3 * n)
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
            killed.append(victim)
            hosts.append(_host(tmp, tmp_path / f"late{n}", 2.0, artifacts))
        for host in hosts:
            printed, err = host.communicate(timeout=120)
            assert host.returncode == 0 and err == "", err
            assert printed.startswith("rounds ") and int(printed.split()[1]) > 0
        for victim in killed:
            victim.communicate(timeout=30)
    finally:
        for host in hosts:
            if host.poll() is None:
                host.kill()
                host.communicate(timeout=30)
    PluginManagerSwapper(tmp_path / "keeper", runtime_dir=runtime).close()  # sweeps the killed
    left = files_under(runtime)
    # a host killed in the microseconds between making its proc folder and naming it leaves a
    # .new- folder, swept once NEW_STALE_S old (a sweep cannot tell it from one being made)
    making = [p for p in left if p.startswith(os.path.join(PROCS, NEW_PREFIX))]
    assert left == (sorted([PROCS, STORE, *making]) if making else [])


def test_a_store_removed_and_made_again_by_other_hosts_while_placing_a_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last host to close removes ``store/`` and a starting host makes it again, both
    between this host's writing a new copy and renaming it into the store: the load succeeds,
    from the store made again."""
    from hotswap_runtime import ondisk

    runtime = tmp_path / "runtime"
    build(write_plugin(tmp_path / "src", "one", [1]), tmp_path / "plugins", include=r"\.(json|txt)$")
    real_rename = os.rename
    raced = []

    def rename(src: str, dst: str) -> None:
        if not raced and os.path.dirname(dst) == str(runtime / "store"):
            raced.append(dst)
            os.rmdir(runtime / "store")  # the other hosts, at this very moment
            try:
                real_rename(src, dst)
            finally:
                os.mkdir(runtime / "store", 0o700)
        real_rename(src, dst)

    swapper = PluginManagerSwapper(tmp_path / "plugins", free_delay=0, runtime_dir=runtime)
    try:
        monkeypatch.setattr(ondisk.os, "rename", rename)
        swapper.load_plugins()
        monkeypatch.undo()
        assert raced and swapper.current().vault.live_funcs["live_items"]() == [1]
    finally:
        monkeypatch.undo()
        swapper.close()
    assert files_under(runtime) == []
