"""Import one version of a plugin from its in-memory artifact snapshot.

Design note: every loaded version is *mounted* under a top-level package name unique to that
load (``_hotswap_<plugin>_<load>``) and served by its own ``VersionLoader`` from the bytes
``read_artifact`` returned; the zip file is never opened again. One meta-path finder
(``_FINDER``) is put at the front of ``sys.meta_path`` while at least one version is mounted; it
answers only for names under a mounted root (one dict lookup), so the rest of the process'
imports pay next to nothing, and it leaves ``sys.meta_path`` when the last version is unmounted.

Each module's ``__file__``, ``__spec__.origin`` (and every code object's ``co_filename``) is
``<version folder>/<member>``, e.g. ``/tmp/hotswap-0/procs/812-x1/world#3/world/jobs.py``: a real,
read-only file holding that version's bytes (see ``ondisk``), unique to the load, so ``open``,
``os.listdir``, ``glob``, ``pkgutil.iter_modules(__path__)`` and ``importlib.resources`` see
the version's own files, ``linecache`` shows the lines of the version that ran, and a traceback
names the plugin, the load and the member. The code itself never comes from that folder: it is
compiled from (or unmarshalled out of) the verified snapshot. Bytecode shipped in the artifact is
used when it was made for this interpreter (cache tag and magic number); otherwise the source
is compiled. With ``map_sources`` (``sources``), a module's ``co_filename`` is instead the
plugin's original source file, so debuggers' breakpoints on it hit.
"""

from __future__ import annotations

import _imp
import functools
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import linecache
import marshal
import os
import pathlib
import posixpath
import sys
import threading
import zlib
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from importlib.resources.abc import Traversable, TraversableResources
from operator import methodcaller
from types import CodeType, ModuleType
from typing import Any, NamedTuple

from . import forks
from .artifact import Artifact
from .yielding import yield_gil

__all__ = ["MOUNT_PREFIX", "MappedSource", "VersionLoader", "mount", "mount_name",
           "original_sources", "parse_mount_name", "planted_modules", "planting_error", "unmount"]

_PYC_HEADER = 16


#: every mounted version's top-level module name starts with this (see ``mount_name``)
MOUNT_PREFIX = "_hotswap_"


def mount_name(name: str, load: int) -> str:
    """The top-level module name under which load number ``load`` of plugin ``name`` lives:
    ``_hotswap_world_3``; ``parse_mount_name`` reads it back."""
    return f"{MOUNT_PREFIX}{name}_{load}"


@functools.lru_cache(maxsize=4096)  # the guard asks per argument class: keep it a dict lookup
def parse_mount_name(module_name: str) -> tuple[str, int] | None:
    """``("world", 3)`` for a module of load 3 of plugin ``world`` (``_hotswap_world_3`` or
    ``_hotswap_world_3.jobs``); None for any module not mounted by ``mount_name``."""
    root = module_name.partition(".")[0]
    if not root.startswith(MOUNT_PREFIX):
        return None
    name, sep, load = root[len(MOUNT_PREFIX):].rpartition("_")
    if not sep or not name or not load.isdigit():
        return None
    return name, int(load)


class MappedSource(NamedTuple):
    """``map_sources``: the plugin's own source file a member's code names, and its bytes as
    they were when the version loaded (what tracebacks show while the version lives, even once
    the file is edited)."""

    path: str
    text: bytes


def original_sources(artifact: Artifact) -> dict[str, MappedSource]:
    """``map_sources``: member -> the plugin's own source file, for every module whose file is
    still byte-identical to the one the build read (a changed or missing file is left out).

    The build records the plugin folder (``source_dir``) and, for the sources it rewrote, the
    hash of what it read (``source_hashes``); the others shipped as read.
    """
    manifest = artifact.manifest
    if not manifest.source_dir:
        return {}
    prefix = artifact.name + "/"
    found: dict[str, MappedSource] = {}
    for member, shipped in artifact.files.items():
        if not member.endswith(".py") or not member.startswith(prefix) or "/__pycache__/" in member:
            continue
        path = os.path.join(manifest.source_dir, *member[len(prefix):].split("/"))
        try:
            with open(path, "rb") as handle:
                current = handle.read()
        except OSError:
            continue
        expected = manifest.source_hashes.get(member)
        if current == shipped if expected is None else hashlib.sha256(current).hexdigest() == expected:
            found[member] = MappedSource(path, current)
    return found


class _FolderResources(TraversableResources):
    """``importlib.resources`` of a package: its folder in the version's folder on disk."""

    def __init__(self, folder: str) -> None:
        self._folder = folder

    def files(self) -> Traversable:
        return pathlib.Path(self._folder)


class VersionLoader(importlib.abc.InspectLoader, importlib.abc.ResourceLoader):
    """Finder and loader of every module of one mounted version.

    Args:
        name: the plugin name (the package folder inside the artifact).
        files: member path -> bytes, the artifact's package members.
        root: the module name the package is mounted under.
        origin: the version's folder (``…/world#3``), holding ``files`` on disk; the prefix of
            ``__file__``.
        bytecode: the manifest's bytecode description, or None.
        sources: member -> the file to name as the code's ``co_filename`` instead, with its
            bytes (``map_sources``); members absent keep their path in ``origin``.
    """

    def __init__(self, name: str, files: Mapping[str, bytes], root: str, origin: str,
                 bytecode: Mapping[str, Any] | None, *,
                 sources: Mapping[str, MappedSource] | None = None) -> None:
        self.name = name
        self.root = root
        self.origin = origin
        # a copy of its own: the bytecode of each module is dropped once the module ran
        self._files = dict(files)
        # sources of modules that ran, deflated together by ``pack_sources``: member -> (start,
        # end) in the inflated blob, which get_source, tracebacks and a re-import inflate again
        self._packed: dict[str, tuple[int, int]] = {}
        self._blob = b""
        self._sources = {member: mapped.path for member, mapped in (sources or {}).items()}
        # map_sources: the original file's bytes until its module runs, then the linecache
        # entry pinned for it (path -> entry), so tracebacks and pdb show the lines this
        # version runs even after the file is edited (linecache would reread the file)
        self._source_texts = {member: mapped.text for member, mapped in (sources or {}).items()}
        self._pinned: dict[str, tuple[int, None, list[str], str]] = {}
        self._pyc_suffix: str | None = None
        if (bytecode is not None and bytecode.get("cache_tag") == sys.implementation.cache_tag
                and bytecode.get("magic") == importlib.util.MAGIC_NUMBER.hex()):
            optimize = bytecode.get("optimize", 0)
            opt = f".opt-{optimize}" if optimize else ""
            self._pyc_suffix = f".{sys.implementation.cache_tag}{opt}.pyc"
        self._optimize = bytecode.get("optimize", 0) if bytecode else 0
        # module name -> id of the module object this loader executed, to tell its own
        # modules from ones other code planted in sys.modules under its mounted name
        self._executed: dict[str, int] = {}
        # module name -> (member path, is package)
        self._index: dict[str, tuple[str, bool]] = {}
        for member in files:
            if not member.endswith(".py") or "/__pycache__/" in member:
                continue
            parts = member[:-3].split("/")
            if parts[-1] == "__init__":
                parts.pop()
                is_package = True
            else:
                is_package = False
            if not all(part.isidentifier() for part in parts):
                continue
            self._index[".".join([root, *parts[1:]])] = (member, is_package)
        # folders holding modules but no __init__.py are namespace packages, as on disk
        for fullname in list(self._index):
            parts = fullname.split(".")
            for depth in range(2, len(parts)):
                parent = ".".join(parts[:depth])
                if parent not in self._index:
                    folder = "/".join([name, *parts[1:depth]])
                    self._index[parent] = (folder + "/", True)

    # -- finder ---------------------------------------------------------------------------
    def find_spec(self, fullname: str) -> importlib.machinery.ModuleSpec | None:
        """The spec of ``fullname`` when it is a module of this version, else None."""
        entry = self._index.get(fullname)
        if entry is None:
            return None
        member, is_package = entry
        if member.endswith("/"):
            spec = importlib.machinery.ModuleSpec(fullname, self, is_package=True)
            spec.submodule_search_locations = [self._filename(member[:-1])]
            return spec
        spec = importlib.machinery.ModuleSpec(fullname, self, origin=self._filename(member),
                                              is_package=is_package)
        if is_package:
            # the package's folder on disk, for pkgutil.iter_modules(__path__) and the like;
            # its modules are still found by name (the finder comes first in sys.meta_path)
            spec.submodule_search_locations = [self._filename(posixpath.dirname(member))]
        spec.has_location = True
        return spec

    # -- loader ---------------------------------------------------------------------------
    def _filename(self, member: str) -> str:
        return f"{self.origin}/{member}"

    def _entry(self, fullname: str) -> tuple[str, bool]:
        try:
            return self._index[fullname]
        except KeyError:
            raise ImportError(f"no module {fullname!r} in {self.origin}", name=fullname,
                              path=self.origin) from None

    def exec_module(self, module: ModuleType) -> None:
        """Run the module's code (its stored bytecode when usable) in ``module``."""
        self._executed[module.__name__] = id(module)
        if self._entry(module.__name__)[0].endswith("/"):
            return  # a namespace package: nothing to run
        # a package body importing its submodules runs each through here: yielding around every
        # body keeps a reload in a worker thread from holding the GIL for long stretches
        yield_gil()
        code = self.get_code(module.__name__)
        assert code is not None
        # its bytecode is dead weight from now on (a third of a version's memory): a module
        # imported again (importlib.reload) is compiled from its source, which stays for
        # get_source, tracebacks and inspect
        pyc = self._pyc_member(self._entry(module.__name__)[0])
        if pyc is not None:
            self._files.pop(pyc, None)
        self._cache_lines(code.co_filename, module)
        exec(code, module.__dict__)
        yield_gil()

    def _cache_lines(self, filename: str, module: ModuleType) -> None:
        """Let ``linecache`` show this version's lines for ``filename``: its own file's, read
        when asked; a mapped original's, pinned now (an entry without mtime, which
        ``linecache.checkcache`` keeps), since the developer may edit that file meanwhile.
        Two live versions mapped to one file: the last loaded shows (one entry per path)."""
        member = self._entry(module.__name__)[0]
        text = self._source_texts.get(member)
        if text is None or self._sources.get(member) != filename:
            linecache.lazycache(filename, module.__dict__)
            return
        lines = importlib.util.decode_source(text).splitlines(keepends=True)
        entry = (len(text), None, lines, filename)
        linecache.cache[filename] = entry
        self._pinned[filename] = entry

    def get_filename(self, fullname: str) -> str:
        """``<artifact path>/<member>``: what ``__file__`` and tracebacks show."""
        member = self._entry(fullname)[0]
        if member.endswith("/"):
            raise ImportError(f"namespace package {fullname!r} has no file", name=fullname,
                              path=self.origin)
        return self._filename(member)

    def is_package(self, fullname: str) -> bool:
        """True when ``fullname`` is a package of this version."""
        return self._entry(fullname)[1]

    def get_source(self, fullname: str) -> str | None:
        """The module's source from the snapshot (None for a namespace package)."""
        member = self._entry(fullname)[0]
        if member.endswith("/"):
            return None
        return importlib.util.decode_source(self._member(member))

    def code_filename(self, member: str) -> str:
        """The ``co_filename`` of a member's code: its original source (``map_sources``) or its
        path in the version's folder."""
        return self._sources.get(member) or self._filename(member)

    def get_data(self, path: str) -> bytes:
        """The bytes of the member at ``path`` (a path under the version's folder), from the
        snapshot."""
        prefix = self.origin + "/"
        member = path[len(prefix):]
        if path.startswith(prefix) and (member in self._files or member in self._packed):
            return self._member(member)
        raise OSError(f"{path!r} is not part of {self.origin}")

    def get_code(self, fullname: str) -> CodeType | None:
        """The module's code: its stored pyc when it matches, else compiled from source."""
        member, _ = self._entry(fullname)
        if member.endswith("/"):
            return None
        filename = self.code_filename(member)
        pyc_member = self._pyc_member(member)
        if pyc_member is not None:
            pyc = self._files.get(pyc_member)
            if pyc is not None and pyc[:4] == importlib.util.MAGIC_NUMBER:
                code = marshal.loads(memoryview(pyc)[_PYC_HEADER:])
                _imp._fix_co_filename(code, filename)  # type: ignore[attr-defined]  # importlib's own helper; typeshed lacks it
                return code
        return compile(self._member(member), filename, "exec", dont_inherit=True,
                       optimize=self._optimize)

    def _member(self, member: str) -> bytes:
        """A member's bytes, inflated from the packed sources when ``pack_sources`` took it."""
        data = self._files.get(member)
        if data is not None:
            return data
        start, end = self._packed[member]  # KeyError for a member that is not there
        return zlib.decompress(self._blob)[start:end]

    def pack_sources(self) -> None:
        """Deflate the sources of every module that ran into one blob (one zlib call): only
        get_source, tracebacks and a re-import read them again, and a live version then holds
        them at a third of their size (a plain import holds none: they stay on disk)."""
        done = {self._index[name][0] for name in self._executed if name in self._index}
        members = sorted(m for m in done if m.endswith(".py") and m in self._files)
        if not members:
            return
        chunks: list[bytes] = [zlib.decompress(self._blob)] if self._blob else []
        offset = len(chunks[0]) if chunks else 0
        for member in members:
            data = self._files.pop(member)
            self._packed[member] = (offset, offset + len(data))
            chunks.append(data)
            offset += len(data)
        self._blob = zlib.compress(b"".join(chunks), 1)

    def _pyc_member(self, member: str) -> str | None:
        """Where the bytecode of source ``member`` for this Python would be, if it may be used."""
        if self._pyc_suffix is None or not member.endswith(".py"):
            return None
        folder, base = posixpath.split(member)
        return f"{folder}/__pycache__/{base[:-3]}{self._pyc_suffix}"

    def get_resource_reader(self, fullname: str) -> TraversableResources | None:
        """Reads the files next to a package's modules for ``importlib.resources``."""
        member, is_package = self._entry(fullname)
        if not is_package:
            return None
        folder = member[:-1] if member.endswith("/") else posixpath.dirname(member)
        return _FolderResources(self._filename(folder))

    def planted(self) -> list[str]:
        """This version's module names whose ``sys.modules`` entry it did not execute itself.

        Another plugin of the same load can compute this version's mounted name and put a
        module there before this version imports, so that this version's own imports pick up
        foreign code; this finds it (a dict lookup per module of the version).
        """
        modules = sys.modules
        return sorted(name for name in self._index
                      if name in modules and self._executed.get(name) != id(modules[name]))

    def filenames(self) -> list[str]:
        """Every filename of this version's own folder its modules may carry (for ``linecache``
        pruning; the original files of ``map_sources`` are ``pinned_lines``)."""
        return [self._filename(member) for member, _ in self._index.values()
                if not member.endswith("/")]

    def pinned_lines(self) -> dict[str, tuple[int, None, list[str], str]]:
        """``map_sources``: original path -> the ``linecache`` entry this version pinned."""
        return dict(self._pinned)


class _Finder(importlib.abc.MetaPathFinder):
    """The one meta-path finder: dispatches names under a mounted root to its loader."""

    def __init__(self) -> None:
        self.mounts: dict[str, VersionLoader] = {}

    def find_spec(self, fullname: str, path: Any = None,
                  target: Any = None) -> importlib.machinery.ModuleSpec | None:
        loader = self.mounts.get(fullname.partition(".")[0])
        if loader is None:
            return None
        return loader.find_spec(fullname)

    def invalidate_caches(self) -> None:
        """Nothing is cached: the snapshots never change."""


_FINDER = _Finder()
_LOCK = threading.Lock()
forks.free_in_child(_LOCK)  # held briefly, never across user code


def mount(loader: VersionLoader) -> None:
    """Make ``loader``'s modules importable under ``loader.root``."""
    with _LOCK:
        _FINDER.mounts[loader.root] = loader
        if not any(finder is _FINDER for finder in sys.meta_path):
            sys.meta_path.insert(0, _FINDER)


def unmount(loader: VersionLoader) -> None:
    """Remove ``loader``'s modules from ``sys.modules`` and the finder; drop the finder when idle.

    Also forgets the ``linecache`` entries of its files.
    """
    root = loader.root
    prefix = root + "."
    for key in [k for k in list(sys.modules) if k == root or k.startswith(prefix)]:
        sys.modules.pop(key, None)
    for filename in loader.filenames():
        linecache.cache.pop(filename, None)
    for filename, entry in loader.pinned_lines().items():
        # a later version mapped to the same file may have pinned its own lines there since
        if linecache.cache.get(filename) is entry:
            linecache.cache.pop(filename, None)
    # pkgutil and the path finder cache a finder per folder of __path__ they were asked about
    folder = loader.origin + os.sep
    for key in [k for k in list(sys.path_importer_cache)
                if isinstance(k, str) and (k + os.sep).startswith(folder)]:
        sys.path_importer_cache.pop(key, None)
    with _LOCK:
        if _FINDER.mounts.get(root) is loader:
            del _FINDER.mounts[root]
        if not _FINDER.mounts:
            while _FINDER in sys.meta_path:
                sys.meta_path.remove(_FINDER)


def planted_modules(loaders: Iterable[VersionLoader],
                    since: AbstractSet[str] | None = None) -> dict[str, list[str]]:
    """Every ``sys.modules`` entry under one of ``loaders``' mounted roots that its loader did
    not execute, by plugin name (one pass over ``sys.modules`` for a whole load).

    ``since``: the names in ``sys.modules`` before any of these roots was mounted (the roots are
    unique to a load, so nothing under them can be older); only names added since are looked at.
    """
    by_root = {loader.root: loader for loader in loaders}
    found: dict[str, list[str]] = {}
    if not by_root:
        return found
    # a host with many plugins loaded has thousands of modules: pick this load's with one
    # C-level prefix test each (among the names added since, when known), then look closer
    prefixes = tuple(by_root)
    modules = sys.modules
    names = list(modules) if since is None else modules.keys() - since
    # filter + methodcaller: the whole pass runs in C, no bytecode per module of the host
    for key in list(filter(methodcaller("startswith", prefixes), names)):
        module = modules.get(key)
        loader = by_root.get(key.partition(".")[0])
        if loader is not None and module is not None and loader._executed.get(key) != id(module):
            found.setdefault(loader.name, []).append(key)
    return found


def planting_error(name: str, planted: list[str]) -> ImportError:
    """The error for modules found under plugin ``name``'s mounted name that it did not load."""
    shown = ", ".join(f'"{key}"' for key in sorted(planted))
    return ImportError(f"{shown} under its mounted name did not come from its artifact: other "
                       "code (another plugin of this load?) put them in sys.modules; the load is "
                       "refused so that they never answer its calls")

