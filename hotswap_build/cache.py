"""The build cache: what the scan, the rewrite and the compiler made of each file, by content.

Kept outside the output folder (``$HOTSWAP_CACHE_DIR``, else ``~/.cache/hotswap/build``) and
always safe to delete: every read that fails or finds damage is a miss, every write that fails
only costs speed. Per plugin folder, one index file maps each file's key (its contents and every
option that shapes its result) to that result, so a rebuild reads one file, not one per module.
Small entries (rewritten statements, rendered modules) carry a checksum.

Design note on trust: the cache holds data only, never an executable format (no pickle: a
tampered pickle runs code as it loads). The index is JSON decoded by msgspec into the exact
types the build expects (bytes as base64), each entry stored with the sha256 of its JSON; an
entry that fails to decode, to match its digest or to hold a pyc of its own source is left out
and rebuilt, never used. Extending an entry is adding a field with a default to its dataclass
(and raising ``CACHE_FORMAT`` when old entries must not be reused).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from hotswap_runtime.artifact import write_atomically

from . import __version__
from .layout import PluginLayout
from .scan import FileContext

__all__ = ["CACHE_FORMAT", "cache_dir", "file_key", "index_path", "load_index", "read_entry",
           "store_index", "write_entry"]

logger = logging.getLogger("hotswap.build")

#: the version of what a cached result means; raise it whenever the scan or the rewrite changes
#: what it makes of the same file, so caches of an earlier build are not reused
CACHE_FORMAT = f"{__version__}/9"

T = TypeVar("T")


def cache_dir() -> Path:
    """The cache folder: ``$HOTSWAP_CACHE_DIR``, else ``~/.cache/hotswap/build``."""
    configured = os.environ.get("HOTSWAP_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hotswap" / "build"


def file_key(ctx: FileContext, source: bytes) -> str:
    """The key of one file's result: its contents and everything else that shapes it."""
    parts = (CACHE_FORMAT, sys.implementation.cache_tag, sys.version, ctx.rel, ctx.module,
             ctx.package_depth, ctx.is_root, ctx.layout.name, ctx.layout.import_name,
             ctx.layout.siblings, ctx.live_prefix, ctx.stamps, ctx.optimize)
    digest = hashlib.sha256(repr(parts).encode())
    digest.update(source)
    return digest.hexdigest()


def index_path(folder: Path, layout: PluginLayout) -> Path:
    """The index file of one plugin folder."""
    key = hashlib.sha256(f"{CACHE_FORMAT}\0{layout.root}".encode()).hexdigest()
    return folder / "plugins" / f"{layout.name}-{key[:24]}.json"


class _Index(msgspec.Struct, frozen=True):
    """The index file: its format, then key -> (sha256 of the entry's JSON, the entry)."""

    format: str
    entries: dict[str, tuple[str, msgspec.Raw]]


_INDEX = msgspec.json.Decoder(_Index)
_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}
# index path -> key -> (the entry load_index decoded, its digest and JSON): storing that same
# entry again reuses its JSON instead of encoding and hashing it again (a one-file rebuild of
# 1000 modules stores 999 entries it loaded)
_LOADED: dict[Path, dict[str, tuple[Any, str, msgspec.Raw]]] = {}


def _pyc_of(source: Any, pyc: Any) -> bool:
    """Whether ``pyc`` (a hash-based pyc, or None) was compiled from ``source``."""
    if not isinstance(source, bytes) or not isinstance(pyc, bytes):
        return pyc is None
    return pyc[:4] == importlib.util.MAGIC_NUMBER and pyc[8:16] == importlib.util.source_hash(source)


def load_index(path: Path, kind: type[T]) -> dict[str, T]:
    """The entries of the index at ``path``, each decoded as a ``kind`` (a dataclass).

    Empty when the file is missing or damaged; an entry that does not decode, match its digest
    or (when it has ``source`` and ``pyc`` fields) hold a pyc of its source is left out.
    """
    try:
        index = _INDEX.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError):
        return {}
    if index.format != CACHE_FORMAT:
        return {}
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
    entries: dict[str, T] = {}
    loaded: dict[str, tuple[Any, str, msgspec.Raw]] = {}
    for key, (digest, raw) in index.entries.items():
        if hashlib.sha256(raw).hexdigest() != digest:
            continue
        try:
            entry = decoder.decode(raw)
        except msgspec.DecodeError:  # a valid digest of a wrong shape: still only a miss
            continue
        if hasattr(entry, "pyc") and not _pyc_of(getattr(entry, "source", None), entry.pyc):
            continue
        entries[key] = entry
        loaded[key] = (entry, digest, raw)
    _LOADED[path] = loaded
    return entries


def store_index(path: Path, index: dict[str, Any]) -> None:
    """Replace the index at ``path`` atomically (``index``: key -> dataclass entry)."""
    loaded = _LOADED.pop(path, {})
    entries = {}
    for key, entry in index.items():
        seen = loaded.get(key)
        if seen is not None and seen[0] is entry:  # checked as it was loaded, unchanged since
            entries[key] = (seen[1], seen[2])
            continue
        raw = msgspec.json.encode(entry)
        entries[key] = (hashlib.sha256(raw).hexdigest(), msgspec.Raw(raw))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, msgspec.json.encode(_Index(CACHE_FORMAT, entries)))
    except OSError as exc:
        logger.debug("cannot write the build cache %s: %s", path, exc)


def read_entry(path: Path) -> bytes | None:
    """A small entry written by ``write_entry``, or None when absent or damaged."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    digest, _, body = raw.partition(b"\n")
    return body if digest == hashlib.sha256(body).hexdigest().encode() else None


def write_entry(path: Path, body: bytes) -> None:
    """Store a small entry with its checksum, atomically."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
    except OSError as exc:
        logger.debug("cannot write the build cache %s: %s", path, exc)
