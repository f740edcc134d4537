"""``PluginManager``, ``Plugin``, ``Vault`` and ``Details``: what a load hands to the host.

Design note: these are built by the runtime alone (``@final``) and never change after the swap
that publishes them, so any thread may read them without a lock. The hot path is
``manager.find_plugin(name).invoke_func(...)``: ``find_plugin`` tries the exact name in a dict
before lower-casing it, and each ``Plugin`` stores its version's ``invoke_func`` as an instance
attribute, so a call through it is a plain function call.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, final

from .inflight import invoke_entry, note_loop

if TYPE_CHECKING:
    from .leases import Lease
    from .version import Version

__all__ = ["Details", "Plugin", "PluginManager", "Vault"]


@final
class Vault:
    """What every plugin of one manager shares, handed to ``on_init(vault)``.

    Attributes:
        live_funcs: live function name -> function, from every plugin of the manager.
        live_types: live type name -> class.
        data_bag: a free-form dict the plugins may fill.
        extension: what the swapper's ``extension_factory`` made for this manager, or None.
    """

    __slots__ = ("live_funcs", "live_types", "data_bag", "extension")

    def __init__(self, live_funcs: dict[str, Any], live_types: dict[str, Any],
                 data_bag: dict[str, Any] | None = None, extension: Any = None) -> None:
        self.live_funcs = live_funcs
        self.live_types = live_types
        self.data_bag = {} if data_bag is None else data_bag
        self.extension = extension

    def __repr__(self) -> str:
        return (f"Vault(live_funcs={sorted(self.live_funcs)}, live_types={sorted(self.live_types)}, "
                f"data_bag={self.data_bag!r}, extension={self.extension!r})")


@final
class Details(dict[str, str]):
    """The outcome of a load: artifact path (plugin name when static) -> ``ok``, ``unchanged``,
    ``not reloadable`` or ``rolled back``.

    ``str(details)`` reads ``"a: ok, b: unchanged"``, sorted by plugin name.
    """

    def __init__(self, entries: Iterable[tuple[str, str, str]] = ()) -> None:
        super().__init__()
        self._names: dict[str, str] = {}
        for key, name, word in entries:
            self[key] = word
            self._names[key] = name

    def plugin_name(self, key: str) -> str:
        """The plugin name of the entry ``key``."""
        return self._names.get(key, key)

    def __str__(self) -> str:
        items = sorted((self.plugin_name(key), word) for key, word in self.items())
        return ", ".join(f"{name}: {word}" for name, word in items)


@final
class Plugin:
    """One plugin version as a manager uses it.

    Attributes:
        name: the plugin name.
        file: the artifact path (the plugin name when statically linked).
        sha256: hex digest of the artifact (None when static).
        build_id: the manifest's build id ("" when static).
        when: the ``datetime`` (UTC) its version was loaded; kept when carried over.
        note: its Details word in this manager.
        deps: lower-case names of the plugins it imports.
    """

    def __init__(self, version: Version, note: str, file: str) -> None:
        self._version = version
        self.name = version.name
        self.file = file
        self.sha256 = version.sha256
        self.build_id = version.build_id
        self.when: datetime = version.when
        self.note = note
        self.deps: tuple[str, ...] = version.deps
        # shadows the method below: calling plugin.invoke_func(...) is then a direct call of
        # the version's function, with no wrapper frame
        entry = version.entry
        if entry is None:
            entry = version.entry = invoke_entry(version)
        self.invoke_func = entry  # type: ignore[method-assign]  # on purpose, above
        self._package = version.package

    def invoke_func(self, name: str, *params: Any) -> Any:  # noqa: F811  # documents the attribute
        """Call the plugin's ``invoke_func(name, *params)``; exceptions propagate."""
        return self.invoke_func(name, *params)  # never reached: the instance attribute wins

    def lookup(self, symbol: str) -> Any:
        """Return the attribute ``symbol`` of the plugin's root package.

        Raises:
            LookupError: the root package has no such attribute.
        """
        try:
            return getattr(self._package, symbol)
        except AttributeError:
            raise LookupError(f'plugin "{self.name}" has no symbol "{symbol}" in its root '
                              f"package; define it in {self.name}/__init__.py or import it "
                              "there, and rebuild") from None

    def __repr__(self) -> str:
        return f"<Plugin {self.name}#{self._version.load} {self.note}>"


@final
class PluginManager:
    """One consistent set of loaded plugins and their vault.

    Attributes:
        vault: the ``Vault`` of this manager.
    """

    def __init__(self, plugins: list[Plugin], vault: Vault, logger: logging.Logger) -> None:
        self._plugins = tuple(plugins)
        self._backward = tuple(reversed(plugins))
        self.vault = vault
        self._logger = logger
        self._by_name: dict[str, Plugin] = {}
        # leases pinning this manager, and the flag its free raises first (see ``leases``)
        self._leases: dict[Lease, None] = {}
        self._freeing = False
        for plugin in plugins:
            self._by_name[plugin.name] = plugin
            self._by_name[plugin.name.lower()] = plugin

    def find_plugin(self, name: str) -> Plugin | None:
        """The plugin called ``name`` (case-insensitive), or None."""
        try:
            return self._by_name[name]  # the exact-name fast path: one specialised subscript
        except KeyError:
            return self._by_name.get(name.lower())

    def plugins(self) -> list[Plugin]:
        """The plugins, in dependency order (dependencies first, ties by name)."""
        return list(self._plugins)

    def _each(self, order: tuple[Plugin, ...], name: str, params: tuple[Any, ...]) -> None:
        for plugin in order:
            try:
                plugin.invoke_func(name, *params)
            except Exception:
                self._logger.exception('plugin "%s": invoke_func(%r) failed', plugin.name, name)

    def invoke_each(self, name: str, *params: Any) -> None:
        """Call every plugin's ``invoke_func(name, *params)`` in order; errors are logged."""
        self._each(self._plugins, name, params)

    def invoke_each_backward(self, name: str, *params: Any) -> None:
        """Like ``invoke_each``, in reverse dependency order."""
        self._each(self._backward, name, params)

    async def _aeach(self, order: tuple[Plugin, ...], name: str, params: tuple[Any, ...]) -> None:
        note_loop()
        for plugin in order:
            try:
                result = plugin.invoke_func(name, *params)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self._logger.exception('plugin "%s": invoke_func(%r) failed', plugin.name, name)

    async def ainvoke_each(self, name: str, *params: Any) -> None:
        """Like ``invoke_each``, awaiting each result that is awaitable before the next call."""
        await self._aeach(self._plugins, name, params)

    async def ainvoke_each_backward(self, name: str, *params: Any) -> None:
        """Like ``ainvoke_each``, in reverse dependency order."""
        await self._aeach(self._backward, name, params)

    def _versions(self) -> list[Version]:
        return [plugin._version for plugin in self._plugins]

    def __repr__(self) -> str:
        return f"<PluginManager {', '.join(p.name for p in self._plugins)}>"
