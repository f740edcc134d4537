"""The build cache: what the scan, the rewrite and the compiler made of each file, by content.

Kept outside the output folder (``$HOTSWAP_CACHE_DIR``, else ``~/.cache/hotswap/build``) and
always safe to delete: every read that fails or finds damage is a miss, every write that fails
only costs speed. Per plugin folder, one index file maps each file's key (its contents and every
option that shapes its result) to that result, so a rebuild reads one file, not one per module.
Small entries (rewritten statements, rendered modules) carry a checksum.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sys
from pathlib import Path
from typing import Any

from hotswap_runtime.artifact import write_atomically

from . import __version__
from .layout import PluginLayout
from .scan import FileContext

__all__ = ["CACHE_FORMAT", "cache_dir", "file_key", "index_path", "load_index", "read_entry",
           "store_index", "write_entry"]

logger = logging.getLogger("hotswap.build")

#: the version of what a cached result means; raise it whenever the scan or the rewrite changes
#: what it makes of the same file, so caches of an earlier build are not reused
CACHE_FORMAT = f"{__version__}/3"


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
    return folder / "plugins" / f"{layout.name}-{key[:24]}.pickle"


def load_index(path: Path) -> dict[str, Any]:
    """The index at ``path``; empty when it is missing or damaged."""
    try:
        with open(path, "rb") as handle:
            index = pickle.load(handle)
    except Exception:  # noqa: BLE001 - any damage is a cache miss, never a failed build
        return {}
    return index if isinstance(index, dict) else {}


def store_index(path: Path, index: dict[str, Any]) -> None:
    """Replace the index at ``path`` atomically."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
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
