"""The follower inside this process: retry, the asyncio form, close, tampering, trusted keys,
the report's fields."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_support import wait_until

from hotswap_build.build import build
from hotswap_runtime import PluginManagerSwapper
from hotswap_runtime.fleet import Follower, InstanceStatus, open_channel, ops
from hotswap_runtime.signing import generate_key

GAMMA = '''\
CompileTimeString = "dev"
def on_load(data):
    if not data.get("ready"):
        raise RuntimeError("the host is not ready for gamma")
def on_init(vault): pass
def on_free(): pass
def export(): return None
def import_(): return None
def invoke_func(name, *params): return CompileTimeString
def reloadable(): return True
'''

#: the keys of a report, in the contract's order (README "Fleet")
REPORT_KEYS = ["instance", "host", "pid", "labels", "channel", "revision", "attempted", "state",
               "error", "heartbeat", "plugins", "versions_alive", "pending_free", "reloads",
               "updated", "hotswap"]


@pytest.fixture
def swapper(tmp_path: Path):
    s = PluginManagerSwapper(tmp_path / "empty", free_delay=0.05)
    yield s
    s.close()


def tag(swapper: PluginManagerSwapper, name: str = "beta") -> str | None:
    manager = swapper.current()
    plugin = manager.find_plugin(name) if manager is not None else None
    return plugin.invoke_func("probe") if plugin is not None else None


def test_report_fields_are_the_json_keys(channel_url: str, releases, swapper, tmp_path: Path) -> None:
    """InstanceStatus is frozen, its fields are the report's keys, and the channel holds that."""
    ops.publish(channel_url, releases("v1"))
    follower = Follower(swapper, channel_url, instance="web-1:42", labels={"zone": "a"},
                        cache_dir=tmp_path / "cache", heartbeat=0.2)
    assert follower.start(timeout=10)
    status = follower.status()
    assert [f.name for f in dataclasses.fields(InstanceStatus)] == REPORT_KEYS
    assert list(status.to_json()) == REPORT_KEYS
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.state = "failed"
    assert (status.instance, status.labels, status.revision, status.attempted, status.state,
            status.error, status.channel) == ("web-1:42", {"zone": "a"}, 1, 1, "ok", None,
                                              open_channel(channel_url).name)
    assert sorted(status.plugins) == ["alpha", "beta"]
    [stored] = open_channel(channel_url).statuses()
    assert InstanceStatus.from_json(json.loads(json.dumps(stored))).revision == 1
    assert json.loads(json.dumps(status.to_json())) == status.to_json()


@contextlib.contextmanager
def following(follower: Follower, form: str, timeout: float) -> Iterator[bool]:
    """Start ``follower`` in ``form``: its own thread (start), or a task (astart) of a loop
    running in another thread; yields what the start returned, stops it afterwards."""
    if form == "thread":
        try:
            yield follower.start(timeout=timeout)
        finally:
            follower.stop()
        return
    started: queue.Queue[bool] = queue.Queue()

    async def main() -> None:
        started.put(await follower.astart(timeout=timeout))
        assert follower._task is not None
        await asyncio.wait([follower._task])

    loop = threading.Thread(target=asyncio.run, args=(main(),), name="test-loop")
    loop.start()
    try:
        yield started.get(timeout=30)
    finally:
        follower.stop()
        loop.join(10)
        assert not loop.is_alive()


@pytest.mark.parametrize("form", ["thread", "asyncio"])
def test_retry_tries_a_failed_revision_again(channel_url: str, swapper, tmp_path: Path,
                                             form: str) -> None:
    """A failed revision is not retried by itself; after the host fixes its side, retry() is
    (either form of the follower)."""
    (tmp_path / "src" / "gamma").mkdir(parents=True)
    (tmp_path / "src" / "gamma" / "__init__.py").write_text(GAMMA)
    out = tmp_path / "bin"
    build(tmp_path / "src" / "gamma", out, stamps={"CompileTimeString": "g1"})
    ops.publish(channel_url, [out / "gamma.hsp"])
    data: dict[str, bool] = {}
    follower = Follower(swapper, channel_url, data=data, cache_dir=tmp_path / "cache",
                        heartbeat=0.1)
    with following(follower, form, timeout=1.0) as live:
        assert not live
        status = wait_until(lambda: (s := follower.status()).state == "failed" and s, what="failed")
        assert status.error == ('plugin "gamma": on_load failed: RuntimeError: the host is not ready '
                                "for gamma")
        assert (status.revision, status.attempted) == (None, 1)
        data["ready"] = True
        wait_until(lambda: follower.status().updated > status.updated, what="a heartbeat")
        assert follower.status().state == "failed" and swapper.current() is None
        follower.retry()
        wait_until(lambda: follower.status().state == "ok", what="ok after retry")
        assert tag(swapper, "gamma") == "g1"


def test_asyncio_form_and_close_stops_the_follower(channel_url: str, releases, swapper,
                                                   tmp_path: Path) -> None:
    """astart() follows from a task (reloads through areload); swapper.close() stops it."""
    ops.publish(channel_url, releases("v1"))

    async def main() -> Follower:
        follower = Follower(swapper, channel_url, cache_dir=tmp_path / "cache", heartbeat=0.2)
        assert await follower.astart(timeout=10)
        assert tag(swapper) == "v1"
        ops.publish(channel_url, releases("v2"))
        for _ in range(500):
            if tag(swapper) == "v2" and follower.status().revision == 2:
                break
            await asyncio.sleep(0.01)
        assert tag(swapper) == "v2" and follower.status().revision == 2
        swapper.close()
        await asyncio.sleep(0)
        assert follower._task is not None
        await asyncio.wait([follower._task], timeout=5)
        assert follower._task.done()
        return follower

    asyncio.run(main())


def test_thread_form_stops_on_close(channel_url: str, releases, tmp_path: Path) -> None:
    """swapper.close() ends the follower's thread before freeing the plugins."""
    ops.publish(channel_url, releases("v1"))
    swapper = PluginManagerSwapper(tmp_path / "empty", free_delay=0.05)
    follower = Follower(swapper, channel_url, cache_dir=tmp_path / "cache", heartbeat=0.2)
    assert follower.start(timeout=10)
    swapper.close()
    assert follower._thread is not None and not follower._thread.is_alive()


def test_tampered_artifact_in_the_channel_is_refused(tmp_path: Path, releases, swapper) -> None:
    """An artifact changed in the folder after publishing fails its sha256: the release is
    reported failed, nothing is loaded."""
    channel = tmp_path / "chan"
    ops.publish(channel, releases("v1"))
    target = channel / "releases" / "1" / "alpha.hsp"
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    follower = Follower(swapper, channel, cache_dir=tmp_path / "cache", heartbeat=0.2)
    assert not follower.start(timeout=1.0)
    status = wait_until(lambda: (s := follower.status()).state == "failed" and s, what="failed")
    assert status.error.startswith(f'artifact "alpha.hsp" in channel {channel} has sha256 ')
    assert status.error.endswith("it was changed after publishing: publish a new release")
    assert swapper.current() is None
    assert [p.name for p in (tmp_path / "cache" / "artifacts").iterdir()] == []


def test_trusted_keys_of_the_swapper_apply_to_releases(tmp_path: Path, releases) -> None:
    """With trusted_keys on the swapper, an unsigned release is reported failed; a signed one
    goes live."""
    generate_key(tmp_path / "deploy.key")
    signed = tmp_path / "signed"
    src = releases("v1")[0].parent.parent.parent / "src"
    for name in ("alpha", "beta"):
        build(src / name, signed, stamps={"CompileTimeString": "s1"}, sign=tmp_path / "deploy.key")
    channel = tmp_path / "chan"
    swapper = PluginManagerSwapper(tmp_path / "empty", free_delay=0.05,
                                   trusted_keys=[tmp_path / "deploy.key.pub"])
    try:
        ops.publish(channel, releases("v1"))
        follower = Follower(swapper, channel, cache_dir=tmp_path / "cache", heartbeat=0.2)
        assert not follower.start(timeout=1.0)
        status = wait_until(lambda: (s := follower.status()).state == "failed" and s, what="failed")
        assert "not signed" in status.error and swapper.current() is None
        ops.publish(channel, [signed / "alpha.hsp", signed / "beta.hsp"])
        wait_until(lambda: follower.status().state == "ok", what="the signed release")
        assert tag(swapper) == "s1"
    finally:
        swapper.close()


def test_cache_keeps_what_runs_and_prunes_the_rest(channel_url: str, releases, swapper,
                                                  tmp_path: Path, monkeypatch) -> None:
    """Entries the running release does not use are removed once unused for CACHE_KEEP_S;
    what runs stays, so a restart on the cache still works."""
    from hotswap_runtime.fleet import follower as follower_module

    monkeypatch.setattr(follower_module, "CACHE_KEEP_S", 0.0)
    cache = tmp_path / "cache"
    ops.publish(channel_url, releases("v1"))
    follower = Follower(swapper, channel_url, cache_dir=cache, heartbeat=0.2)
    assert follower.start(timeout=10)
    for revision, stamp in ((2, "v2"), (3, "v3")):
        ops.publish(channel_url, releases(stamp))
        wait_until(lambda r=revision: follower.status().revision == r, what=f"revision {revision}")
    running = open_channel(channel_url).release(3)
    assert sorted(p.name for p in (cache / "artifacts").iterdir()) == sorted(
        f"{r.sha256}.hsp" for r in running.artifacts.values())
    assert len(list((cache / "sets").iterdir())) == 1
    assert tag(swapper) == "v3"


def test_workers_sharing_a_cache_never_touch_the_files_the_others_read(
        channel_url: str, releases, swapper, tmp_path: Path) -> None:
    """Workers of one host share cache_dir: a second worker taking the same release leaves the
    set folder's files (hard links to the cached artifacts) exactly as they were, so a reload
    reading them in another worker never sees them change under it."""
    cache = tmp_path / "cache"
    ops.publish(channel_url, releases("v1"))
    first = Follower(swapper, channel_url, instance="w:1", cache_dir=cache, heartbeat=0.2)
    assert first.start(timeout=10)
    [folder] = (cache / "sets").iterdir()

    def identity() -> dict[str, tuple[int, int, int]]:
        return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_ctime_ns)
                for p in [*folder.iterdir(), *(cache / "artifacts").iterdir()]}

    before = identity()
    other = PluginManagerSwapper(tmp_path / "empty2", free_delay=0.05)
    try:
        second = Follower(other, channel_url, instance="w:2", cache_dir=cache, heartbeat=0.2)
        assert second.start(timeout=10)
        assert tag(other) == "v1"
    finally:
        other.close()
    assert identity() == before


MATERIALISE = """
import json, os, sys
from hotswap_runtime import PluginManagerSwapper
from hotswap_runtime.fleet import Follower, open_channel

channel, cache, runtime = sys.argv[1:4]
swapper = PluginManagerSwapper(runtime, free_delay=0, runtime_dir=runtime)
follower = Follower(swapper, channel, instance=f"w:{os.getpid()}", cache_dir=cache)
release = open_channel(channel).current()
print("ready", flush=True)
for _ in sys.stdin:  # one line per round: materialise the release now, say what was used
    try:
        folder = follower._materialise(release)
        print(json.dumps([folder.stat().st_ino, sorted(os.listdir(folder))]), flush=True)
    except Exception as exc:
        print(json.dumps(f"{type(exc).__name__}: {exc}"), flush=True)
"""


def test_workers_finding_a_damaged_release_folder_at_once_all_use_one_repair(
        releases, tmp_path: Path) -> None:
    """Four worker processes sharing a cache find the release folder (or a cached artifact)
    missing or damaged at the same moment, round after round: every one of them gets the release's folder (no error from
    a rename another worker raced), all the same one (none replaced a folder another had just
    made, and may be loading from), and nothing is left behind."""
    import os
    import shutil
    import subprocess
    import sys

    channel = tmp_path / "channel"
    ops.publish(str(channel), releases("v1"))
    cache = tmp_path / "cache"
    repo = Path(__file__).resolve().parents[2]
    workers = []
    for index in range(4):
        runtime = tmp_path / f"runtime{index}"
        runtime.mkdir()
        workers.append(subprocess.Popen(
            [sys.executable, "-c", MATERIALISE, str(channel), str(cache), str(runtime)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(repo)}))
    try:
        assert [w.stdout.readline() for w in workers] == ["ready\n"] * 4
        damages = ["missing", "file removed", "stray file", "empty folder", "a file",
                   "cached artifact damaged"]
        for round_ in range(40):
            damage = damages[round_ % len(damages)]
            sets = cache / "sets"
            folders = [p for p in sets.iterdir() if not p.name.startswith(".")] if sets.is_dir() else []
            if damage == "cached artifact damaged":  # replaced, not written in place
                for cached in (cache / "artifacts").iterdir():
                    (cache / "bad").write_bytes(b"damaged")
                    os.replace(cache / "bad", cached)
            for folder in folders:
                if damage == "cached artifact damaged":
                    continue
                elif damage == "missing":
                    shutil.rmtree(folder)
                elif damage == "file removed":
                    (folder / "alpha.hsp").unlink()
                elif damage == "stray file":
                    (folder / "notes.txt").write_text("left by hand")
                elif damage == "empty folder":
                    shutil.rmtree(folder)
                    folder.mkdir()
                else:
                    shutil.rmtree(folder)
                    folder.write_text("not a folder")
            for w in workers:  # all at once: each is blocked reading its next line
                w.stdin.write("go\n")
                w.stdin.flush()
            answers = [json.loads(w.stdout.readline()) for w in workers]
            errors = [a for a in answers if isinstance(a, str)]
            assert errors == [], f"round {round_} ({damage}): {errors}"
            assert [names for _, names in answers] == [["alpha.hsp", "beta.hsp"]] * 4
            assert len({inode for inode, _ in answers}) == 1, f"round {round_} ({damage}): {answers}"
        assert [p.name for p in (cache / "sets").iterdir()] == [folders[0].name]  # no temporaries
    finally:
        for w in workers:
            w.stdin.close()
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait(timeout=30)


def test_an_unexpected_error_never_stops_following(tmp_path: Path, releases, swapper,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A channel that raises something unforeseen is logged and looked at again (backing off);
    the follower goes on and takes the release once the channel answers."""
    from hotswap_runtime.fleet import FolderChannel

    class Flaky(FolderChannel):
        failures = 3

        def current(self):
            if Flaky.failures:
                Flaky.failures -= 1
                raise RuntimeError("disk on fire")
            return super().current()

    ops.publish(tmp_path / "chan", releases("v1"))
    follower = Follower(swapper, Flaky(tmp_path / "chan"), cache_dir=tmp_path / "cache",
                        heartbeat=0.2)
    assert follower.start(timeout=10)
    assert tag(swapper) == "v1" and Flaky.failures == 0
    assert "unexpected RuntimeError: disk on fire; keeps serving and looks again" in caplog.text


def test_an_instance_with_nothing_to_run_is_idle_not_updating(tmp_path: Path, swapper) -> None:
    """On a channel where nothing was published yet, the instance reports ok with no revision;
    start() with a timeout returns False and the follower keeps waiting."""
    (tmp_path / "chan").mkdir()
    follower = Follower(swapper, tmp_path / "chan", cache_dir=tmp_path / "cache", heartbeat=0.2)
    assert not follower.start(timeout=0.3)
    wait_until(lambda: follower.status().state == "ok", what="idle")
    assert (follower.status().revision, follower.status().attempted) == (None, None)
    assert ops.gate(tmp_path / "chan").summary() == "1/1 on -, ok"
