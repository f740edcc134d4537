"""Which plugins a load takes fresh and which it carries over; listing the plugin folder.

Design note: one pure function, ``select``, decides what a load does with every plugin —
``fresh`` (a new version from its artifact), ``unchanged`` (the running version carried over:
its artifact has the running version's contents), ``not reloadable`` (the running version
carried over whatever its artifact: its ``reloadable()`` said False), ``re-wired`` (a fresh
version because a plugin it depends on, directly or not, gets one) and ``dropped`` (running,
artifact gone). The load (``versions_for_load``) and the dry run (``plan_folder``) both call it,
so what ``plan()`` shows is the rule ``reload`` applies, not a copy of it.

Design note on reuse: a reload costs what changed, so the listing reads and verifies only the
artifacts whose file may have changed. A running version keeps its artifact's description (the
``identity`` of the file it was read from: device, inode, size, ``st_mtime_ns``,
``st_ctime_ns``); when the file in the folder still has that identity it is the same file, and
the version's verified snapshot stands for it (``reuse``). Any write changes the ctime, even
one that keeps the size and restores the mtime, except a write within the same tick of the
filesystem's clock as the change before it (a coarse clock: a jiffy, or a second on some
filesystems). So a snapshot read less than ``RACY_NS`` after its file last changed is
confirmed by hashing the file once (one read and one sha256, against a full verification)
before it is reused. Re-wiring needs the members again: a reused snapshot (whose members live
on in its loader, not here) is read and verified again when it gets a fresh version.

What a plan cannot know: the manifest carries no dependencies, and a fresh artifact's
dependencies are known only once its ``import_`` runs, which a dry run must not do. The running
versions' dependencies are known (their ``import_`` ran at their load), and that is all the rule
needs: re-wiring follows the running versions' dependencies. What a plan cannot foresee: a fresh
version importing a plugin that is missing, a dependency cycle a fresh version introduces, and
any failure of an import, hook or ``self_test``; ``prepare()`` finds those without changing
anything.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Final

from .artifact import ARTIFACT_SUFFIX, Artifact, read_artifact
from .errors import HotswapError
from .signing import TrustedKeys
from .static import StaticPlugin
from .version import Version

if TYPE_CHECKING:
    from .manager import PluginManager

__all__ = [
    "DROPPED",
    "FRESH",
    "NOT_RELOADABLE",
    "REWIRED",
    "UNCHANGED",
    "artifact_files",
    "list_artifacts",
    "plan_folder",
    "reuse",
    "select",
    "static_versions",
    "versions_for_load",
]

FRESH: Final = "fresh"
UNCHANGED: Final = "unchanged"
NOT_RELOADABLE: Final = "not reloadable"
REWIRED: Final = "re-wired"
DROPPED: Final = "dropped"


def select(running: Mapping[str, Version], listed: Collection[str],
           artifacts: Mapping[str, Artifact]) -> dict[str, str]:
    """What a load does with each plugin, as lower-case name -> word (the words above).

    Args:
        running: the running versions by lower-case name (empty before the first load).
        listed: the lower-case names that have an artifact in the folder (readable or not).
        artifacts: the artifacts read and verified, by lower-case name; a listed name missing
            here (its artifact failed to read) gets no word and its running version is
            neither carried over nor dropped.

    A plugin is ``not reloadable`` first (whether its artifact was rebuilt or is gone), then
    ``dropped`` when its artifact is gone, ``unchanged`` when its artifact has the running
    version's contents, ``fresh`` otherwise; then every ``unchanged`` plugin that depends,
    directly or not, on a ``fresh`` or ``re-wired`` one is ``re-wired``.
    """
    words: dict[str, str] = {}
    for key, version in running.items():
        if not version.reloadable:
            words[key] = NOT_RELOADABLE
        elif key not in listed:
            words[key] = DROPPED
    for key, artifact in artifacts.items():
        if key in words:
            continue
        previous = running.get(key)
        if previous is None:
            words[key] = FRESH
        elif previous.artifact is artifact:  # its own snapshot, reused (``reuse``): unchanged
            words[key] = UNCHANGED
        else:
            words[key] = UNCHANGED if _same(previous, artifact) else FRESH
    # only an unchanged plugin that imports another can become re-wired (most import none)
    importers = sorted(key for key, word in words.items()
                       if word == UNCHANGED and running[key].deps)
    changed = True
    while changed:
        changed = False
        for key in importers:
            if words[key] == UNCHANGED and any(words.get(dep) in (FRESH, REWIRED)
                                               for dep in running[key].deps):
                words[key] = REWIRED
                changed = True
    return dict(sorted(words.items()))


def _same(running: Version, artifact: Artifact) -> bool:
    """True when ``artifact`` holds the contents of the running version (README "Building"): the
    same ``build_id`` *and* the same RECORD apart from the manifest's line. The build id alone
    is a claim the artifact makes of itself: new code carrying the running id is fresh."""
    return (running.static is None and running.build_id == artifact.build_id
            and running.content == artifact.content)


def versions_for_load(running: Mapping[str, Version], artifacts: Mapping[str, Artifact],
                      load: int, logger: logging.Logger, *,
                      checked: Mapping[str, int] | None = None,
                      trusted_keys: TrustedKeys | None = None,
                      ) -> tuple[dict[str, Version], dict[str, tuple[Version, str]]]:
    """Apply ``select`` to a load: (fresh versions, carried-over versions with their word).

    Fresh and re-wired plugins get a new ``Version`` of load ``load`` (not yet mounted); a
    ``not reloadable`` plugin whose artifact was rebuilt or is gone gets a warning. ``checked``
    holds when each artifact read by ``list_artifacts`` was read (see ``reuse``); a reused
    snapshot that gets a fresh version (re-wired) is read and verified again.

    Raises:
        HotswapError: a reused snapshot read again no longer verifies.
    """
    fresh: dict[str, Version] = {}
    carried: dict[str, tuple[Version, str]] = {}
    checked = dict(checked or {})
    for key, word in select(running, artifacts.keys(), artifacts).items():
        if word in (FRESH, REWIRED):
            artifact = artifacts[key]
            if not artifact.files:  # a reused snapshot: its members live on in its loader
                artifact, checked[key] = _read(artifact.path, trusted_keys)
            fresh[key] = Version(artifact.name, load, artifact=artifact)
            fresh[key].checked_ns = checked.get(key, 0)
        elif word in (UNCHANGED, NOT_RELOADABLE):
            version = running[key]
            carried[key] = (version, word)
            if word == NOT_RELOADABLE:
                rebuilt = artifacts.get(key)
                if rebuilt is None:
                    logger.warning('plugin "%s" is not reloadable: it stays although its '
                                   "artifact has gone", version.name)
                elif rebuilt.sha256 != version.sha256:
                    logger.warning('plugin "%s" is not reloadable: its rebuilt artifact is '
                                   "ignored", version.name)
    return fresh, carried


def static_versions(static: Mapping[str, StaticPlugin], whitelist: Iterable[str] | None,
                    load: int) -> dict[str, Version]:
    """The versions a load in static linking mode makes: every static plugin, or those
    ``whitelist`` names.

    Raises:
        HotswapError: a whitelisted name is not a static plugin, or two static plugins' names
            differ only in case.
    """
    wanted = None
    if whitelist is not None:
        names = list(whitelist)
        wanted = {name.lower() for name in names}
        present = {name.lower() for name in static}
        missing = sorted(n for n in names if n.lower() not in present)
        if missing:
            quoted = ", ".join(f'"{name}"' for name in missing)
            raise HotswapError(f"whitelisted plugins not among the static plugins: {quoted}; "
                               "link them statically or remove them from the whitelist",
                               plugin=missing[0], step="list")
    fresh: dict[str, Version] = {}
    seen: dict[str, str] = {}
    for name, plugin in sorted(static.items()):
        key = name.lower()
        if key in seen:
            raise HotswapError(f'duplicate name: static plugins "{seen[key]}" and "{name}" '
                               "differ only in case; keep one", plugin=name, step="list")
        seen[key] = name
        if wanted is None or key in wanted:
            fresh[key] = Version(plugin.name, load, static=plugin)
    return fresh


def _missing(whitelist: Iterable[str], keys: Collection[str]) -> list[str]:
    """The whitelisted names (as given, sorted) with no artifact among lower-case ``keys``."""
    wanted = {name.lower(): name for name in whitelist}  # one per name, whatever its case
    return sorted(name for key, name in wanted.items() if key not in keys)


def _missing_text(folder: str, missing: list[str]) -> str:
    """Why a load fails when whitelisted plugins have no artifact (a load and a plan say it)."""
    quoted = ", ".join(f'"{name}"' for name in missing)
    return (f"whitelisted plugins not found in {folder}: {quoted}; build them into it or "
            "remove them from the whitelist")


def plan_folder(folder: str, whitelist: list[str] | None, current: PluginManager | None,
                trusted_keys: TrustedKeys | None = None) -> dict[str, str]:
    """What ``reload()`` would do with ``folder``, as artifact path (or name) -> word.

    The words are ``select``'s, ``fresh`` shown as ``ok`` (the word Details will use), plus
    ``error: <why>`` for an artifact that does not read or verify. Like a load, it reads only
    the artifacts that a running version's snapshot cannot stand for (``reuse``).

    Raises:
        HotswapError: the folder cannot be read.
    """
    wanted = {name.lower() for name in whitelist} if whitelist is not None else None
    result: dict[str, str] = {}
    paths: dict[str, str] = {}
    for key, path in artifact_files(folder, step="plan"):
        if wanted is not None and key not in wanted:
            continue
        if key in paths:
            why = (f"duplicate name: {os.path.basename(paths[key])} and "
                   f"{os.path.basename(path)} differ only in case; remove all but one")
            result[paths[key]] = result[path] = f"error: {why}"
            continue
        paths[key] = path
    running: dict[str, Version] = {}
    if current is not None:
        running = {v.name.lower(): v for v in current._versions()}
    if whitelist is not None:
        missing = _missing(whitelist, paths.keys())
        if missing:  # the load fails as a whole and the running plugins stay
            for name in missing:
                result[name] = f"error: {_missing_text(folder, [name])}"
            for version in running.values():
                result[version.file] = UNCHANGED
            return dict(sorted(result.items()))
    artifacts: dict[str, Artifact] = {}
    for key, path in paths.items():
        if path in result:
            continue
        try:
            snapshot = reuse(path, running.get(key), trusted_keys)
            artifacts[key] = snapshot if snapshot is not None else _read(path, trusted_keys)[0]
        except HotswapError as exc:
            result[path] = f"error: {exc}"
    if not paths:  # reload keeps the current plugins when the folder holds none
        for version in running.values():
            result[version.file] = UNCHANGED
        return result
    for key, word in select(running, paths.keys(), artifacts).items():
        where = paths[key] if key in paths else running[key].name
        result[where] = "ok" if word == FRESH else word
    return dict(sorted(result.items()))


def artifact_files(folder: str, step: str) -> list[tuple[str, str]]:
    """(lower-case plugin name, path) of each artifact file in ``folder``, sorted by file name.

    Hidden files and other suffixes are skipped; a ``*.hsp`` entry that is not a regular file
    (a folder, a FIFO, a device) is listed, so that reading it reports it by name instead of
    silently dropping the plugin it replaced. Names are not de-duplicated.

    Raises:
        HotswapError: the folder cannot be read (reported with ``step``).
    """
    global _listed
    try:
        entries = os.listdir(folder)
    except OSError as exc:
        raise HotswapError(
            f"plugin folder {folder} cannot be read ({exc.strerror or exc}); check the "
            "folder given to PluginManagerSwapper",
            step=step,
        ) from exc
    entries.sort()
    listed = _listed
    if listed is not None and listed[0] == folder and listed[1] == entries:
        return list(listed[2])  # the same names as last time: one list compare, in C
    prefix = os.path.join(folder, "")  # what os.path.join(folder, entry) starts with
    cut = -len(ARTIFACT_SUFFIX)
    found = [(entry[:cut].lower(), prefix + entry) for entry in entries
             if entry.endswith(ARTIFACT_SUFFIX) and not entry.startswith(".")]
    _listed = (folder, entries, found)
    return list(found)


#: the last listing ``artifact_files`` made (folder, its sorted entries, the result): a reload
#: usually finds the same names, and 300 of them cost 0.2 ms to pick and split again
_listed: tuple[str, list[str], list[tuple[str, str]]] | None = None


def list_artifacts(folder: str, whitelist: list[str] | None,
                   trusted_keys: TrustedKeys | None = None, *,
                   running: Mapping[str, Version] | None = None,
                   checked: dict[str, int] | None = None) -> dict[str, Artifact]:
    """Read and verify the artifacts of ``folder`` that ``whitelist`` (None: all) selects
    (signed by one of ``trusted_keys`` when given).

    Returns lower-case plugin name -> ``Artifact``; an empty dict when there is none. An
    artifact whose file is provably the one a ``running`` version was loaded from is not read
    again: that version's snapshot (without members) stands for it (``reuse``). ``checked``,
    when given, receives the time (``time.time_ns``) before each artifact read here was read.

    Raises:
        HotswapError: the folder cannot be read, two names differ only in case, whitelisted
            names are missing, or artifacts do not verify (every one is reported).
    """
    paths: dict[str, str] = {}
    duplicates: list[str] = []
    for key, path in artifact_files(folder, step="list"):
        if key in paths:
            duplicates.append(f"{os.path.basename(paths[key])} and {os.path.basename(path)}")
        else:
            paths[key] = path
    if duplicates:
        raise HotswapError(
            f"duplicate name: artifacts {'; '.join(duplicates)} in {folder} differ only in "
            "case; remove all but one",
            step="list",
        )
    if not paths:
        return {}
    if whitelist is not None:
        wanted = {name.lower() for name in whitelist}
        missing = _missing(whitelist, paths.keys())
        if missing:
            raise HotswapError(_missing_text(folder, missing), plugin=missing[0], step="list")
        paths = {key: path for key, path in paths.items() if key in wanted}
    artifacts: dict[str, Artifact] = {}
    errors: list[HotswapError] = []
    running = running or {}
    for key, path in sorted(paths.items()):
        try:
            snapshot = reuse(path, running.get(key), trusted_keys)
            if snapshot is not None:
                artifacts[key] = snapshot
                continue
            artifacts[key], read_at = _read(path, trusted_keys)
            if checked is not None:
                checked[key] = read_at
        except HotswapError as exc:
            errors.append(exc)
    if errors:
        if len(errors) == 1:
            raise errors[0]
        raise HotswapError("; ".join(str(e) for e in errors), plugin=errors[0].plugin,
                           step="verify") from errors[0]
    return artifacts


#: how long after its file last changed a snapshot must have been read for the file's identity
#: alone to prove it unchanged since (nanoseconds): more than the coarsest file time stamps (a
#: second on some filesystems); within it, a write in the same clock tick would go unseen
RACY_NS = 2_000_000_000


def _read(path: str, trusted_keys: TrustedKeys | None) -> tuple[Artifact, int]:
    """Read and verify ``path``; the artifact, and the time just before it was read."""
    started = time.time_ns()
    return read_artifact(path, trusted_keys=trusted_keys), started


def _identity(info: os.stat_result) -> tuple[int, int, int, int, int]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def reuse(path: str, version: Version | None,
          trusted_keys: TrustedKeys | None) -> Artifact | None:
    """The running ``version``'s snapshot (its artifact without members) when the file at
    ``path`` is provably the one it was read and verified from, else None (read the file).

    Provably the same: the same path and the same device, inode, size, ``st_mtime_ns`` and
    ``st_ctime_ns`` as the file read, and either that read came ``RACY_NS`` after the file's
    last change, or the file's bytes still hash to the snapshot's sha256 (checked here, and
    remembered in ``version.checked_ns``). With ``trusted_keys``, only a snapshot whose
    signature was verified against one of them stands.
    """
    if version is None:
        return None
    snapshot = version.artifact
    settled = version.settled
    if settled is not None and settled[0] == path and snapshot is not None and (
            trusted_keys is None or snapshot.signed_by in trusted_keys):
        # the common case, a plugin untouched since long before its snapshot was read: one
        # stat and one tuple compare (this runs for every plugin of every reload)
        try:
            info = os.stat(path)
        except OSError:
            return None
        if (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns,
                info.st_ctime_ns) == settled[1]:
            return snapshot
        return None
    if snapshot is None or snapshot.identity is None:
        return None
    if snapshot.path != path and snapshot.path != os.path.abspath(path):
        return None
    if trusted_keys is not None and (snapshot.signed_by is None
                                     or snapshot.signed_by not in trusted_keys):
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None  # reading it reports why
    if _identity(info) != snapshot.identity:
        return None
    # the later of the two, without a call of max(): this runs for every plugin of every reload
    changed = info.st_ctime_ns if info.st_ctime_ns > info.st_mtime_ns else info.st_mtime_ns
    if version.checked_ns - changed > RACY_NS:
        version.settled = (path, snapshot.identity)  # for the fast path above
        return snapshot
    # the hash read starts after this: a write from now on changes the ctime, unless it falls
    # in the tick of the last change, which keeps this snapshot racy and hashed next time
    now = time.time_ns()
    if not _hashes_to(path, snapshot):
        return None
    version.checked_ns = now
    return snapshot


def _hashes_to(path: str, snapshot: Artifact) -> bool:
    """Whether the regular file at ``path``, still of the snapshot's identity, holds bytes whose
    sha256 is the snapshot's (opened non-blocking: what is there may have been swapped)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return False
    try:
        if _identity(os.fstat(fd)) != snapshot.identity:
            return False
        size = snapshot.identity[2]
        chunks: list[bytes] = []
        got = 0
        with open(fd, "rb", buffering=0, closefd=False) as handle:
            while got <= size:  # one byte past the size: a file that grew is not the same
                chunk = handle.read(size + 1 - got)
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        data = b"".join(chunks)
    except OSError:
        return False
    finally:
        os.close(fd)
    return len(data) == size and hashlib.sha256(data).hexdigest() == snapshot.sha256
