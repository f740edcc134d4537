"""``PluginManagerSwapper``: load, reload and free plugin versions in a running host.

Design note on locking: one ``threading.Lock`` (``_reload_lock``) serialises loads, reloads
and ``close``; a load builds its whole manager off to the side and publishes it with a single
attribute store, so ``current()`` is one attribute read that never waits and never sees a
half-initialised manager. Bookkeeping shared with the freer thread (reference counts, pending
frees, freed versions) sits under a second, short-held lock (``_state_lock``), so a free never
waits for a reload to finish.

Design note on freeing: a replaced manager is released ``free_delay`` seconds after the swap by
the swapper's ``Freer`` thread (see ``freeing``). Releasing drops one reference from each of its
versions; those that reach zero (not carried over into a newer manager) run ``on_free`` in
reverse dependency order on that thread, then are pruned (see ``Version.prune``). Freed versions
are watched through weak references only, for ``stats()``.

Failure changes nothing: each step of a load may raise; the ``except`` clause of ``_load``
runs ``on_free`` for the fresh versions whose ``on_load`` ran (reverse order), prunes every
fresh version of the attempt, and re-raises before anything was published.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, final

from . import doctor
from . import guard as guarding
from .deps import check_and_order, declared, wire
from .errors import HotswapError
from .freeing import Freer, Pending
from .listing import list_artifacts
from .manager import Details, Plugin, PluginManager, Vault
from .static import StaticPlugin
from .version import Version, next_load_number

__all__ = ["PluginManagerSwapper", "VersionStats"]

Callback = Callable[[PluginManager, "PluginManager | None"], Any]


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
        referrers: with ``stats(explain=True)``, for a freed version still alive, up to 5
            chains from a module-level global of the host down to what holds it, such as
            ``host_app.cache['job'] -> <Job of world#3>``; otherwise empty.
    """

    plugin: str
    build_id: str
    load: int
    state: str
    managers: int
    referrers: tuple[str, ...] = ()


@final
class PluginManagerSwapper:
    """Holds the current ``PluginManager`` of a host and replaces it atomically.

    Args:
        plugin_dir: folder of ``<name>.hsp`` artifacts (not searched recursively).
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
    """

    def __init__(
        self,
        plugin_dir: str | os.PathLike[str],
        logger: logging.Logger | None = None,
        free_delay: float = 300.0,
        reload_callback: Callback | None = None,
        extension_factory: Callable[[], Any] | None = None,
        static_plugins: Mapping[str, StaticPlugin] | None = None,
        whitelist: Iterable[str] | None = None,
        guard: guarding.GuardMode = False,
    ) -> None:
        if free_delay < 0:
            raise ValueError(f"free_delay must be >= 0, not {free_delay!r}")
        self._plugin_dir = os.fspath(plugin_dir)
        self._logger = logger if logger is not None else logging.getLogger("hotswap")
        self._free_delay = float(free_delay)
        self._guard = guarding.check_guard_mode(guard)
        self._reload_callback = reload_callback
        self._extension_factory = extension_factory
        self._static = dict(static_plugins) if static_plugins is not None else None
        self._whitelist: list[str] | None = None
        if whitelist is not None:
            self._whitelist = list(dict.fromkeys(whitelist))
        self._current: PluginManager | None = None
        self._reload_lock = threading.Lock()
        self._owner: int | None = None  # thread id holding the reload lock
        self._state_lock = threading.Lock()
        self._pending: list[Pending] = []
        self._freed: list[Version] = []
        self._freer = Freer(self._release, self._logger)
        self._loaded = False
        self._closed = False
        self.reload_counter = 0
        """Successful reloads after the first load."""

    # -- public API -------------------------------------------------------------------------
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
            HotswapError: already loaded (use ``reload``), or the load failed (nothing changed).
        """
        with self._locked():
            if self._loaded:
                raise HotswapError("plugins are already loaded; call reload() to load them again",
                                   step="load")
            return self._load(data, None)

    def reload(self, data: Any = None) -> Details:
        """Load the plugins again, replacing the current manager; before any load, load them.

        Raises:
            HotswapError: static linking mode, or the reload failed (nothing changed).
        """
        return self.reload_with_callback(data, None)

    def reload_with_callback(self, data: Any, extra: Callback | None) -> Details:
        """Like ``reload``; ``extra(new_manager, old_manager)`` runs after the configured callback.

        Raises:
            HotswapError: static linking mode, or the reload failed (nothing changed).
        """
        with self._locked():
            if self._static is not None:
                raise HotswapError("running under static linking mode", step="reload")
            return self._load(data, extra)

    async def areload(self, data: Any = None) -> Details:
        """``reload`` in a worker thread, so the running event loop keeps serving meanwhile.

        Every step of the reload (imports and hooks included) runs in that thread.
        """
        return await asyncio.to_thread(self.reload, data)

    def reset_plugin_dir(self, new_dir: str | os.PathLike[str]) -> None:
        """Load from ``new_dir`` from the next load on."""
        self._plugin_dir = os.fspath(new_dir)

    def close(self) -> None:
        """Free everything now: every pending free, then the current manager; later loads refuse.

        Runs every ``on_free`` (reverse dependency order) in the calling thread; afterwards
        ``current()`` returns None and ``load_plugins``/``reload`` raise ``HotswapError``.
        """
        with self._locked():
            if self._closed:
                return
            self._closed = True
            self._freer.stop()
            with self._state_lock:
                pending = list(self._pending)
            for entry in pending:
                self._release(entry)
            current = self._current
            self._current = None
            if current is not None:
                final_entry = Pending(current)
                self._release(final_entry)

    def stats(self, explain: bool = False) -> list[VersionStats]:
        """Every version alive: current, pending free, and freed but still referenced.

        Oldest first. Freed versions are followed through weak references, without running
        ``gc``; a version shows as ``freed`` until its last module, class and function are gone.

        Args:
            explain: first collect garbage, then fill each freed version's ``referrers`` with
                the chains that keep it alive (a walk of the heap: for debugging, not for
                every request).
        """
        if explain:
            gc.collect()
        current = self._current
        in_current = {id(v) for v in current._versions()} if current is not None else set()
        seen: dict[int, Version] = {}
        with self._state_lock:
            for entry in self._pending:
                for v in entry.manager._versions():
                    seen[id(v)] = v
            self._freed = [v for v in self._freed if v.alive()]
            freed = list(self._freed)
        if current is not None:
            for v in current._versions():
                seen[id(v)] = v
        out: list[VersionStats] = []
        for v in [*seen.values(), *freed]:
            if id(v) in in_current:
                state = "current"
            elif v.state == "freed":
                state = "freed"
            else:
                state = "pending free"
            out.append(VersionStats(v.name, v.build_id, v.load, state, v.managers))
        out.sort(key=lambda s: (s.load, s.plugin.lower()))

        if explain and freed:  # (plugin, load) names one version
            chains = {(v.name, v.load): found for v, found in zip(freed, doctor.explain(freed))}
            out = [dataclasses.replace(s, referrers=chains.get((s.plugin, s.load), ()))
                   if s.state == "freed" else s for s in out]
        return out

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the reload lock; refuse (rather than deadlock) when called from inside a load."""
        if self._owner == threading.get_ident():
            raise HotswapError("a load is running in this thread: a hook or reload callback "
                               "cannot load, reload or close the swapper; do it after the load "
                               "returns", step="load")
        with self._reload_lock:
            self._owner = threading.get_ident()
            try:
                yield
            finally:
                self._owner = None

    # -- loading ----------------------------------------------------------------------------
    def _load(self, data: Any, extra: Callback | None) -> Details:
        if self._closed:
            raise HotswapError("the swapper is closed; create a new PluginManagerSwapper",
                               step="load")
        try:
            return self._load_unlogged(data, extra)
        except HotswapError as exc:
            self._logger.error("loading plugins failed: %s", exc, exc_info=True)
            raise
        except Exception as exc:  # a failure outside any hook: still a HotswapError for callers
            self._logger.error("loading plugins failed: %s", exc, exc_info=True)
            raise HotswapError(f"loading plugins failed: {type(exc).__name__}: {exc}",
                               step="load") from exc

    def _load_unlogged(self, data: Any, extra: Callback | None) -> Details:
        old = self._current
        old_versions = {v.name.lower(): v for v in old._versions()} if old is not None else {}
        load = next_load_number()
        fresh: dict[str, Version] = {}
        carried: dict[str, tuple[Version, str]] = {}
        paths: dict[str, str] = {}  # lower-case name -> path of its artifact in this load
        if self._static is not None:
            wanted = None
            if self._whitelist is not None:
                wanted = {name.lower() for name in self._whitelist}
                present = {name.lower() for name in self._static}
                missing = sorted(n for n in self._whitelist if n.lower() not in present)
                if missing:
                    quoted = ", ".join(f'"{name}"' for name in missing)
                    raise HotswapError(f"whitelisted plugins not among the static plugins: "
                                       f"{quoted}; link them statically or remove them from "
                                       "the whitelist", plugin=missing[0], step="list")
            seen_static: dict[str, str] = {}
            for name, static in sorted(self._static.items()):
                key = name.lower()
                if key in seen_static:
                    raise HotswapError(f'duplicate name: static plugins "{seen_static[key]}" '
                                       f'and "{name}" differ only in case; keep one',
                                       plugin=name, step="list")
                seen_static[key] = name
                if wanted is None or key in wanted:
                    fresh[key] = Version(static.name, load, static=static)
        else:
            artifacts = list_artifacts(self._plugin_dir, self._whitelist)
            paths = {key: artifact.path for key, artifact in artifacts.items()}
            if not artifacts:
                self._logger.info("no plugins found in %s; keeping the current plugins",
                                  self._plugin_dir)
                self._loaded = True
                return Details()
            for key, version in old_versions.items():
                if not version.reloadable:
                    carried[key] = (version, "not reloadable")
                    artifact = artifacts.get(key)
                    if artifact is None:
                        self._logger.warning('plugin "%s" is not reloadable: it stays although '
                                             "its artifact has gone", version.name)
                    elif artifact.sha256 != version.sha256:
                        self._logger.warning('plugin "%s" is not reloadable: its rebuilt '
                                             "artifact is ignored", version.name)
            for key, artifact in artifacts.items():
                if key in carried:
                    continue
                previous = old_versions.get(key)
                if (previous is not None and previous.static is None
                        and previous.build_id == artifact.build_id):
                    carried[key] = (previous, "unchanged")
                else:
                    fresh[key] = Version(artifact.name, load, artifact=artifact)
            # a plugin whose dependency gets a fresh version gets one too (re-wired)
            changed = True
            while changed:
                changed = False
                for key, (version, word) in list(carried.items()):
                    if word == "unchanged" and any(dep in fresh for dep in version.deps):
                        del carried[key]
                        fresh[key] = Version(version.name, load, artifact=artifacts[key])
                        changed = True

        def names(word: str) -> str:
            found = sorted(v.name for v, w in carried.values() if w == word)
            return ", ".join(found) or "-"

        self._logger.info("loading plugins: not reloadable: %s; unchanged: %s; to load: %s",
                          names("not reloadable"), names("unchanged"),
                          ", ".join(sorted(v.name for v in fresh.values())) or "-")
        try:
            manager = self._build(data, old, fresh, carried, extra, paths)
        except BaseException:
            self._discard(fresh)
            raise
        details = Details(
            (plugin.file, plugin.name, plugin.note) for plugin in manager.plugins()
        )
        with self._state_lock:
            for version in manager._versions():
                version.managers += 1
                version.state = "current"
            self._current = manager
            if old is not None:
                entry = Pending(old)
                self._pending.append(entry)
        if old is not None:
            self._freer.schedule(entry, self._free_delay)
        if self._loaded:
            self.reload_counter += 1
        self._loaded = True
        self._logger.info("loaded plugins: %s", details)
        return details

    def _build(self, data: Any, old: PluginManager | None, fresh: dict[str, Version],
               carried: dict[str, tuple[Version, str]], extra: Callback | None,
               paths: Mapping[str, str]) -> PluginManager:
        logger = self._logger
        ordered_fresh = [fresh[key] for key in sorted(fresh)]
        for version in ordered_fresh:
            version.mount_and_import()
        for version in ordered_fresh:
            version.reloadable = bool(version.call("reloadable", logger))
        for version in ordered_fresh:
            version.export_value = version.call("export", logger)
        for version in ordered_fresh:
            version.import_obj = version.call("import_", logger)
        declared_by = {key: declared(version) for key, version in sorted(fresh.items())}
        everything = {key: version for key, (version, _) in carried.items()}
        everything.update(fresh)
        order = check_and_order(everything, declared_by)
        for key, annotations in declared_by.items():
            wire(fresh[key], annotations, everything)
        fresh_ids = {id(v) for v in ordered_fresh}
        for index, version in enumerate(order):
            if id(version) in fresh_ids:
                version.call("on_load", logger, data)
                version.on_load_index = index
        live_funcs: dict[str, Any] = {}
        live_types: dict[str, Any] = {}
        owners: dict[str, str] = {}
        clashes: list[str] = []
        for version in order:
            for table, target in ((version.live_funcs, live_funcs), (version.live_types, live_types)):
                for live_name, value in table.items():
                    if live_name in owners:
                        clashes.append(f'live name "{live_name}" is defined by plugins '
                                       f'"{owners[live_name]}" and "{version.name}"')
                    else:
                        owners[live_name] = version.name
                        target[live_name] = value
        if clashes:
            raise HotswapError(f"{'; '.join(sorted(clashes))}; rename one of them",
                               plugin=owners and sorted(owners.values())[0], step="vault")
        extension = None
        if self._extension_factory is not None:
            try:
                extension = self._extension_factory()
            except Exception as exc:
                raise HotswapError(f"extension_factory failed: {type(exc).__name__}: {exc}",
                                   step="extension_factory") from exc
        vault = Vault(live_funcs, live_types, {}, extension)
        for version in order:
            version.call("on_init", logger, vault)
        for version in order:
            if id(version) in fresh_ids and "self_test" in version.hooks:
                version.call("self_test", logger, vault)
        notes = {id(v): "ok" for v in ordered_fresh}
        notes.update({id(v): word for v, word in carried.values()})
        # a carried-over version is reported under its artifact's current path (the folder may
        # have been reset), or its old one when the artifact has gone
        files = {id(v): v.name if v.static is not None else v.file for v in order}
        files.update({id(v): paths[v.name.lower()] for v, _ in carried.values()
                      if v.name.lower() in paths})
        manager = PluginManager([Plugin(v, notes[id(v)], files[id(v)]) for v in order], vault,
                                logger)
        if self._guard:
            guarding.install_guard(manager, self._guard, logger)
        for name, callback in (("reload_callback", self._reload_callback), ("extra callback", extra)):
            if callback is None:
                continue
            try:
                callback(manager, old)
            except Exception as exc:
                raise HotswapError(f"{name} failed: {type(exc).__name__}: {exc}",
                                   step="reload_callback") from exc
        return manager

    def _discard(self, fresh: Mapping[str, Version]) -> None:
        """Undo a failed attempt: ``on_free`` where ``on_load`` ran, then prune every version."""
        ran = [v for v in fresh.values() if v.on_load_index >= 0]
        # on_load ran in dependency order; free in the reverse of it
        ran.sort(key=lambda v: v.on_load_index, reverse=True)
        for version in ran:
            self._free_hook(version)
        for version in fresh.values():
            version.prune()
            version.state = "discarded"

    def _free_hook(self, version: Version) -> None:
        try:
            version.call("on_free", self._logger)
        except HotswapError as exc:
            self._logger.error("%s", exc, exc_info=exc)

    def _release(self, entry: Pending) -> None:
        """Drop one manager's hold on its versions and free those nobody uses any more."""
        with self._state_lock:
            if entry.done:
                return
            entry.done = True
            if entry in self._pending:
                self._pending.remove(entry)
            manager = entry.manager
            # the freer's queue may still hold the entry: drop the manager so nothing keeps it
            entry.manager = None  # type: ignore[assignment]
            doomed: list[Version] = []
            for version in reversed(manager._versions()):
                version.managers -= 1
                if version.managers <= 0:
                    version.state = "freeing"
                    doomed.append(version)
        for version in doomed:
            self._free_hook(version)
        for version in doomed:
            version.track()
            version.prune()
            version.state = "freed"
        with self._state_lock:
            self._freed.extend(doomed)
        if doomed:
            self._logger.info("freed plugin versions: %s",
                              ", ".join(f"{v.name}#{v.load}" for v in doomed))
