"""Assembling a manager: the lifecycle (README "The plugin contract") run over the versions a load selected.

Design note: ``assemble`` takes the fresh versions (not yet mounted) and the carried-over ones
that ``selection`` chose, and runs the steps in the order the contract fixes: mount and import
every fresh version, ``reloadable``, ``export``, ``import_``, the dependency check and wiring,
``on_load`` in dependency order, the vault (a live name defined twice fails, naming both),
``on_init``, ``self_test``, the check that no module was planted under a fresh version's mounted
name, the guard, then the reload callbacks. It changes nothing the host can
see: the swapper publishes the manager it returns, or calls ``discard`` when any step raised, so
a failed load leaves the old manager serving.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import guard as guarding
from .deps import check_and_order, declared, wire
from .errors import HotswapError
from .freeing import run_on_free
from .importer import planted_modules, planting_error
from .manager import Plugin, PluginManager, Vault
from .version import Version

__all__ = ["Callback", "assemble", "discard"]

Callback = Callable[[PluginManager, "PluginManager | None"], Any]


def assemble(data: Any, old: PluginManager | None, fresh: Mapping[str, Version],
             carried: Mapping[str, tuple[Version, str]], paths: Mapping[str, str], *,
             callbacks: Sequence[tuple[str, Callback | None]],
             extension_factory: Callable[[], Any] | None, guard: guarding.GuardMode,
             logger: logging.Logger) -> PluginManager:
    """Run the lifecycle over ``fresh`` and ``carried`` and return the new manager (not current).

    Args:
        data: the load's ``data`` (passed to ``on_load``).
        old: the current manager, given to the callbacks as ``old_manager``.
        fresh: lower-case name -> a version to mount and run.
        carried: lower-case name -> (running version, its Details word).
        paths: lower-case name -> path of its artifact in this load (empty when static).
        callbacks: (name for errors, ``fn(new, old)`` or None), run in this order last.
        extension_factory: makes the vault's ``extension``.
        guard: the swapper's guard mode.
        logger: the swapper's logger.

    Raises:
        HotswapError: naming the plugin and step of the first failure.
    """
    ordered_fresh = [fresh[key] for key in sorted(fresh)]
    # every module under a fresh version's mounted name (unique to this load) appears in
    # sys.modules from here on: the planting check looks at the names added since, only
    before = set(sys.modules)
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
    for key, wanted in declared_by.items():
        wire(fresh[key], wanted, everything)
    fresh_set = set(ordered_fresh)  # a Version hashes by identity
    # the fresh ones in dependency order, with their position: one pass over every plugin
    fresh_order = [(index, version) for index, version in enumerate(order)
                   if version in fresh_set]
    for index, version in fresh_order:
        version.call("on_load", logger, data)
        version.on_load_index = index
    vault = Vault(*_live_tables(order), {}, _extension(extension_factory))
    if logger.isEnabledFor(logging.DEBUG):
        for version in order:
            version.call("on_init", logger, vault)
    else:
        # every plugin of the manager, carried-over ones too: a reload of 1 of 300 plugins
        # makes 300 calls, so no per-call logging check (Version.call's failure message kept)
        for version in order:
            try:
                version.hooks["on_init"](vault)
            except Exception as exc:
                raise version.hook_error("on_init", exc) from exc
    for _, version in fresh_order:
        if "self_test" in version.hooks:
            version.call("self_test", logger, vault)
    # a plugin's hooks may have planted modules under another fresh version's name since it
    # was imported (each import checked its own): one pass over sys.modules for the whole load
    planted = planted_modules((v.loader for v in ordered_fresh if v.loader is not None),
                              since=before)
    if planted:
        victim = min(planted)
        raise HotswapError(f'plugin "{victim}": {planting_error(victim, planted[victim])}',
                           plugin=victim, step="import")
    words = dict(carried.values())  # version -> its word (identity hash)
    plugins = []
    for version in order:
        word = words.get(version)
        if word is None:  # fresh
            plugins.append(Plugin(version, "ok", version.name if version.static is not None
                                  else version.file))
        else:
            # a carried-over version is reported under its artifact's current path (the
            # folder may have been reset), or its old one when the artifact has gone
            file = paths.get(version.name.lower())
            if file is None:
                file = version.name if version.static is not None else version.file
            plugins.append(Plugin(version, word, file))
    manager = PluginManager(plugins, vault, logger)
    if guard:
        guarding.install_guard(manager, guard, logger)
    for name, callback in callbacks:
        if callback is None:
            continue
        try:
            callback(manager, old)
        except Exception as exc:
            raise HotswapError(f"{name} failed: {type(exc).__name__}: {exc}",
                               step="reload_callback") from exc
    return manager


def _live_tables(order: Sequence[Version]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The vault's ``live_funcs`` and ``live_types``; a name defined twice fails, naming both."""
    live_funcs: dict[str, Any] = {}
    live_types: dict[str, Any] = {}
    owners: dict[str, str] = {}
    clashes: list[tuple[str, str]] = []  # (text, the plugin it names first)
    for version in order:
        if not version.live_funcs and not version.live_types:
            continue  # most plugins define none: no tuple and no loop for them
        for table, target in ((version.live_funcs, live_funcs), (version.live_types, live_types)):
            for live_name, value in table.items():
                if live_name in owners:
                    clashes.append((f'live name "{live_name}" is defined by plugins '
                                    f'"{owners[live_name]}" and "{version.name}"',
                                    owners[live_name]))
                else:
                    owners[live_name] = version.name
                    target[live_name] = value
    if clashes:
        clashes.sort()
        raise HotswapError(f"{'; '.join(text for text, _ in clashes)}; rename one of them",
                           plugin=clashes[0][1], step="vault")
    return live_funcs, live_types


def _extension(factory: Callable[[], Any] | None) -> Any:
    if factory is None:
        return None
    try:
        return factory()
    except Exception as exc:
        raise HotswapError(f"extension_factory failed: {type(exc).__name__}: {exc}",
                           step="extension_factory") from exc


def discard(fresh: Mapping[str, Version], logger: logging.Logger) -> None:
    """Undo a failed or aborted load: ``on_free`` where ``on_load`` ran, then prune every version."""
    ran = [v for v in fresh.values() if v.on_load_index >= 0]
    # on_load ran in dependency order; free in the reverse of it
    ran.sort(key=lambda v: v.on_load_index, reverse=True)
    for version in ran:
        run_on_free(version, logger)
    for version in fresh.values():
        version.prune()
        version.state = "discarded"
