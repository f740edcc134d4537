"""Bytecode, manifest, build id and the artifact file itself.

The archive format is ``hotswap_runtime.artifact``'s: this module only decides what goes in.
"""

from __future__ import annotations

import hashlib
import importlib.util
import marshal
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import CodeType
from typing import Any

from hotswap_runtime.artifact import Manifest, pack, write_atomically

from . import __version__

__all__ = ["bytecode_info", "build_id", "git_commit", "pyc_bytes", "pyc_path", "write_artifact"]


def bytecode_info(optimize: int) -> dict[str, Any]:
    """The manifest's ``bytecode`` entry for this Python and ``optimize``."""
    return {
        "cache_tag": sys.implementation.cache_tag,
        "magic": importlib.util.MAGIC_NUMBER.hex(),
        "optimize": optimize,
    }


def pyc_path(member: str, optimize: int) -> str:
    """Where the bytecode of source member ``foo/sub/x.py`` goes inside the artifact."""
    folder, _, file = member.rpartition("/")
    opt = f".opt-{optimize}" if optimize else ""
    return f"{folder}/__pycache__/{file[:-3]}.{sys.implementation.cache_tag}{opt}.pyc"


def pyc_bytes(code: CodeType, source: bytes) -> bytes:
    """A hash-based, unchecked pyc (PEP 552) of ``code``, compiled from ``source``."""
    flags = 0b01  # hash-based; the check_source bit stays off: the artifact is immutable
    return b"".join([
        importlib.util.MAGIC_NUMBER,
        flags.to_bytes(4, "little"),
        importlib.util.source_hash(source),
        marshal.dumps(code),
    ])


def build_id(files: Iterable[tuple[str, bytes]], live_prefix: str, stamps: Mapping[str, str],
             optimize: int) -> str:
    """Hash of every input that shapes the code (never a time, never the git commit)."""
    digest = hashlib.sha256()
    header = {
        "hotswap": __version__,
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "cache_tag": sys.implementation.cache_tag,
        "live_prefix": live_prefix.lower(),
        "optimize": optimize,
        "stamps": sorted(stamps.items()),
    }
    digest.update(repr(header).encode())
    for path, data in sorted(files):
        digest.update(b"\0" + path.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()[:32]


def git_commit(folder: Path) -> str | None:
    """The commit checked out in the git work tree holding ``folder``, or None (git optional)."""
    try:
        done = subprocess.run(["git", "-C", os.fspath(folder), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def make_manifest(*, name: str, build_id_: str, live_prefix: str, live_funcs: Mapping[str, str],
                  live_types: Mapping[str, str], hooks: Iterable[str], optimize: int,
                  import_name: str, stamps: Mapping[str, str], git: str | None,
                  source_dir: str | None = None,
                  source_hashes: Mapping[str, str] | None = None) -> Manifest:
    """The manifest of an artifact built by this Python."""
    return Manifest(
        name=name,
        build_id=build_id_,
        hotswap_version=__version__,
        python=platform.python_version(),
        live_prefix=live_prefix,
        live_funcs=dict(live_funcs),
        live_types=dict(live_types),
        hooks=tuple(sorted(hooks)),
        bytecode=bytecode_info(optimize),
        import_name=import_name,
        stamps=dict(stamps),
        git_commit=git,
        source_dir=source_dir,
        source_hashes=dict(source_hashes or {}),
    )


#: deflate level of artifacts: level 1 packs a 1000-module plugin in two thirds of the time of
#: level 6, for an artifact about 3% larger
COMPRESS_LEVEL = 1


def write_artifact(path: Path, name: str, members: Mapping[str, bytes], manifest: Manifest,
                   deflated: Mapping[str, bytes] | None = None, *,
                   sign: Callable[[bytes], bytes] | None = None) -> None:
    """Pack ``members`` and write ``path`` atomically (a temporary name, then a rename).

    ``deflated``: members already compressed at ``COMPRESS_LEVEL`` (the build cache's).
    ``sign``: makes the ``SIGNATURE`` member from the RECORD (``signing.SigningKey``).
    """
    write_atomically(path, pack(name, members, manifest, compresslevel=COMPRESS_LEVEL,
                                deflated=deflated, sign=sign))
