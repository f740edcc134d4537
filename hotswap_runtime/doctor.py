"""The leak doctor: why is a freed plugin version still alive?

Design note: a freed version stays alive while something still references one of its modules,
classes or functions (an instance keeps its class, a bound method its function). ``explain``
walks ``gc.get_referrers`` breadth-first from those objects back towards the roots a developer
can act on: module-level globals (``host_app.cache['job']``) and the frames of running code.

The walk is batched: one ``gc.get_referrers(*frontier)`` call per level scans the heap once for
the whole frontier (a scan costs about 20 ms per million objects), so the cost is bounded by
``max_depth`` scans, whatever the number of versions explained together; a version stops being
walked once it has five chains, or three levels after its first (shortest) chain. Since that call
compares every reference it meets with each frontier object, the frontier is capped (few
objects per type per level; many instances of one class usually share one holder). All freed
versions are walked together; each node remembers, per version, the child it was reached
from, so two versions held by one list both get their chain.

What the walk itself creates (its tables, the argument tuples of ``get_referrers``), the
runtime's own bookkeeping (``Version``, ``Pending``, ``Freer``, ``FreePolicy``) and the
runtime's frames are never taken for referrers.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterable, Sequence
from types import FrameType, FunctionType, ModuleType
from typing import Any

from .freeing import FreePolicy, Freer, Pending
from .importer import mount_name, parse_mount_name
from .version import Version

__all__ = ["explain", "describe", "version_of_module"]

_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
#: runtime bookkeeping that is never a referrer worth naming
_OWN_TYPES = (Version, Pending, Freer, FreePolicy)
#: attributes that hold references without appearing in ``vars()``
_SPECIAL_ATTRS = ("__self__", "__func__", "__wrapped__", "__closure__", "__defaults__",
                  "__kwdefaults__", "__globals__", "cell_contents", "func", "args", "keywords",
                  "f_locals", "gi_frame", "cr_frame", "ag_frame", "__mro__", "__bases__",
                  "__dict__")

MAX_CHAINS = 5
MAX_DEPTH = 12
EXTRA_DEPTH = 3
MAX_NODES = 20_000
FRONTIER_PER_TYPE = 8
MAX_FRONTIER = 48


#: ``("world", 3)`` for a module of load 3 of plugin ``world`` (``_hotswap_world_3.jobs``)
version_of_module = parse_mount_name


def _display_module(module_name: str) -> str:
    """``world.jobs`` for ``_hotswap_world_3.jobs``; other names unchanged."""
    found = version_of_module(module_name)
    if found is None:
        return module_name
    name, load = found
    return name + module_name[len(mount_name(name, load)):]


def describe(obj: Any) -> str:
    """A short text for ``obj``: ``<Job of world#3>``, ``<class Job of world#3>``, ``<dict>``."""
    if isinstance(obj, ModuleType):
        found = version_of_module(obj.__name__)
        if found is not None:
            return f"<module {_display_module(obj.__name__)} of {found[0]}#{found[1]}>"
        return f"<module {obj.__name__}>"
    if isinstance(obj, type):
        found = version_of_module(str(getattr(obj, "__module__", "")))
        if found is not None:
            return f"<class {obj.__qualname__} of {found[0]}#{found[1]}>"
        return f"<class {obj.__module__}.{obj.__qualname__}>"
    if isinstance(obj, FunctionType):
        found = version_of_module(str(getattr(obj, "__module__", "") or ""))
        if found is not None:
            return f"<function {obj.__qualname__} of {found[0]}#{found[1]}>"
        return f"<function {obj.__module__}.{obj.__qualname__}>"
    cls = type(obj)
    found = version_of_module(str(getattr(cls, "__module__", "")))
    if found is not None:
        return f"<{cls.__qualname__} of {found[0]}#{found[1]}>"
    if cls.__module__ == "builtins":
        return f"<{cls.__qualname__}>"
    return f"<{cls.__module__}.{cls.__qualname__}>"


def _key_text(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 60 else text[:57] + "..."


def _edge(parent: Any, child: Any, attr_dict: bool) -> tuple[str | None, bool]:
    """How ``parent`` reaches ``child``, as accessor text; and whether ``child`` is the
    attribute dict of ``parent`` (so that its keys read as ``.name``). None: no accessor."""
    if isinstance(parent, dict):
        for key, value in dict.items(parent):  # the real items, whatever a subclass overrides
            if value is child:
                if attr_dict and isinstance(key, str) and key.isidentifier():
                    return f".{key}", False
                return f"[{_key_text(key)}]", False
        for key in parent:
            if key is child:
                return ".keys()", False
        return None, False
    if isinstance(parent, (list, tuple)):
        for index, value in enumerate(parent):
            if value is child:
                return f"[{index}]", False
        return None, False
    if isinstance(parent, (set, frozenset)):
        return "{…}", False
    if isinstance(parent, FrameType):
        for key, value in parent.f_locals.items():
            if value is child:
                return f" local {key!r}", False
        return None, False
    if isinstance(parent, type) and isinstance(child, dict):
        own = vars(parent)
        if child.keys() == own.keys() and all(child[k] is own[k] for k in child):
            return "", True
    if getattr(parent, "__dict__", None) is child and isinstance(child, dict):
        return "", True
    try:
        attrs = vars(parent)
    except TypeError:
        attrs = {}
    for key, value in attrs.items():
        if value is child:
            return f".{key}", False
    for klass in type(parent).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            try:
                if getattr(parent, slot) is child:
                    return f".{slot}", False
            except Exception:  # an unset slot, or a property that raises
                continue
    for attr in _SPECIAL_ATTRS:
        try:
            if getattr(parent, attr) is child:
                return f".{attr}", attr == "__dict__"
        except Exception:
            continue
    return None, False


def _root_text(root: Any, roots: dict[int, str]) -> str:
    if isinstance(root, FrameType):
        code = root.f_code
        return f"<frame of {code.co_qualname} at {code.co_filename}:{root.f_lineno}>"
    return roots[id(root)]


def _names(parent: Any, child: Any, attr_dict: bool, roots: dict[int, str]) -> list[str | None]:
    """Every accessor from ``parent`` to ``child``: all the names a module holds it under, else
    the first way found (None: no accessor, the text shows the child's type)."""
    if isinstance(parent, dict) and id(parent) in roots:
        return [f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{_key_text(key)}]"
                for key, value in dict.items(parent) if value is child] or [None]
    try:
        return [_edge(parent, child, attr_dict)[0]]
    except Exception:  # an object whose attribute access raises: show its type instead
        return [None]


def _render(path: Sequence[Any], roots: dict[int, str], belongs: set[int],
            version_module: str) -> list[str]:
    """``host_app.cache['job'] -> <Job of world#3>`` for ``path`` (root first), down to the
    first object of the version; one text per object of the version its holder holds (a list
    of two leaked jobs gives two chains) and per name a module holds it under."""
    end = next((i for i in range(1, len(path)) if _belongs(path[i], belongs, version_module)),
               len(path) - 1)
    text = _root_text(path[0], roots)
    attr_dict = False
    for parent, child in zip(path[: end - 1], path[1:end], strict=True):
        accessor = _names(parent, child, attr_dict, roots)[0]
        try:
            attr_dict = _edge(parent, child, attr_dict)[1] if accessor is not None else False
        except Exception:
            attr_dict = False
        text += accessor if accessor is not None else f" -> {describe(child)}"
    holder = path[end - 1]
    found = [path[end]]
    try:
        found += [other for other in gc.get_referents(holder)
                  if other is not path[end] and _belongs(other, belongs, version_module)]
    except Exception:
        pass
    texts: list[str] = []
    for target in {id(obj): obj for obj in found}.values():  # distinct, the walk's own first
        for accessor in _names(holder, target, attr_dict, roots):
            texts.append(f"{text}{accessor or ''} -> {describe(target)}")
    return texts


def _belongs(obj: Any, belongs: set[int], version_module: str) -> bool:
    if id(obj) in belongs:
        return True
    if isinstance(obj, (FunctionType, type)):  # nested functions and classes of the version
        module = getattr(obj, "__module__", "")
        if isinstance(module, str) and (module == version_module
                                        or module.startswith(version_module + ".")):
            return True
    module = getattr(type(obj), "__module__", "")
    return isinstance(module, str) and (module == version_module
                                        or module.startswith(version_module + "."))


def _host_roots(skip: Iterable[str]) -> dict[int, str]:
    """id of each live module's ``__dict__`` -> its display name (versions noted), leaving out
    the modules under the root names ``skip``."""
    skipped = set(skip)
    roots: dict[int, str] = {}
    for name, module in list(sys.modules.items()):
        if not isinstance(module, ModuleType) or name.partition(".")[0] in skipped:
            continue
        found = version_of_module(name)
        shown = _display_module(name)
        if found is not None:
            shown = f"[{found[0]}#{found[1]}] {shown}"
        roots[id(vars(module))] = shown
    return roots


def _skip(obj: Any) -> bool:
    if isinstance(obj, FrameType):
        return obj.f_code.co_filename.startswith(_RUNTIME_DIR)
    if isinstance(obj, _OWN_TYPES):
        return True
    if obj is gc.garbage:
        return True
    return False


def explain(versions: Sequence[Version], *, limit: int = MAX_CHAINS, max_depth: int = MAX_DEPTH,
            max_nodes: int = MAX_NODES) -> list[tuple[str, ...]]:
    """For each of ``versions`` (freed, yet alive), up to ``limit`` referrer chains.

    Each chain reads from a module-level global of the host (or a frame of running code) down
    to the first object of the version on the way, for example
    ``host_app.cache['job'] -> <Job of world#3>``. A version no chain was found for within the
    bounds gets one line saying so. Run ``gc.collect()`` first: this walks what is alive.
    """
    targets: list[list[Any]] = []
    for version in versions:
        alive = [obj for obj in (ref() for ref in version.refs) if obj is not None]
        targets.append(alive)
    results: list[list[str]] = [[] for _ in versions]
    if not any(targets):
        return [tuple(r) for r in results]
    modules = [version.root for version in versions]
    roots = _host_roots(modules)
    nodes: dict[int, Any] = {}
    # node id -> {version index: id of the child it was reached from (None: a target)}
    via: dict[int, dict[int, int | None]] = {}
    belongs: list[set[int]] = []
    internal: set[int] = set()  # version-internal plumbing: not worth a frontier slot
    frontier: dict[int, set[int]] = {}
    for index, alive in enumerate(targets):
        ids = {id(obj) for obj in alive}
        belongs.append(ids)
        for obj in alive:
            nodes[id(obj)] = obj
            via.setdefault(id(obj), {})[index] = None
            frontier.setdefault(id(obj), set()).add(index)
            if isinstance(obj, ModuleType):
                # its globals: what a nested function or lambda of the version holds on to
                namespace = vars(obj)
                nodes[id(namespace)] = namespace
                via.setdefault(id(namespace), {})[index] = None
                frontier.setdefault(id(namespace), set()).add(index)
                ids.add(id(namespace))
            elif isinstance(obj, type):
                internal.update(id(r) for r in gc.get_referents(obj)
                                if isinstance(r, (dict, tuple)))
            elif isinstance(obj, FunctionType) and obj.__closure__:
                internal.add(id(obj.__closure__))
                internal.update(id(cell) for cell in obj.__closure__)
    del targets, alive, obj  # the walk's own references to the targets: not referrers
    done = [False] * len(versions)
    first_found = [0] * len(versions)  # the depth of each version's first chain
    seen_text: list[set[str]] = [set() for _ in versions]
    own = {id(nodes), id(via), id(frontier), id(internal), id(belongs), id(roots)}
    depth = 0
    try:
        while frontier and depth < max_depth and len(nodes) < max_nodes and not all(done):
            depth += 1
            for label, first in enumerate(first_found):
                # chains much longer than the shortest one found add little: stop looking
                if first and depth > first + EXTRA_DEPTH:
                    done[label] = True
            if all(done):
                break
            args = tuple(nodes[i] for i in frontier)
            own.add(id(args))
            found = gc.get_referrers(*args)
            own.add(id(found))
            upcoming: dict[int, set[int]] = {}
            per_type: dict[type, int] = {}
            own.add(id(per_type))
            for referrer in found:
                rid = id(referrer)
                if rid in own or rid in internal or _skip(referrer):
                    continue
                is_root = rid in roots or isinstance(referrer, FrameType)
                for child in gc.get_referents(referrer):
                    labels = frontier.get(id(child))
                    if not labels:
                        continue
                    for label in labels:
                        if done[label]:
                            continue
                        if is_root:  # every child a root holds is a chain of its own
                            path = [referrer]
                            step: int | None = id(child)
                            while step is not None:
                                path.append(nodes[step])
                                step = via[step][label]
                            texts = _render(path, roots, belongs[label], modules[label])
                            del path
                            first_found[label] = first_found[label] or depth
                            for text in texts:
                                if text not in seen_text[label] and not done[label]:
                                    seen_text[label].add(text)
                                    results[label].append(text)
                                    done[label] = len(results[label]) >= limit
                            continue
                        if label in via.get(rid, ()):
                            continue  # reached already, by a path as short or shorter
                        if rid not in upcoming:
                            kind = type(referrer)
                            if (per_type.get(kind, 0) >= FRONTIER_PER_TYPE
                                    or len(upcoming) >= MAX_FRONTIER):
                                continue
                            per_type[kind] = per_type.get(kind, 0) + 1
                        nodes[rid] = referrer
                        via.setdefault(rid, {})[label] = id(child)
                        upcoming.setdefault(rid, set()).add(label)
            referrer = child = None  # the loop's last objects: not referrers of the next level
            del found, args
            frontier = upcoming
            own.add(id(frontier))
    finally:
        nodes.clear()
        via.clear()
    for index, chains in enumerate(results):
        version = versions[index]
        if not chains and any(ref() is not None for ref in version.refs):
            chains.append(f"no chain from a module-level global found within {max_depth} steps: "
                          "held by a local variable, a running thread or task, or an extension "
                          "module")
    return [tuple(r) for r in results]

