"""The cross-version guard: objects of an old version reaching the code of a new one.

Design note: the guard must cost nothing when it is off, so it is not a flag tested on every
call. A swapper built with ``guard=True`` or ``guard="strict"`` calls ``install_guard`` on each
manager it builds, which replaces each ``Plugin``'s ``invoke_func`` (an instance attribute, the
version's own function) with a checking wrapper. Off, the managers are built exactly as before.

A class "comes from a version" by its ``__module__``: load 3 of plugin ``world`` lives under
``_hotswap_world_3``, so a module name tells plugin and load apart without any lookup. Only the
callee's own plugin is checked: objects of other plugins are fair game.

In ``invoke_each`` (and its backward and async twins) a warning is logged per plugin called; in
strict mode the manager's ``invoke_each`` first checks the arguments against every plugin and
raises ``HotswapError`` before calling any, rather than letting each plugin's failure be logged
and skipped as ``invoke_each`` does with errors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from .errors import HotswapError
from .importer import MOUNT_PREFIX, parse_mount_name
from .manager import Plugin, PluginManager

__all__ = ["GuardMode", "check_guard_mode", "install_guard", "check_arguments"]

GuardMode = bool | Literal["strict"]

_CONTAINERS = (list, tuple, set, frozenset)
#: types no plugin version defines: skipped at once by the fast scan
_PLAIN = frozenset({int, str, float, bool, bytes, type(None), complex})


def check_guard_mode(guard: Any) -> GuardMode:
    """Return ``guard`` when it is False, True or ``"strict"``.

    Raises:
        ValueError: any other value.
    """
    if guard is False or guard is True or guard == "strict":
        return guard
    raise ValueError(f'guard must be False, True or "strict", not {guard!r}')


def _other_load(cls: type, name: str, load: int) -> int | None:
    """The load number of another version of plugin ``name`` when ``cls`` comes from one."""
    module = cls.__module__
    if module.__class__ is not str or not module.startswith(MOUNT_PREFIX):
        return None  # the cheap test first: most classes come from the host or the stdlib
    found = parse_mount_name(module)
    if found is None or found[0] != name or found[1] == load:
        return None  # not mounted, another plugin (fair game), or this very version
    return found[1]


def _problems(plugin_name: str, load: int, func: str, params: tuple[Any, ...]) -> list[str]:
    found: list[str] = []

    def check(obj: Any, where: str) -> None:
        other = _other_load(type(obj), plugin_name, load)
        if other is not None:
            found.append(f"{where} is a {type(obj).__qualname__} of {plugin_name}#{other}")

    for index, param in enumerate(params, 1):
        check(param, f"argument {index}")
        if isinstance(param, _CONTAINERS):
            for position, item in enumerate(param):
                check(item, f"argument {index} item {position}" if not isinstance(
                    param, (set, frozenset)) else f"argument {index} (a set) item")
        elif isinstance(param, dict):
            for key, item in param.items():
                check(item, f"argument {index}[{key!r}]")
    if not found:
        return []
    return [f'guard: plugin "{plugin_name}" version {plugin_name}#{load} got in invoke_func({func!r}): '
            f"{problem}; objects of another version hold its old code: pass live data "
            "(live.wrap, then unwrap with the new class) instead"
            for problem in found]


def check_arguments(plugin: Plugin, func: str, params: tuple[Any, ...]) -> list[str]:
    """The guard's findings for calling ``plugin.invoke_func(func, *params)`` (empty: fine)."""
    version = plugin._version
    if version.static is not None:
        return []  # statically linked: no other version can exist
    return _problems(version.name, version.load, func, params)


def _guarded(plugin: Plugin, raw: Callable[..., Any], strict: bool,
             logger: logging.Logger) -> Callable[..., Any]:
    version = plugin._version
    name, load = version.name, version.load

    def foreign(cls: type) -> bool:
        return _other_load(cls, name, load) is not None

    def invoke_func(func: str, *params: Any) -> Any:
        # the fast scan decides, by class (items' classes collected at C speed); only a
        # suspect call pays for the full report
        for param in params:
            cls = type(param)
            if cls in _PLAIN:
                continue
            if foreign(cls):
                break
            if isinstance(param, _CONTAINERS):
                if any(map(foreign, set(map(type, param)) - _PLAIN)):
                    break
            elif isinstance(param, dict):
                if any(map(foreign, set(map(type, param.values())) - _PLAIN)):
                    break
        else:
            return raw(func, *params)
        problems = _problems(name, load, func, params)
        if problems:
            if strict:
                raise HotswapError("; ".join(problems), plugin=name, step="guard")
            for problem in problems:
                logger.warning("%s", problem)
        return raw(func, *params)

    invoke_func.__wrapped__ = raw  # type: ignore[attr-defined]  # functools' convention
    return invoke_func


def install_guard(manager: PluginManager, mode: GuardMode, logger: logging.Logger) -> None:
    """Make every ``invoke_func`` of ``manager``'s plugins check its arguments (see module doc).

    Statically linked plugins are left alone: no other version of them can exist.
    """
    strict = mode == "strict"
    for plugin in manager.plugins():
        if plugin._version.static is None:
            # the instance attribute, as PluginManager.__init__ sets it (no wrapper frame)
            plugin.invoke_func = _guarded(  # type: ignore[method-assign]  # see the comment above
                plugin, plugin.invoke_func, strict, logger)
    if strict:
        _install_strict_each(manager)


def _install_strict_each(manager: PluginManager) -> None:
    plugins = manager.plugins()

    def precheck(func: str, params: tuple[Any, ...]) -> None:
        problems = [p for plugin in plugins for p in check_arguments(plugin, func, params)]
        if problems:
            first = next(plugin.name for plugin in plugins
                         if check_arguments(plugin, func, params))
            raise HotswapError("; ".join(problems), plugin=first, step="guard")

    def invoke_each(name: str, *params: Any) -> None:
        precheck(name, params)
        PluginManager.invoke_each(manager, name, *params)

    def invoke_each_backward(name: str, *params: Any) -> None:
        precheck(name, params)
        PluginManager.invoke_each_backward(manager, name, *params)

    async def ainvoke_each(name: str, *params: Any) -> None:
        precheck(name, params)
        await PluginManager.ainvoke_each(manager, name, *params)

    async def ainvoke_each_backward(name: str, *params: Any) -> None:
        precheck(name, params)
        await PluginManager.ainvoke_each_backward(manager, name, *params)

    for fn in (invoke_each, invoke_each_backward, ainvoke_each, ainvoke_each_backward):
        fn.__doc__ = getattr(PluginManager, fn.__name__).__doc__
        setattr(manager, fn.__name__, fn)
