"""``PluginManagerSwapper``: load, reload and free plugin versions in a running host.

Design note on locking: one ``threading.Lock`` (``_reload_lock``) serialises loads, reloads
and ``close``; a load builds its whole manager off to the side and publishes it with a single
attribute store, so ``current()`` is one attribute read that never waits and never sees a
half-initialised manager. Bookkeeping shared with the freer thread (reference counts, pending
frees, freed versions) sits under a second, short-held lock (``_state_lock``), so a free never
waits for a reload to finish.

Design note on the layout: this module is the public API and the locking; which plugins a
load takes fresh or carries over is ``selection`` (one rule, shared with ``plan()``), running
the lifecycle over them is ``assembly``, and when and how replaced versions are freed is
``freeing``.

Design note on staging: every load is ``_prepare`` (lock, build the manager off to the side)
then ``PreparedReload.commit`` (the swap) or ``abort``; see ``staged`` for the lock hand-over.

Failure changes nothing: each step of a load may raise; ``assembly.discard`` then runs
``on_free`` for the fresh versions whose ``on_load`` ran (reverse order), prunes every fresh
version of the attempt, and the error is re-raised before anything was published.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

from . import doctor, forks
from . import guard as guarding
from .assembly import Callback, assemble, discard
from .errors import HotswapError
from .freeing import FreePolicy, Pending
from .inflight import note_loop, scan
from .leases import Lease
from .leases import take as take_lease
from .manager import Details, PluginManager
from .ondisk import RuntimeFolder
from .selection import list_artifacts, plan_folder, static_versions, versions_for_load
from .signing import load_trusted_keys
from .staged import PreparedReload, Staged
from .static import StaticPlugin
from .version import Version, next_load_number
from .yielding import for_event_loop, prompt_gil

if TYPE_CHECKING:
    import asyncio

__all__ = ["PluginManagerSwapper", "VersionStats"]

#: longest a load waits for a free in progress (on_free, pruning) before it goes ahead anyway
FREE_WAIT = 2.0


@final
@dataclass(frozen=True)
class VersionStats:
    """One version the swapper knows of, as ``swapper.stats()`` reports it.

    Attributes:
        plugin: the plugin name.
        build_id: the manifest's build id ("" when statically linked).
        load: the load sequence number (part of the version's module names).
        state: ``current`` (used by the current manager), ``pending free`` (only by replaced
            managers whose free is pending) or ``freed`` (freed, yet some of its modules,
            classes or functions are still referenced).
        managers: how many managers use it.
        in_flight: threads, tasks and awaitables running its code now (its own workers
            included; see ``inflight``).
        threads: names of live threads running its code (or started on it).
        tasks: names of pending asyncio tasks running its code.
        leases: names of the leases pinning it (README "Sessions pinned to a version"), oldest first.
        referrers: with ``stats(explain=True)``, for a freed version still alive, up to 5
            chains from a module-level global of the host down to what holds it, such as
            ``host_app.cache['job'] -> <Job of world#3>``; otherwise empty.
    """

    plugin: str
    build_id: str
    load: int
    state: str
    managers: int
    in_flight: int = 0
    threads: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    leases: tuple[str, ...] = ()
    referrers: tuple[str, ...] = ()


@final
class PluginManagerSwapper:
    """Holds the current ``PluginManager`` of a host and replaces it atomically.

    Args:
        plugin_dir: folder of ``<name>.hsp`` artifacts (not searched recursively); every other
            argument is keyword-only.
        logger: where to log; default ``logging.getLogger("hotswap")``.
        free_delay: seconds (>= 0) between a reload and the freeing of the versions it replaced.
        reload_callback: ``fn(new_manager, old_manager)`` run on every load before the swap;
            raising aborts the load.
        extension_factory: ``fn()`` making the ``vault.extension`` of each new manager.
        static_plugins: ``HOTSWAP_STATIC_PLUGINS`` from static linking; turns on static
            linking mode (``reload`` refuses).
        whitelist: names of the plugins to load (case-insensitive); all others are ignored.
        guard: a debug aid: True logs a warning for each argument of ``invoke_func`` /
            ``invoke_each`` (and each item of a top-level list, tuple, set or dict value) whose
            class comes from another version of the callee's plugin; ``"strict"`` raises
            ``HotswapError`` instead and calls nothing. False (the default) costs nothing.
        free_timeout: seconds (>= 0) after ``free_delay`` that a replaced version waits for
            its code in flight (threads, tasks, pending awaitables) before it is freed anyway,
            with a warning.
        trusted_keys: Ed25519 public keys (paths of ``KEYFILE.pub`` files, or PEM bytes); when
            given, only artifacts signed by one of them load (see ``signing``).
        runtime_dir: the folder holding each loaded version's files on disk (``__file__`` of
            its modules; see ``ondisk``); created if missing; default a private folder under
            the system temp directory. What a killed host left there is swept at construction.
        map_sources: a development aid: a module whose source is byte-identical to the file
            the build read runs with that file's path as its ``co_filename``, so breakpoints set
            on the plugin's own sources (debugpy, pdb) hit in hot-loaded versions.

    Raises:
        HotswapError: ``runtime_dir`` cannot be created or written (the message names it), or
            a trusted key cannot be read.
        ValueError: ``free_delay`` or ``free_timeout`` is negative, or ``guard`` is not one
            of False, True, ``"strict"``.
        TypeError: ``whitelist`` is a single str instead of an iterable of names, or holds
            something that is not a str.
        HotswapError: a trusted key is unreadable or malformed, or the ``sign`` extra that
            checking signatures needs is not installed.
    """

    def __init__(
        self,
        plugin_dir: str | os.PathLike[str],
        *,
        logger: logging.Logger | None = None,
        free_delay: float = 300.0,
        reload_callback: Callback | None = None,
        extension_factory: Callable[[], Any] | None = None,
        static_plugins: Mapping[str, StaticPlugin] | None = None,
        whitelist: Iterable[str] | None = None,
        guard: guarding.GuardMode = False,
        free_timeout: float = 3600.0,
        trusted_keys: Iterable[str | os.PathLike[str] | bytes] | None = None,
        runtime_dir: str | os.PathLike[str] | None = None,
        map_sources: bool = False,
    ) -> None:
        if free_delay < 0:
            raise ValueError(f"free_delay must be >= 0, not {free_delay!r}")
        if free_timeout < 0:
            raise ValueError(f"free_timeout must be >= 0, not {free_timeout!r}")
        self._free_timeout = float(free_timeout)
        self._plugin_dir = os.fspath(plugin_dir)
        self._logger = logger if logger is not None else logging.getLogger("hotswap")
        self._free_delay = float(free_delay)
        self._guard = guarding.check_guard_mode(guard)
        self._reload_callback = reload_callback
        self._extension_factory = extension_factory
        self._static = dict(static_plugins) if static_plugins is not None else None
        self._whitelist: list[str] | None = None
        if isinstance(whitelist, str):
            # a bare str is an iterable of one-letter names: never what the caller meant
            raise TypeError(f"whitelist must be an iterable of plugin names, not the str "
                            f"{whitelist!r}; write whitelist=[{whitelist!r}]")
        if whitelist is not None:
            self._whitelist = list(dict.fromkeys(whitelist))
            odd = [name for name in self._whitelist if not isinstance(name, str)]
            if odd:
                raise TypeError(f"whitelist entries must be plugin names (str), not {odd[0]!r}; "
                                "pass the names of the plugins to load")
        # loaded once, here: a bad key fails the constructor, not some later reload
        self._trusted_keys = load_trusted_keys(trusted_keys) if trusted_keys is not None else None
        self._map_sources = bool(map_sources)
        # static plugins are the host's own files: only artifacts need a runtime folder
        self._disk = RuntimeFolder(runtime_dir, self._logger) if self._static is None else None
        if self._disk is not None:
            # a swapper dropped without close() still removes its folder (at exit at the latest)
            weakref.finalize(self, self._disk.close)
        self._current: PluginManager | None = None
        self._reload_lock = threading.Lock()
        self._owner: int | None = None  # thread id holding the reload lock
        self._frees = FreePolicy(self._logger, self._free_delay, self._free_timeout)
        self._on_unleased = self._unleased  # bound once: every lease's release calls it
        self._state_lock = self._frees.lock  # reference counts and pending frees
        self._loaded = False
        self._closed = False
        # run by close() before it takes the reload lock (fleet followers stop there; a
        # follower mid-reload needs that lock to finish)
        self._close_hooks: list[Callable[[], None]] = []
        self._reload_counter = 0
        forks.track(self)  # the reload lock in a forked child (the freer tracks itself)

    # -- public API -------------------------------------------------------------------------
    @property
    def reload_counter(self) -> int:
        """Successful reloads after the first load (rollbacks included)."""
        return self._reload_counter

    @property
    def logger(self) -> logging.Logger:
        """The logger this swapper reports to (``logger=``, or ``logging.getLogger("hotswap")``);
        the triggers of ``hotswap_runtime.triggers`` log there too."""
        return self._logger

    @property
    def static_linking_mode(self) -> bool:
        """True when the swapper was given ``static_plugins``."""
        return self._static is not None

    @property
    def plugin_dir(self) -> str:
        """The folder the next load reads artifacts from (see ``reset_plugin_dir``)."""
        return self._plugin_dir

    def current(self) -> PluginManager | None:
        """The current manager, or None before the first load; never blocks."""
        return self._current

    def load_plugins(self, data: Any = None) -> Details:
        """Load the plugins for the first time.

        Raises:
            HotswapError: the swapper is closed, already loaded (use ``reload``), or the load
                failed (nothing changed).
        """
        return self._prepare(data, None, "load").commit()

    def reload(self, data: Any = None) -> Details:
        """Load the plugins again, replacing the current manager; before any load, load them.

        Same as ``prepare(data).commit()``.

        Raises:
            HotswapError: the swapper is closed, static linking mode, or the reload failed
                (nothing changed).
        """
        return self._prepare(data, None, "reload").commit()

    def reload_with_callback(self, data: Any, extra: Callback | None) -> Details:
        """Like ``reload``; ``extra(new_manager, old_manager)`` runs after the configured callback.

        Raises:
            HotswapError: the swapper is closed, static linking mode, or the reload failed
                (nothing changed).
        """
        return self._prepare(data, extra, "reload").commit()

    def prepare(self, data: Any = None) -> PreparedReload:
        """Run every step of a reload except the swap, and hold the reload lock until
        ``commit()`` or ``abort()`` (other loads wait; any thread may commit or abort).

        ``with swapper.prepare(data) as p: ...`` aborts when the block is left without commit.

        Raises:
            HotswapError: the swapper is closed, static linking mode, or the reload failed
                (nothing changed).
        """
        return self._prepare(data, None, "reload")

    def rollback(self) -> Details:
        """Make the manager that the last reload replaced current again; one reference swap.

        Runs no hook (those versions never stopped), counts as a reload for
        ``reload_counter`` (a second ``rollback()`` returns to where the first started), logs
        at warning and schedules the manager it replaced for freeing like any reload. Details
        say ``rolled back`` for each plugin whose version changed, ``unchanged`` for the rest.

        Raises:
            HotswapError: no reload replaced a manager yet, or ``free_delay`` has passed since
                (its versions are freed or being freed), or the swapper is closed.
        """
        with self._locked():
            self._refuse_if_closed("rollback")
            with self._state_lock:
                entry = self._frees.last_replaced
                if entry is None:
                    raise HotswapError("nothing to roll back to: no reload has replaced a "
                                       "manager yet", step="rollback")
                target = entry.manager
                if entry.done or entry.expired or target is None:
                    raise HotswapError(
                        "nothing to roll back to: the versions the last reload replaced were "
                        f"freed ({self._free_delay:g} s free_delay has passed); rebuild the "
                        "old code and reload, or raise free_delay to keep them longer",
                        step="rollback")
                old = self._current
                assert old is not None
                entry.done = True  # the freer's queue may still hold it: make that a no-op
                entry.manager = None
                self._frees.pending.remove(entry)
                self._reload_counter += 1
                self._current = target
                replaced = self._frees.replaced(old)
                for version in target._versions():
                    version.state = "current"
            self._frees.schedule(replaced)
            before = {id(v) for v in old._versions()}
            details = Details(
                (plugin.file, plugin.name,
                 "unchanged" if id(plugin._version) in before else "rolled back")
                for plugin in target.plugins()
            )
            self._logger.warning("rolled back plugins: %s", details)
            return details

    def plan(self) -> dict[str, str]:
        """Dry run of ``reload()``: what each plugin would become; no module imported, no hook.

        Returns artifact path (or, for a running plugin whose artifact has gone, its name) ->
        ``ok``, ``unchanged``, ``not reloadable``, ``re-wired``, ``dropped`` or
        ``error: <why>``. It reads and verifies the artifacts only, so it knows the
        dependencies of the *running* versions (their ``import_`` ran) but not those of fresh
        artifacts (``import_`` has not run): ``re-wired`` marks running dependents of a plugin
        that would get a fresh version; what a fresh version will import is known only once
        it loads. A failing ``self_test``, hook or import is likewise found only by
        ``prepare()``/``reload()``.

        Raises:
            HotswapError: the folder cannot be read, or static linking mode.
        """
        if self._static is not None:
            raise HotswapError("running under static linking mode: nothing to reload",
                               step="plan")
        return plan_folder(self._plugin_dir, self._whitelist, self._current, self._trusted_keys)

    async def areload(self, data: Any = None) -> Details:
        """``reload`` in a worker thread, so the running event loop keeps serving meanwhile.

        Every step of the reload (imports and hooks included) runs in that thread.

        Raises:
            HotswapError: as ``reload``.
        """
        note_loop()
        import asyncio  # the host runs a loop, so this costs nothing

        loop = asyncio.get_running_loop()
        return await asyncio.to_thread(self._reload_for_loop, data, loop)

    def _reload_for_loop(self, data: Any, loop: asyncio.AbstractEventLoop) -> Details:
        """``reload`` in ``areload``'s worker: the reader and importer may yield to the loop,
        and the free of the manager it replaces waits for the loop to resume."""
        with for_event_loop(), self._frees.handed_to(loop):
            return self.reload(data)

    def reset_plugin_dir(self, new_dir: str | os.PathLike[str]) -> None:
        """Load from ``new_dir`` from the next load on."""
        self._plugin_dir = os.fspath(new_dir)

    def close(self) -> None:
        """Free everything now: every pending free, then the current manager; later loads refuse.

        Runs every ``on_free`` (reverse dependency order) in the calling thread; afterwards
        ``current()`` returns None and ``load_plugins``/``reload`` raise ``HotswapError``.
        Fleet followers of this swapper (``hotswap_runtime.fleet.Follower``) stop first.
        """
        for hook in list(self._close_hooks):
            try:
                hook()
            except Exception:
                self._logger.exception("stopping a follower of the swapper failed")
        with self._locked():
            if self._closed:
                return
            self._closed = True
            self._frees.stop()
            with self._state_lock:
                pending = list(self._frees.pending)
            for entry in pending:
                self._frees.release(entry)
            current = self._current
            self._current = None
            if current is not None:
                self._frees.release(Pending(current))
            if self._disk is not None:
                self._disk.close()

    def lease(self, name: str) -> Lease:
        """Pin the current manager for a session that must finish on the code it started with.

        While the lease is held, no version of its manager is freed, whatever ``free_delay``
        says (``free_timeout`` still caps it, with a warning naming the lease); new sessions
        get whatever is current. Use it as ``with swapper.lease("match 42") as manager: ...``,
        or keep the ``Lease`` across callbacks and call ``lease.release()`` (idempotent).
        Costs about a microsecond and takes no lock that a reload holds: it never waits for a
        reload in progress.

        Raises:
            TypeError: ``name`` is not a str.
            HotswapError: no plugins are loaded yet, or the swapper is closed.
        """
        if not isinstance(name, str):
            raise TypeError(f"a lease name must be a str, not {type(name).__name__} {name!r}; "
                            "name the session, such as 'ws 10.0.0.7:5531'")
        lease = take_lease(self, name, self._on_unleased)
        if lease is None:
            if self._closed:
                raise HotswapError("the swapper is closed; create a new PluginManagerSwapper",
                                   step="lease")
            raise HotswapError(f'no plugins loaded yet: cannot lease "{name}"; call '
                               "load_plugins() before taking a lease", step="lease")
        return lease

    def leases(self) -> list[Lease]:
        """Every lease held now, oldest first (``lease.manager``, ``lease.versions``)."""
        managers: list[PluginManager] = []
        current = self._current
        if current is not None:
            managers.append(current)
        managers.extend(entry.manager for entry in list(self._frees.pending)
                        if entry.manager is not None)
        # a lease released meanwhile (by another thread) is skipped: it names no manager now
        held = [lease for manager in dict.fromkeys(managers) for lease in list(manager._leases)
                if lease._manager is not None]
        held.sort(key=lambda lease: lease._time)
        return held

    def _unleased(self, lease: Lease, manager: PluginManager) -> None:
        """A lease was released: the last one of a replaced manager makes its free due."""
        manager._leases.pop(lease, None)
        if not manager._leases and manager is not self._current:
            self._frees.unleased(manager)

    def stats(self, explain: bool = False) -> list[VersionStats]:
        """Every version alive: current, pending free, and freed but still referenced.

        Oldest first. Freed versions are followed through weak references, without running
        ``gc``; a version shows as ``freed`` until its last module, class and function are gone.
        ``in_flight``, ``threads`` and ``tasks`` come from one in-flight search (thread stacks,
        the tasks of every running event loop, found on those stacks and read from here, and
        the awaitables the versions made that are still pending) and cost a few milliseconds;
        ``leases`` names the leases pinning each version.

        Args:
            explain: first collect garbage, then fill each freed version's ``referrers`` with
                the chains that keep it alive (a walk of the heap: for debugging, not for
                every request).
        """
        # a free that is due (free_delay has passed) or in progress: let it run first, so its
        # versions show as freed (or still pending, code in flight), never as nothing
        self._frees.wait_due(FREE_WAIT)
        if explain:
            gc.collect()
        current = self._current
        in_current = {id(v) for v in current._versions()} if current is not None else set()
        seen: dict[int, Version] = {}
        with self._state_lock:
            for entry in self._frees.pending:
                if entry.manager is not None:
                    for v in entry.manager._versions():
                        seen[id(v)] = v
            self._frees.freed = [v for v in self._frees.freed if v.alive()]
            freed = list(self._frees.freed)
        if current is not None:
            for v in current._versions():
                seen[id(v)] = v
        everything = [*seen.values(), *freed]
        flying = scan(everything)
        pinned: dict[int, list[str]] = {}
        for lease in self.leases():
            leased = lease._manager  # None: released since leases() listed it
            for plugin in leased.plugins() if leased is not None else ():
                pinned.setdefault(id(plugin._version), []).append(lease.name)
        out: list[VersionStats] = []
        for v in everything:
            if id(v) in in_current:
                state = "current"
            elif v.state == "freed":
                state = "freed"
            else:
                state = "pending free"
            f = flying[id(v)]
            out.append(VersionStats(v.name, v.build_id, v.load, state, v.managers, f.total,
                                    tuple(dict.fromkeys([*f.threads, *f.own_threads])),
                                    tuple(dict.fromkeys([*f.tasks, *f.own_tasks])),
                                    tuple(pinned.get(id(v), ()))))
        out.sort(key=lambda s: (s.load, s.plugin.lower()))

        if explain and freed:  # (plugin, load) names one version
            chains = {(v.name, v.load): found for v, found in zip(freed, doctor.explain(freed), strict=True)}
            out = [dataclasses.replace(s, referrers=chains.get((s.plugin, s.load), ()))
                   if s.state == "freed" else s for s in out]
        return out

    def _census(self) -> tuple[int, int]:
        """(versions alive, managers pending free): the cheap figures of a fleet status report,
        without ``stats()``'s in-flight search."""
        with self._state_lock:
            ids = {id(v) for entry in self._frees.pending if entry.manager is not None
                   for v in entry.manager._versions()}
            pending = len(self._frees.pending)
            freed = sum(1 for v in self._frees.freed if v.alive())
        current = self._current
        if current is not None:
            ids.update(id(v) for v in current._versions())
        return len(ids) + freed, pending

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the reload lock; refuse (rather than deadlock) when called from inside a load."""
        self._lock()
        try:
            yield
        finally:
            self._unlock()

    def _refuse_if_closed(self, step: str) -> None:
        if self._closed:
            raise HotswapError("the swapper is closed; create a new PluginManagerSwapper",
                               step=step)

    # -- fork (see ``forks``) ------------------------------------------------------------------
    def _before_fork(self) -> None:
        pass  # a reload can take long: the fork does not wait for one (the child resets it)

    def _after_fork_in_parent(self) -> None:
        pass

    def _after_fork_in_child(self) -> None:
        """A reload running in another thread at the fork has no thread to end it here: free
        its lock, or every reload of the child would wait for ever."""
        if self._reload_lock.locked() and self._owner != threading.get_ident():
            forks.reset_lock(self._reload_lock)
            self._owner = None
            self._logger.warning(
                "this process (pid %d) was forked while a reload ran in another thread: that "
                "reload does not go on here (current() is what it was before it; its partly "
                "loaded versions stay in memory); reload again in this process",
                os.getpid())

    def _lock(self) -> None:
        if self._owner == threading.get_ident():
            raise HotswapError("a load is running in this thread (or a reload prepared in it "
                               "awaits commit or abort): a hook or reload callback cannot load, "
                               "reload or close the swapper; do it after the load returns or "
                               "the prepared reload is committed or aborted", step="load")
        self._reload_lock.acquire()
        self._owner = threading.get_ident()

    def _unlock(self) -> None:
        self._owner = None
        self._reload_lock.release()

    def _prepare(self, data: Any, extra: Callback | None, kind: str) -> PreparedReload:
        note_loop()  # a load run from inside an event loop: its tasks get searched at free time
        self._lock()
        try:
            # A free running right now empties the memory of the versions it prunes: let it
            # finish before this load allocates, or the new version's objects land among the old
            # one's half-emptied arenas and the process keeps both (bench/memory.py). Bounded,
            # so an on_free that waits for a reload, or reloads itself, cannot deadlock. Inside
            # the try: a Ctrl-C during the wait must not leave the reload lock held.
            if self._frees.freeing.acquire(timeout=FREE_WAIT):
                self._frees.freeing.release()
            # closed first: "already loaded; call reload()" would send the caller to a reload
            # that refuses too
            self._refuse_if_closed("load")
            if kind == "load" and self._loaded:
                raise HotswapError("plugins are already loaded; call reload() to load them "
                                   "again", step="load")
            if kind == "reload" and self._static is not None:
                raise HotswapError("running under static linking mode", step="reload")
            with prompt_gil():
                staged = self._load(data, extra)
        except BaseException:
            self._unlock()
            raise
        return PreparedReload(staged, self._commit, self._abort, self._unlock)

    # -- loading ----------------------------------------------------------------------------
    def _load(self, data: Any, extra: Callback | None) -> Staged:
        try:
            return self._load_unlogged(data, extra)
        except HotswapError as exc:
            self._logger.error("loading plugins failed: %s", exc, exc_info=True)
            raise
        except Exception as exc:  # a failure outside any hook: still a HotswapError for callers
            self._logger.error("loading plugins failed: %s", exc, exc_info=True)
            raise HotswapError(f"loading plugins failed: {type(exc).__name__}: {exc}",
                               step="load") from exc

    def _load_unlogged(self, data: Any, extra: Callback | None) -> Staged:
        old = self._current
        running = {v.name.lower(): v for v in old._versions()} if old is not None else {}
        load = next_load_number()
        carried: dict[str, tuple[Version, str]] = {}
        paths: dict[str, str] = {}  # lower-case name -> path of its artifact in this load
        if self._static is not None:
            fresh = static_versions(self._static, self._whitelist, load)
        else:
            checked: dict[str, int] = {}
            artifacts = list_artifacts(self._plugin_dir, self._whitelist, self._trusted_keys,
                                       running=running, checked=checked)
            paths = {key: artifact.path for key, artifact in artifacts.items()}
            if not artifacts:
                self._logger.info("no plugins found in %s; keeping the current plugins",
                                  self._plugin_dir)
                return Staged(old, Details(), old, {}, swap=False)
            fresh, carried = versions_for_load(running, artifacts, load, self._logger,
                                               checked=checked, trusted_keys=self._trusted_keys)
            for version in fresh.values():
                version.disk = self._disk
                version.map_sources = self._map_sources

        def names(word: str) -> str:
            found = sorted(v.name for v, w in carried.values() if w == word)
            return ", ".join(found) or "-"

        if self._logger.isEnabledFor(logging.INFO):  # three sorts over every plugin otherwise
            self._logger.info("loading plugins: not reloadable: %s; unchanged: %s; to load: %s",
                              names("not reloadable"), names("unchanged"),
                              ", ".join(sorted(v.name for v in fresh.values())) or "-")
        try:
            manager = assemble(
                data, old, fresh, carried, paths,
                callbacks=(("reload_callback", self._reload_callback), ("extra callback", extra)),
                extension_factory=self._extension_factory, guard=self._guard,
                logger=self._logger)
        except BaseException:
            discard(fresh, self._logger)
            raise
        details = Details(
            (plugin.file, plugin.name, plugin.note) for plugin in manager.plugins()
        )
        return Staged(manager, details, old, fresh, swap=True)

    def _commit(self, staged: Staged) -> Details:
        """The swap of a prepared load, then the bookkeeping after it (reload lock held)."""
        if not staged.swap:
            self._loaded = True
            return staged.details
        manager, old = staged.manager, staged.old
        assert manager is not None
        with self._state_lock:
            for version in manager._versions():
                version.managers += 1
                version.state = "current"
            if self._loaded:  # counted before the swap: whoever sees the new manager sees it
                self._reload_counter += 1
            self._current = manager
            if old is not None:
                entry = self._frees.replaced(old)
        if old is not None:
            self._frees.schedule(entry)
        self._loaded = True
        self._logger.info("loaded plugins: %s", staged.details)
        return staged.details

    def _abort(self, staged: Staged) -> None:
        """Undo a prepared load: ``on_free`` where ``on_load`` ran, then prune what it loaded."""
        if staged.fresh:
            discard(staged.fresh, self._logger)
            self._logger.info("prepared reload aborted: %s", staged.details)
