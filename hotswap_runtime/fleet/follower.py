"""``Follower``: keep a swapper on the release its channel means for this instance (README "Fleet").

Design note. The follower is one loop, in a daemon thread (``start``) or an asyncio task
(``astart``): look at the channel (``wait_for_change``, or ``current`` after an error or a
``retry``), work out the release meant for this instance (the current one when the instance is
in its cohort, else its ``previous``), and when that is not what runs, apply it:

1. fetch each artifact into ``cache_dir/artifacts/<sha256>.hsp`` unless the cache already
   holds it (its sha256 checked before every use, so a damaged cache entry is fetched again);
2. build a folder ``cache_dir/sets/<digest of the artifact set>/`` holding exactly those
   artifacts (hard links to the cache), never touched once complete; the workers sharing the
   cache make or repair one under an ``flock`` (``cache_dir/.sets.lock``), one at a time, so the
   second of two finds the first one's folder and uses it;
3. point the swapper at that folder (``reset_plugin_dir``) and reload through ``prepare``
   (every hook and ``self_test`` of the fresh versions) then ``commit``; the swap is one
   reference store, so a host never runs a mix of two releases.

A failure anywhere (channel, digest, signature through the swapper's ``trusted_keys``,
verification, a hook, ``self_test``) puts the previous folder back, leaves the running version
serving, and is reported ``failed``; that revision is not tried again until a newer one is
published or ``retry()`` is called. The release that runs is written to
``cache_dir/last/<channel>.json``, so a host that starts while the channel is away loads it
from the cache. The channel being away never stops anything, and is no failure of a release
(``ChannelUnavailable`` in the middle of a fetch, a NATS node lost): the loop backs off (0.1 s
doubling to 5 s) and tries again. Each instance reports after every attempt and every
``heartbeat`` seconds, also while a release is being applied (a long load is ``updating``);
a reader shows an instance ``stale`` once its report is older than three heartbeats.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import forks
from ..artifact import write_atomically
from ..errors import HotswapError
from .channel import ArtifactRef, Channel, ChannelError, ChannelUnavailable, Release, in_cohort
from .folder import locked, sha256_file
from .open import open_channel

if TYPE_CHECKING:
    import asyncio  # imported where used: a thread-form host need not pay for it

    from ..swapper import PluginManagerSwapper

__all__ = ["Follower", "InstanceStatus", "STALE_HEARTBEATS", "target_revision"]

logger = logging.getLogger("hotswap.fleet")

#: an instance whose last report is older than this many heartbeats is stale
STALE_HEARTBEATS = 3
#: longest single wait on the channel: how soon stop() and retry() take effect
_LOOK = 0.5
_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 5.0
#: cache entries (artifacts, release folders) that the running release does not use and nobody
#: used for this long are removed (the workers sharing a cache touch what they use)
CACHE_KEEP_S = 7 * 24 * 3600.0


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 UTC time as reports write it (``…Z``)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _hotswap_version() -> str:
    try:
        from importlib.metadata import version

        return version("hotswap")
    except Exception:  # noqa: BLE001 - not installed as a distribution (a source checkout)
        return "unknown"


@dataclass(frozen=True)
class InstanceStatus:
    """One instance's report, as ``follower.status()`` returns it and the channel stores it.

    Its fields are the JSON keys (README "Fleet"). ``revision``: the release it runs (None before its
    first); ``attempted``: the last one it tried; ``state``: ``ok``, ``updating`` or
    ``failed`` (then ``error`` says why); ``updated``: when it was written (UTC).
    """

    instance: str
    host: str
    pid: int
    labels: Mapping[str, str] = field(default_factory=dict)
    channel: str = ""
    revision: int | None = None
    attempted: int | None = None
    state: str = "updating"
    error: str | None = None
    heartbeat: float = 10.0
    plugins: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    versions_alive: int = 0
    pending_free: int = 0
    reloads: int = 0
    updated: str = ""
    hotswap: str = ""

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON object (the keys in the order of the contract)."""
        out = dataclasses.asdict(self)
        out["labels"] = dict(self.labels)
        out["plugins"] = {k: dict(v) for k, v in self.plugins.items()}
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> InstanceStatus:
        """Read a report back; unknown keys are ignored, missing ones take their defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in names})

    def age(self, now: float | None = None) -> float:
        """Seconds since the report was written (infinite when it has no readable time)."""
        try:
            written = parse_time(self.updated)
        except ValueError:
            return float("inf")
        return max(0.0, (time.time() if now is None else now) - written)

    def stale(self, now: float | None = None) -> bool:
        """True when the report is older than three of the instance's heartbeats."""
        return self.age(now) > STALE_HEARTBEATS * self.heartbeat


def target_revision(release: Release | None, instance: str) -> int | None:
    """The revision meant for ``instance`` when ``release`` is current: its own when the
    instance is in its cohort, else its ``previous`` (None: nothing yet)."""
    if release is None:
        return None
    return release.revision if in_cohort(instance, release.cohort) else release.previous


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hotswap" / "fleet"


def _set_key(release: Release) -> str:
    """A folder name for the set of artifacts (identical sets share one folder)."""
    text = "\n".join(f"{n}:{r.sha256}" for n, r in sorted(release.artifacts.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class Follower:
    """Keeps ``swapper`` on the release ``channel`` means for this instance, and reports.

    Args:
        swapper: the host's ``PluginManagerSwapper``; its ``plugin_dir`` is reset to a folder
            of each release's artifacts. ``swapper.close()`` stops the follower.
        channel: a ``Channel`` or what ``open_channel`` takes (a folder path, a NATS URL).
        instance: this instance's id; default ``<hostname>:<pid>`` (one per worker process).
        labels: free ``{key: value}`` pairs shown in its reports (zone, role).
        data: passed to every reload (``on_load``'s ``data``).
        cache_dir: where fetched artifacts are kept by sha256 (shared by the workers of a
            host); default ``$XDG_CACHE_HOME/hotswap/fleet`` (``~/.cache/hotswap/fleet``).
        heartbeat: seconds between two reports when nothing changes.

    Raises:
        ValueError: ``heartbeat`` is not positive.
    """

    def __init__(self, swapper: PluginManagerSwapper, channel: Channel | str | os.PathLike[str],
                 instance: str | None = None, labels: Mapping[str, str] | None = None,
                 data: Any = None, cache_dir: str | os.PathLike[str] | None = None,
                 heartbeat: float = 10.0) -> None:
        if not heartbeat > 0:
            raise ValueError(f"heartbeat must be a positive number of seconds, not {heartbeat!r}")
        self.swapper = swapper
        self.channel = channel if isinstance(channel, Channel) else open_channel(channel)
        self.host = socket.gethostname()
        self.instance = instance or f"{self.host}:{os.getpid()}"
        self._own_instance = instance is not None
        self.labels = dict(labels or {})
        self.data = data
        self.cache_dir = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
        self.heartbeat = float(heartbeat)
        self._running: Release | None = None     # the release live in the swapper
        self._attempted: int | None = None
        self._failed: int | None = None          # not retried until newer or retry()
        self._state = "updating"
        self._error: str | None = None
        self._seen: int | None = None            # the channel's current revision last seen
        self._look = True                        # read current() instead of waiting
        self._next_report = 0.0
        self._backoff = _BACKOFF_FIRST
        self._last_problem = ""
        self._stop = threading.Event()
        self._live = threading.Event()           # a release is live (start() returns)
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done = threading.Event()
        self._status_lock = threading.Lock()
        self._report_lock = threading.RLock()
        self._status = self._make_status()
        self._pid = os.getpid()
        self._forked_from: int | None = None  # the parent's pid, in a child forked after start

    def __repr__(self) -> str:
        return f"<Follower {self.instance} of {self.channel.url} on {self._running_revision()}>"

    # -- public API -------------------------------------------------------------------------
    def start(self, timeout: float | None = None) -> bool:
        """Follow the channel from a daemon thread; return once the first release is live.

        At start-up, when the channel is away, the last release this host ran (from
        ``cache_dir``) is loaded.

        Args:
            timeout: longest wait in seconds (None: until a release is live).

        Returns:
            True once a release is live; False when ``timeout`` passed first (the follower
            goes on in the background).

        Raises:
            HotswapError: already started.
        """
        self._claim()
        self._thread = threading.Thread(target=self._run, name=f"hotswap-follower-{self.instance}",
                                        daemon=True)
        self._thread.start()
        return self._live.wait(timeout)

    async def astart(self, timeout: float | None = None) -> bool:
        """``start`` for a host with a running loop: a task follows the channel, the channel is
        read in worker threads and each release is loaded through ``swapper.areload``, so the
        loop keeps serving. Returns once the first release is live (or False after ``timeout``).

        Raises:
            HotswapError: already started.
        """
        import asyncio

        self._claim()
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._arun(), name=f"hotswap-follower-{self.instance}")
        waiter = asyncio.ensure_future(asyncio.to_thread(self._live.wait, timeout))
        try:
            done, _ = await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._live.set()  # let the waiting thread go
            raise
        if self._task in done and waiter not in done:
            self._live.set()
            self._task.result()  # a crash of the loop itself: raise it here
            return False
        return bool(waiter.result())

    def status(self) -> InstanceStatus:
        """The report this follower last made (or is about to make)."""
        with self._status_lock:
            return self._status

    def retry(self) -> None:
        """Try the failed revision again (after fixing what made it fail on this host)."""
        self._failed = None
        self._look = True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following (the plugins keep serving); also run by ``swapper.close()``.

        In the loop's own thread (asyncio form) it cancels the task without waiting;
        elsewhere it waits up to ``timeout`` seconds for the loop to end.
        """
        self._stop.set()
        self._live.set()
        with contextlib.suppress(ValueError):
            self.swapper._close_hooks.remove(self.stop)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._task is not None and self._loop is not None:
            import asyncio

            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self._loop:
                self._task.cancel()
            elif not self._loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._task.cancel)
                self._done.wait(timeout)

    # -- the loop ---------------------------------------------------------------------------
    def _claim(self) -> None:
        if self._forked_from is not None:
            raise self._forked_error()
        if self._thread is not None or self._task is not None:
            raise HotswapError(f"follower {self.instance!r} is already started; make one "
                               "follower per swapper", step="follow")
        if self._pid != os.getpid():
            # made before a fork (gunicorn --preload), started in the worker: it is the
            # worker's instance, not the parent's
            self._pid = os.getpid()
            if not self._own_instance:
                self.instance = f"{self.host}:{self._pid}"
        self.swapper._close_hooks.append(self.stop)
        forks.track(self)

    # -- fork: a follower does not follow in a forked child (see ``forks``) -------------------
    # It is one instance (its id names the parent's pid) whose loop was a thread or task of the
    # parent; carrying it over would report two processes as one. Each worker starts its own
    # Follower after the fork (gunicorn post_fork / post_worker_init, an ASGI lifespan), as the
    # web demo does; the child is told so rather than left believing it follows.
    def _forked_error(self) -> HotswapError:
        return HotswapError(
            f"follower {self.instance!r} was started in process {self._forked_from} before this "
            f"process (pid {os.getpid()}) was forked from it, and does not follow here; make a "
            "new Follower in each worker after the fork (gunicorn post_fork, an ASGI lifespan)",
            step="follow")

    def _before_fork(self) -> None:
        pass

    def _after_fork_in_parent(self) -> None:
        pass

    def _after_fork_in_child(self) -> None:
        if self._forked_from is not None or self._done.is_set():
            return  # forked once already, or stopped: nothing follows anyway
        self._forked_from = self._pid
        for event in (self._stop, self._live, self._done):
            forks.reset_lock(event)
        forks.reset_lock(self._status_lock)
        self._stop.set()
        self._live.set()
        self._done.set()
        self._thread = None
        self._task = self._loop = None
        logger.warning("%s", self._forked_error())

    def _run(self) -> None:
        try:
            self._boot()
            while not self._stop.is_set():
                try:
                    target = self._poll()
                    if target is not None:
                        self._apply(target)
                except Exception as exc:  # never stop following: log, back off, look again
                    self._unexpected(exc)
        finally:
            self._done.set()

    async def _arun(self) -> None:
        import asyncio

        try:
            await asyncio.to_thread(self._boot, False)
            if self._boot_target is not None:
                await self._aapply(self._boot_target)
            while not self._stop.is_set():
                try:
                    target = await asyncio.to_thread(self._poll)
                    if target is not None:
                        await self._aapply(target)
                except Exception as exc:
                    await asyncio.to_thread(self._unexpected, exc)
        finally:
            self._done.set()

    def _unexpected(self, exc: Exception) -> None:
        logger.error("follower %s: unexpected %s: %s; keeps serving and looks again",
                     self.instance, type(exc).__name__, exc, exc_info=exc)
        self._look = True
        self._stop.wait(self._backoff)
        self._backoff = min(self._backoff * 2, _BACKOFF_MAX)

    _boot_target: Release | None = None

    def _boot(self, apply: bool = True) -> None:
        """At start-up with the channel away: the last release from the cache, if any."""
        try:
            self.channel.current()
            return
        except Exception as exc:  # away, refusing, or broken: the cache is the way to start
            self._problem(exc)
        last = self._load_last()
        if last is None:
            return
        logger.warning("follower %s: channel %s is away; loading revision %d from the cache %s",
                       self.instance, self.channel.url, last.revision, self.cache_dir)
        if apply:
            self._apply(last)
        else:
            self._boot_target = last

    def _poll(self) -> Release | None:
        """Report when due, look at the channel once; the release to apply, if any."""
        now = time.monotonic()
        if now >= self._next_report:
            self._report()
        try:
            if self._look:
                release = self.channel.current()
                self._look = False
            else:
                wait = max(0.0, min(_LOOK, self._next_report - time.monotonic()))
                if wait == 0.0:
                    return None
                changed = self.channel.wait_for_change(self._seen, wait)
                if changed is None:
                    return None
                release = changed
            self._seen = release.revision if release is not None else None
            wanted = target_revision(release, self.instance)
            if wanted is None and self._attempted is None and self._state == "updating":
                self._state = "ok"   # nothing is meant for this instance yet: idle, not busy
                self._report()
            if wanted is None or wanted == self._running_revision() or wanted == self._failed:
                return None
            target = release if wanted == self._seen else self.channel.release(wanted)
            assert target is not None
            self._backoff = _BACKOFF_FIRST
            self._last_problem = ""
            return target
        except (ChannelError, OSError) as exc:  # OSError: a folder channel's file system
            self._problem(exc)
            self._look = True
            self._stop.wait(self._backoff)
            self._backoff = min(self._backoff * 2, _BACKOFF_MAX)
            return None

    def _problem(self, exc: Exception) -> None:
        text = str(exc)
        if text != self._last_problem:  # once per problem, not once per retry
            logger.warning("follower %s: %s; keeps serving and retries", self.instance, text)
            self._last_problem = text

    def _apply(self, target: Release) -> None:
        if not self._begin(target):
            return
        with self._beating():
            try:
                folder = self._materialise(target)
                if folder is not None:
                    self._swap(folder)
            except ChannelUnavailable as exc:
                self._away(exc)
            except Exception as exc:
                self._failure(target, exc)
            else:
                self._success(target)

    @contextlib.contextmanager
    def _beating(self) -> Iterator[None]:
        """Report every heartbeat while a release is being applied: a load or ``self_test``
        longer than three heartbeats is an instance at work (``updating``), not a dead one
        (``stale``, which ``status`` and ``rollout`` ignore)."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.heartbeat):
                with self._report_lock:      # never after the outcome's own report
                    if done.is_set() or self._stop.is_set():
                        return
                    self._report()

        threading.Thread(target=beat, name=f"hotswap-follower-beat-{self.instance}",
                         daemon=True).start()
        try:
            yield
        finally:
            done.set()   # not joined: a report in progress may wait on the channel

    async def _aapply(self, target: Release) -> None:
        import asyncio

        if not await asyncio.to_thread(self._begin, target):
            return
        with self._beating():
            try:
                folder = await asyncio.to_thread(self._materialise, target)
                if folder is not None:
                    previous = self.swapper.plugin_dir
                    self.swapper.reset_plugin_dir(folder)
                    try:
                        await self.swapper.areload(self.data)
                    except BaseException:
                        self.swapper.reset_plugin_dir(previous)
                        raise
            except ChannelUnavailable as exc:
                await asyncio.to_thread(self._away, exc)
            except Exception as exc:
                await asyncio.to_thread(self._failure, target, exc)
            else:
                await asyncio.to_thread(self._success, target)

    def _begin(self, target: Release) -> bool:
        self._attempted = target.revision
        running = self._running
        if running is not None and _same_set(running, target):
            self._success(target)  # same artifacts (a cohort step, a rollback to them)
            return False
        self._state, self._error = "updating", None
        self._report()
        return True

    def _swap(self, folder: Path) -> None:
        previous = self.swapper.plugin_dir
        self.swapper.reset_plugin_dir(folder)
        try:
            self.swapper.prepare(self.data).commit()
        except BaseException:
            self.swapper.reset_plugin_dir(previous)
            raise

    def _success(self, target: Release) -> None:
        first = self._running is None
        self._running = target
        self._failed = None
        self._state, self._error = "ok", None
        with contextlib.suppress(OSError):
            self._save_last(target)
        with contextlib.suppress(OSError):
            self._prune(target)
        if first:
            logger.info("follower %s: revision %d is live", self.instance, target.revision)
        self._report()
        self._live.set()

    def _failure(self, target: Release, exc: Exception) -> None:
        self._failed = target.revision
        self._state, self._error = "failed", str(exc) or type(exc).__name__
        logger.error("follower %s: revision %d failed, revision %s keeps serving: %s",
                     self.instance, target.revision, self._running_revision(), self._error)
        self._report()

    def _away(self, exc: ChannelUnavailable) -> None:
        """The channel went away in the middle (a NATS node lost, a server restarting): not the
        release's fault, so it is not marked failed; read the channel again after a backoff."""
        self._problem(exc)
        self._look = True
        self._stop.wait(self._backoff)
        self._backoff = min(self._backoff * 2, _BACKOFF_MAX)

    def _running_revision(self) -> int | None:
        return self._running.revision if self._running is not None else None

    # -- the cache --------------------------------------------------------------------------
    def _materialise(self, release: Release) -> Path:
        """The folder of exactly ``release``'s artifacts, each checked against its sha256.

        The workers of a host share ``cache_dir``: a complete folder is used as it is (another
        worker may be loading from it right now), and only one worker at a time makes or
        repairs one, under an ``flock`` on ``cache_dir/.sets.lock``. So of two workers that
        both find the folder missing or damaged, the second to get the lock finds the folder
        the first completed and uses it: nothing is ever replaced under a reader, and no
        rename races another."""
        store = self.cache_dir / "artifacts"
        store.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for name, ref in sorted(release.artifacts.items()):
            paths[name] = self._cached(store, ref)
        folder = self.cache_dir / "sets" / _set_key(release)
        if self._folder_holds(folder, release):
            os.utime(folder)
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.cache_dir / ".sets.lock"):
            if self._folder_holds(folder, release):  # another worker made it meanwhile
                os.utime(folder)
                return folder
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
            try:
                for name, ref in release.artifacts.items():
                    try:
                        os.link(paths[name], tmp / ref.file)
                    except OSError:
                        shutil.copyfile(paths[name], tmp / ref.file)
                if os.path.lexists(folder):
                    # damaged (a file removed or changed by hand, a disk error): move it aside
                    # in one rename, never delete it in place, then put ours there
                    logger.warning("follower %s: release folder %s does not hold revision %d's "
                                   "artifacts; replacing it", self.instance, folder,
                                   release.revision)
                    aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
                    os.rename(folder, aside / "set")
                    os.rename(tmp, folder)
                    shutil.rmtree(aside, ignore_errors=True)
                else:
                    os.rename(tmp, folder)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return folder

    def _cached(self, store: Path, ref: ArtifactRef) -> Path:
        path = store / f"{ref.sha256}.hsp"
        try:
            found = sha256_file(path)
        except FileNotFoundError:  # not fetched yet (or another worker is replacing it)
            found = None
        if found == (ref.sha256, ref.size):
            # never touched (no utime): the file is hard-linked into set folders that other
            # workers' swappers may be reading right now, and a changed mtime/ctime makes the
            # reader refuse it as "changed while it was read"; _prune keeps linked files
            return path
        if found is not None:
            logger.warning("follower %s: cached %s does not match its sha256; fetching it again",
                           self.instance, path)
        # written to a temporary name and renamed over ``path``: a worker racing us for the
        # same artifact ends with the same checked bytes, and a set folder linking the damaged
        # file keeps its own inode until it is repaired
        return self.channel.fetch_artifact(ref, path)

    def _prune(self, running: Release) -> None:
        """Remove what ``running`` does not use and nobody touched for ``CACHE_KEEP_S``."""
        cutoff = time.time() - CACHE_KEEP_S
        keep = {_set_key(running), *(f"{r.sha256}.hsp" for r in running.artifacts.values())}
        for kind in ("sets", "artifacts"):
            try:
                entries = list(os.scandir(self.cache_dir / kind))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name in keep or entry.name.startswith("."):
                    continue
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    # an artifact still linked from a set folder is in use (sets are pruned first)
                    if st.st_mtime >= cutoff or (kind == "artifacts" and st.st_nlink > 1):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)

    @staticmethod
    def _folder_holds(folder: Path, release: Release) -> bool:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return False
        if names != sorted(ref.file for ref in release.artifacts.values()):
            return False
        return all(sha256_file(folder / ref.file) == (ref.sha256, ref.size)
                   for ref in release.artifacts.values())

    def _last_path(self) -> Path:
        return self.cache_dir / "last" / f"{self.channel.name or 'channel'}.json"

    def _save_last(self, release: Release) -> None:
        path = self._last_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(release.to_json()).encode())

    def _load_last(self) -> Release | None:
        path = self._last_path()
        try:
            return Release.from_json(path.read_bytes(), where=str(path))
        except FileNotFoundError:
            return None
        except (OSError, ChannelError) as exc:
            logger.warning("follower %s: ignoring the cached release %s: %s", self.instance,
                           path, exc)
            return None

    # -- reports ----------------------------------------------------------------------------
    def _make_status(self) -> InstanceStatus:
        manager = self.swapper.current()
        plugins = {p.name: {"build_id": p.build_id, "sha256": p.sha256 or ""}
                   for p in manager.plugins()} if manager is not None else {}
        alive, pending = self.swapper._census()
        return InstanceStatus(
            instance=self.instance, host=self.host, pid=os.getpid(), labels=dict(self.labels),
            channel=self.channel.name, revision=self._running_revision(),
            attempted=self._attempted, state=self._state, error=self._error,
            heartbeat=self.heartbeat, plugins=plugins, versions_alive=alive,
            pending_free=pending, reloads=self.swapper.reload_counter, updated=_now_iso(),
            hotswap=_HOTSWAP_VERSION)

    def _report(self) -> None:
        # one report at a time (the loop's and _beating's), each written after it was made,
        # so the channel never ends on an older one
        with self._report_lock:
            status = self._make_status()
            with self._status_lock:
                self._status = status
            self._next_report = time.monotonic() + self.heartbeat
            try:
                self.channel.report(status.to_json())
            except (ChannelError, OSError) as exc:
                self._problem(exc)


_HOTSWAP_VERSION = _hotswap_version()


def _same_set(a: Release, b: Release) -> bool:
    return ({n: r.sha256 for n, r in a.artifacts.items()}
            == {n: r.sha256 for n, r in b.artifacts.items()})
