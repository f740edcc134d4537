"""Dependencies declared by ``import_()``: reading them, checking them, ordering, wiring.

A plugin's ``import_()`` returns ``None`` or an instance of a class whose public annotated
attributes (inherited ones too, ``ClassVar`` and ``_private`` ones skipped) name the plugins it
depends on. The checks run over the whole new manager, carried-over versions included, and
each kind of problem is raised once with every instance of it.
"""

from __future__ import annotations

import heapq
import typing
from collections.abc import Iterable, Mapping
from types import ModuleType, UnionType
from typing import Any, ClassVar

from .errors import HotswapError
from .version import Version

__all__ = ["declared", "check_and_order", "wire", "conforms"]



def declared(version: Version) -> dict[str, Any]:
    """The dependencies ``version.import_obj`` declares: attribute name -> annotation.

    Raises:
        HotswapError: ``import_()`` returned something that is not a declaring object, or its
            annotations cannot be resolved.
    """
    obj = version.import_obj
    if obj is None:
        return {}
    cls = type(obj)
    if isinstance(obj, (type, ModuleType)) or cls.__module__ == "builtins":
        kind = "class" if isinstance(obj, type) else (
            "module" if isinstance(obj, ModuleType) else cls.__name__)
        what = _a(kind)
        raise HotswapError(
            f'plugin "{version.name}": import_ returned {what}; return None or an instance of a '
            "class whose annotated attributes name the plugins it depends on",
            plugin=version.name, step="import_",
        )
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:
        raise HotswapError(
            f'plugin "{version.name}": the annotations of {cls.__qualname__}, returned by '
            f"import_, cannot be resolved ({type(exc).__name__}: {exc}); import the types they "
            "name at module level",
            plugin=version.name, step="import_",
        ) from exc
    deps: dict[str, Any] = {}
    for attr, hint in hints.items():
        if attr.startswith("_") or hint is ClassVar or typing.get_origin(hint) is ClassVar:
            continue
        deps[attr] = hint
    return deps


def _protocol_members(protocol: type) -> frozenset[str]:
    """The members of ``protocol``, from typing's own list: what ``isinstance`` checks for a
    runtime-checkable protocol. Each Python adds its own bookkeeping attributes to every
    protocol class (3.12 ``__callable_proto_members_only__``, 3.13 ``__static_attributes__``,
    ...), so no list of names to skip kept here could stay right."""
    members = getattr(typing, "get_protocol_members", None)  # public from 3.13
    if members is not None:
        return frozenset(members(protocol))
    attrs = getattr(protocol, "__protocol_attrs__", None)  # 3.12 computes it per protocol class
    if attrs is None:  # 3.11: the function typing's isinstance check itself calls
        attrs = getattr(typing, "_get_protocol_attrs")(protocol)  # noqa: B009  # private: no stub
    return frozenset(attrs)


def conforms(value: Any, annotation: Any) -> bool:
    """Whether ``value`` conforms to ``annotation`` as the plugin contract defines it (README "Dependencies").

    Classes and runtime-checkable protocols: ``isinstance``; other protocols: every member is
    present; unions: any arm; generic aliases: their origin class; ``Any``: always.
    """
    if annotation is Any or annotation is object:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is UnionType:
        return any(conforms(value, arm) for arm in typing.get_args(annotation))
    if origin is typing.Annotated:
        return conforms(value, typing.get_args(annotation)[0])
    if origin is not None:  # list[int], Box[int]: judged by their origin class or protocol
        return isinstance(origin, type) and conforms(value, origin)
    if isinstance(annotation, type):
        if getattr(annotation, "_is_protocol", False) and not getattr(
                annotation, "_is_runtime_protocol", False):
            return all(hasattr(value, member) for member in _protocol_members(annotation))
        return isinstance(value, annotation)
    return True  # a string or special form we cannot check: trust it, as for Any


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in ('a', 'e', 'i', 'o', 'u') else 'a'} {noun}"


def _name(annotation: Any) -> str:
    return getattr(annotation, "__qualname__", None) or repr(annotation)


def check_and_order(versions: Mapping[str, Version],
                    declared_by: Mapping[str, dict[str, Any]]) -> list[Version]:
    """Check the dependency graph of a new manager and return its versions in dependency order.

    Args:
        versions: lower-case plugin name -> version, every plugin of the new manager.
        declared_by: lower-case plugin name -> attribute -> annotation, for fresh versions
            (carried-over versions keep ``version.deps``).

    Raises:
        HotswapError: unknown dependencies, a cycle, a pinned plugin depending on a reloadable
            one, or an export that does not conform to its annotation; the message names both
            plugins.
    """
    graph: dict[str, tuple[str, ...]] = {}
    unknown: list[tuple[str, str]] = []
    for key, version in versions.items():
        if key in declared_by:
            deps = tuple(sorted({attr.lower() for attr in declared_by[key]}))
        else:
            deps = version.deps
        graph[key] = deps
        for dep in deps:  # most plugins import none: no generator made for them
            if dep not in versions:
                unknown.append((version.name, dep))
    if unknown:
        unknown.sort()
        text = "; ".join(f'plugin "{a}" depends on "{b}", but no plugin "{b}" is loaded'
                         for a, b in unknown)
        raise HotswapError(f"{text}; build and deploy the missing plugin or fix the attribute "
                           "name in import_'s class", plugin=unknown[0][0], step="dependencies")
    cycle = _find_cycle(graph)
    if cycle:
        raise HotswapError(
            f"cyclic dependency detected: {' -> '.join(versions[n].name for n in cycle)}; "
            "move what they share into a host-side module",
            plugin=versions[cycle[0]].name, step="dependencies",
        )
    pinned = sorted(
        (versions[key].name, versions[dep].name)
        for key, deps in graph.items() if not versions[key].reloadable
        for dep in deps if versions[dep].reloadable
    )
    if pinned:
        text = "; ".join(f'plugin "{a}" is not reloadable but depends on "{b}", which is'
                         for a, b in pinned)
        raise HotswapError(f"{text}; make the dependency not reloadable too, or the dependent "
                           "reloadable", plugin=pinned[0][0], step="dependencies")
    mismatched: list[str] = []
    for key, wanted in sorted(declared_by.items()):
        version = versions[key]
        for attr, annotation in sorted(wanted.items()):
            provider = versions[attr.lower()]
            value = provider.export_value
            if value is not None and not conforms(value, annotation):
                mismatched.append(
                    f'plugin "{version.name}" imports "{provider.name}" as {attr}: '
                    f"{_name(annotation)}, but its export() returned "
                    f"{_a(type(value).__qualname__)}, which does not conform")
    if mismatched:
        raise HotswapError(f"{'; '.join(mismatched)}; make export() return what the "
                           "annotation names, or fix the annotation",
                           plugin=versions[sorted(declared_by)[0]].name, step="dependencies")
    for key, deps in graph.items():
        versions[key].deps = deps
    return [versions[key] for key in _topological(graph)]


def _find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    # try each start in name order, walking only through names >= start: the first cycle found
    # starts at the smallest name it contains
    for start in sorted(graph):
        if not graph[start]:
            continue  # no edge leaves it: on no cycle (most plugins import none)
        found = _walk(graph, start, start, [start], {start})
        if found:
            return found
    return None


def _walk(graph: Mapping[str, Iterable[str]], start: str, node: str, path: list[str],
          seen: set[str]) -> list[str] | None:
    """Depth-first from ``node`` (``path`` leads there from ``start``) back to ``start``."""
    for dep in sorted(graph[node]):
        if dep == start:
            return [*path, start]
        if dep > start and dep not in seen:
            seen.add(dep)
            path.append(dep)
            found = _walk(graph, start, dep, path, seen)
            if found:
                return found
            path.pop()
    return None


def _topological(graph: Mapping[str, tuple[str, ...]]) -> list[str]:
    if not any(graph.values()):
        return sorted(graph)  # no dependencies at all: name order, what the heap would give
    waiting = {key: len(deps) for key, deps in graph.items()}
    dependents: dict[str, list[str]] = {key: [] for key in graph}
    for key, deps in graph.items():
        for dep in deps:
            dependents[dep].append(key)
    ready = [key for key, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        key = heapq.heappop(ready)
        order.append(key)
        for dependent in dependents[key]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, dependent)
    return order


def wire(version: Version, annotations: Mapping[str, Any], versions: Mapping[str, Version]) -> None:
    """Set each declared attribute of ``version.import_obj`` to its dependency's export."""
    for attr in annotations:
        value = versions[attr.lower()].export_value
        if value is not None:
            setattr(version.import_obj, attr, value)
