"""One loaded version of a plugin: mounting it, calling its hooks, and pruning it when freed.

Design note: a ``Version`` is what several managers may share (a carried-over version appears
in each as its own ``Plugin``), so it carries the reference count ``managers``; the swapper
frees it when the count drops to zero. Freeing drops everything the runtime and the standard
library hold on the version's behalf, so that once callers let go, ``gc`` can take it back.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import logging
import sys
import threading
import typing
import weakref
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import FunctionType, ModuleType
from typing import Any, cast

from . import forks
from .artifact import (
    HOOK_CALLS,
    OPTIONAL_HOOKS,
    REGISTRATION_MODULE,
    REQUIRED_HOOKS,
    Artifact,
    HookParams,
    hook_arg_counts,
)
from .errors import HotswapError
from .importer import (
    VersionLoader,
    mount,
    mount_name,
    original_sources,
    planting_error,
    unmount,
)
from .ondisk import RuntimeFolder
from .static import StaticPlugin

__all__ = ["Version", "next_load_number", "check_hooks", "missing_hooks_error"]

_LOAD_NUMBERS = itertools.count(1)
_LOAD_LOCK = threading.Lock()
forks.free_in_child(_LOAD_LOCK)  # held briefly, never across user code



def next_load_number() -> int:
    """A process-wide load sequence number, so two loads never share module names."""
    with _LOAD_LOCK:
        return next(_LOAD_NUMBERS)


def missing_hooks_error(name: str, missing: list[str]) -> HotswapError:
    """The error for a plugin whose root package lacks required functions."""
    return HotswapError(
        f'plugin "{name}": missing functions: {", ".join(sorted(missing))}; define them in '
        f"its root package ({name}/__init__.py) and rebuild it",
        plugin=name, step="verify",
    )


def check_hooks(name: str, hooks: Mapping[str, Any]) -> None:
    """Check that every required hook is present and can take the call the runtime makes.

    Raises:
        HotswapError: naming the plugin and every missing or ill-shaped hook.
    """
    missing = [hook for hook in REQUIRED_HOOKS if hook not in hooks]
    if missing:
        raise missing_hooks_error(name, missing)
    problems: list[str] = []
    wanted = [*REQUIRED_HOOKS, *(hook for hook in OPTIONAL_HOOKS if hook in hooks)]
    for hook in sorted(wanted):
        fn = hooks[hook]
        if not callable(fn):
            problems.append(f"{hook} is not a function but {type(fn).__name__}")
            continue
        if _takes_hook(fn, hook):
            continue
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            continue  # a builtin without a signature: nothing to check
        problems.append(f"{hook}{signature} cannot be called as {HOOK_CALLS[hook]}")
    if problems:
        raise HotswapError(
            f'plugin "{name}": {"; ".join(problems)}; fix the signature and rebuild it',
            plugin=name, step="verify",
        )


def _takes_hook(fn: Any, hook: str) -> bool:
    """Whether ``fn`` accepts the runtime's call of ``hook``: a plain function by the rule the
    build applies (``HookParams``); any other callable (a partial, a bound method, a callable
    object, a builtin) by binding its ``inspect.signature`` to the same argument counts."""
    if type(fn) is FunctionType:
        return HookParams.of(fn).takes_hook(hook)
    for count in hook_arg_counts(hook):
        try:
            inspect.signature(fn).bind(*([None] * count))
        except TypeError:
            return False
        except ValueError:
            return True  # no signature to check
    return True


class Version:
    """One loaded copy of a plugin (from an artifact, or statically linked)."""

    def __init__(self, name: str, load: int, *, artifact: Artifact | None = None,
                 static: StaticPlugin | None = None, disk: RuntimeFolder | None = None,
                 map_sources: bool = False) -> None:
        self.name = name
        self.load = load
        self.artifact = artifact
        self.static = static
        self.disk = disk
        self.map_sources = map_sources
        self.folder: str | None = None  # the version's folder on disk, once written
        # time.time_ns() before its artifact was read (or last hashed): see selection.reuse
        self.checked_ns = 0
        # (path, identity) once ``selection.reuse`` found the file settled at that path (read
        # ``RACY_NS`` after its last change): its next reuses need only a stat
        self.settled: tuple[str, tuple[int, int, int, int, int] | None] | None = None
        self.file = artifact.path if artifact is not None else name
        self.sha256 = artifact.sha256 if artifact is not None else None
        self.build_id = artifact.build_id if artifact is not None else ""
        # the digest of RECORD apart from the manifest: what "unchanged" compares, with build_id
        self.content = artifact.content if artifact is not None else ""
        self.when = datetime.now(UTC)
        self.loader: VersionLoader | None = None
        self.package: ModuleType | None = None
        self.hooks: dict[str, Callable[..., Any]] = {}
        self.live_funcs: dict[str, Any] = {}
        self.live_types: dict[str, Any] = {}
        self.live_where: dict[str, str] = {}
        self.reloadable = True
        self.export_value: Any = None
        self.import_obj: Any = None
        self.deps: tuple[str, ...] = ()
        self.on_load_index = -1  # position in the on_load order, once on_load ran
        self.managers = 0
        self.state = "loading"
        self.refs: list[weakref.ref[Any]] = []
        # awaitables returned by an async invoke_func, for drain-aware freeing (see inflight)
        self.awaitables: weakref.WeakSet[Any] = weakref.WeakSet()
        # what ``plugin.invoke_func`` calls (``inflight.invoke_entry``), made once per version:
        # a reload builds a Plugin for every carried-over version too
        self.entry: Callable[..., Any] | None = None

    @property
    def root(self) -> str:
        """The module name the root package is mounted under (the real name when static)."""
        if self.static is not None:
            return self.static.package.__name__
        return mount_name(self.name, self.load)

    def __repr__(self) -> str:
        return f"<version {self.name}#{self.load}>"

    # -- loading --------------------------------------------------------------------------
    def mount_and_import(self) -> None:
        """Import the version (from the snapshot or the static registration) and check hooks.

        Raises:
            HotswapError: the import failed or the hooks are missing or ill-shaped.
        """
        if self.static is not None:
            self.package = self.static.package
            hooks: Mapping[str, Any] = self.static.hooks
            live_funcs: Mapping[str, Any] = self.static.live_funcs
            live_types: Mapping[str, Any] = self.static.live_types
        else:
            artifact = self.artifact
            assert artifact is not None
            missing = [hook for hook in REQUIRED_HOOKS if hook not in artifact.manifest.hooks]
            if missing:
                raise missing_hooks_error(self.name, missing)
            assert self.disk is not None, "a version from an artifact needs a runtime folder"
            # its files on disk before its first module runs (code still runs from memory)
            self.folder = self.disk.materialize(self.name, self.load, artifact.sha256,
                                                artifact.files)
            sources = original_sources(artifact) if self.map_sources else None
            self.loader = VersionLoader(self.name, artifact.files, self.root, self.folder,
                                        artifact.manifest.bytecode, sources=sources)
            mount(self.loader)
            registration_name = f"{self.root}.{REGISTRATION_MODULE}"
            try:
                planted = self.loader.planted()  # before it runs: nothing may wait there
                if planted:
                    raise planting_error(self.name, planted)
                registration = __import__(registration_name, fromlist=["HOOKS"])
                self.package = sys.modules[self.root]
                planted = self.loader.planted()
                if planted:
                    raise planting_error(self.name, planted)
            except Exception as exc:
                raise HotswapError(
                    f'plugin "{self.name}": importing it failed: {type(exc).__name__}: {exc}',
                    plugin=self.name, step="import",
                ) from exc
            tables = [getattr(registration, n, None) for n in ("HOOKS", "LIVE_FUNCS", "LIVE_TYPES")]
            if not all(isinstance(m, Mapping) for m in tables):
                raise HotswapError(
                    f'plugin "{self.name}": {REGISTRATION_MODULE} does not define the dicts '
                    "HOOKS, LIVE_FUNCS and LIVE_TYPES; rebuild it with hotswap build",
                    plugin=self.name, step="verify",
                )
            hooks, live_funcs, live_types = cast("list[Mapping[str, Any]]", tables)
        check_hooks(self.name, hooks)
        self.hooks = dict(hooks)
        self.live_funcs = dict(live_funcs)
        self.live_types = dict(live_types)
        if self.loader is not None:
            self.loader.pack_sources()
        if self.artifact is not None:
            # the loader keeps what later imports and get_source need; the version keeps the
            # artifact's description without its members, so that a later load can tell it
            # is still the file it came from (selection.reuse)
            self.artifact = dataclasses.replace(self.artifact, files={})

    def call(self, hook: str, logger: logging.Logger, *args: Any) -> Any:
        """Run ``hook`` of this version; a failure becomes a ``HotswapError`` naming both.

        Raises:
            HotswapError: the hook raised (chained).
        """
        logger.debug("invoking %s.%s", self.name, hook)
        try:
            return self.hooks[hook](*args)
        except Exception as exc:
            raise self.hook_error(hook, exc) from exc

    def hook_error(self, hook: str, exc: Exception) -> HotswapError:
        """The error for ``hook`` of this version having raised ``exc`` (chain it)."""
        return HotswapError(f'plugin "{self.name}": {hook} failed: {type(exc).__name__}: {exc}',
                            plugin=self.name, step=hook)

    # -- freeing --------------------------------------------------------------------------
    def track(self) -> None:
        """Take weak references to the version's modules and their classes and functions."""
        if self.static is not None:
            return
        root, prefix = self.root, self.root + "."
        refs: list[weakref.ref[Any]] = []
        for key, module in list(sys.modules.items()):
            if key != root and not key.startswith(prefix) or module is None:
                continue
            refs.append(weakref.ref(module))
            for value in list(vars(module).values()):
                if isinstance(value, (type, FunctionType)) and getattr(value, "__module__", None) == key:
                    try:
                        refs.append(weakref.ref(value))
                    except TypeError:
                        continue
        self.refs = refs

    def alive(self) -> bool:
        """Whether any tracked module, class or function of this version survives."""
        return any(ref() is not None for ref in self.refs)

    def prune(self) -> None:
        """Drop the version from ``sys.modules``, the finder, logging, typing, linecache, inspect.

        Then drop the references this object holds. Static versions keep their modules: they
        belong to the host.
        """
        if self.static is None:
            if not self.refs:
                self.track()
            root = self.root
            # a copy: another thread importing meanwhile would end the iteration with
            # "dictionary changed size" and leave the version in sys.modules for good
            names = {k for k in list(sys.modules) if k == root or k.startswith(root + ".")}
            if self.loader is not None:
                unmount(self.loader)
            _prune_loggers(root)
            _prune_typing(names)
            _prune_inspect(root)
            if self.folder is not None and self.disk is not None:
                self.disk.release(self.folder)
                self.folder = None
        self.loader = None
        self.package = None
        self.hooks = {}
        self.entry = None
        self.live_funcs = {}
        self.live_types = {}
        self.export_value = None
        self.import_obj = None
        self.artifact = None


def _prune_loggers(root: str) -> None:
    manager = logging.Logger.manager
    prefix = root + "."
    with _LoggingLock():
        for key in [k for k in manager.loggerDict if k == root or k.startswith(prefix)]:
            del manager.loggerDict[key]


class _LoggingLock:
    """logging's module lock (``_acquireLock`` before 3.13, ``_lock`` after)."""

    def __enter__(self) -> None:
        acquire = getattr(logging, "_acquireLock", None)
        if acquire is not None:
            acquire()
        else:
            logging._lock.acquire()  # type: ignore[attr-defined]  # 3.13: private, no stub

    def __exit__(self, *exc: object) -> None:
        release = getattr(logging, "_releaseLock", None)
        if release is not None:
            release()
        else:
            logging._lock.release()  # type: ignore[attr-defined]  # 3.13: private, no stub


def _prune_typing(module_names: set[str]) -> None:
    # typing memoises every subscription (list[Job], Optional[Job]...) in lru caches that hold
    # the classes strongly: clearing them is what lets a version that uses typing go
    for cleanup in list(getattr(typing, "_cleanups", ())):
        cleanup()
    registry = getattr(typing, "_overload_registry", None)
    if registry is not None:
        for name in module_names:
            registry.pop(name, None)


def _prune_inspect(root: str) -> None:
    prefix = root + "."
    for cache in (getattr(inspect, "_filesbymodname", {}),):
        for key in [k for k in cache if k == root or k.startswith(prefix)]:
            cache.pop(key, None)
    modulesbyfile = getattr(inspect, "modulesbyfile", {})
    for key in [k for k, v in modulesbyfile.items() if v == root or v.startswith(prefix)]:
        modulesbyfile.pop(key, None)
