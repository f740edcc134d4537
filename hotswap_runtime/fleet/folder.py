"""The folder channel: releases and status reports in a plain folder (README "Fleet").

Layout::

    <root>/releases/<revision>/   the release's artifacts and RELEASE.json, immutable once there
    <root>/current                symlink to releases/<revision>: the live release
    <root>/status/<instance>.json each instance's last report
    <root>/.incoming/<sha256>.hsp artifacts stored by put_artifact, waiting for publish_release

Design note on atomicity. A release folder is assembled under a temporary name inside
``releases/`` and renamed to ``releases/<N>`` in one step: renaming a folder onto a name that
holds a non-empty folder fails, so that rename is the claim on revision N (of two publishers
racing for N, exactly one rename succeeds, the other gets ``PublishConflict``). Only then is
``current`` switched, by renaming a new symlink over the old one, so a reader sees either the
old release or the new one, whole. Publishers also hold an ``flock`` on ``<root>/.lock``
around check-claim-switch, so ``current`` only ever moves forward even when several publish
at once; the rename stays the guarantee where ``flock`` is not honoured. Status files are
written to a temporary name and renamed. Any deployment tool can fill such a folder by hand
(rsync a release folder, then switch the link) and followers see it.

There is no portable change notification for a folder without a dependency, so
``wait_for_change`` polls the ``current`` link with one ``readlink`` every ``poll`` seconds
(50 ms by default: cheap, and well inside the one-second convergence goal).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..artifact import write_atomically
from .channel import (
    ArtifactRef,
    Channel,
    ChannelError,
    ChannelUnavailable,
    PublishConflict,
    Release,
    status_expired,
)

__all__ = ["FolderChannel"]

logger = logging.getLogger("hotswap.fleet")

RELEASES = "releases"
CURRENT = "current"
STATUS = "status"
INCOMING = ".incoming"
RELEASE_FILE = "RELEASE.json"
_CHUNK = 1 << 20
_SAFE = re.compile(r"[^A-Za-z0-9._:@-]")


def status_file_name(instance: str) -> str:
    """The file of an instance's report: its id with anything but ``[A-Za-z0-9._:@-]`` escaped."""
    escaped = _SAFE.sub(lambda m: "%" + "%".join(f"{b:02X}" for b in m.group().encode()), instance)
    return ("%2E" + escaped[1:] if escaped.startswith(".") else escaped) + ".json"


def sha256_file(path: Path) -> tuple[str, int]:
    """The hex sha256 and size of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``path`` (created if missing) for the block: one
    process (or thread: each call opens the file anew) at a time, on POSIX. Without ``fcntl``
    (Windows) it excludes nobody; callers keep their renames safe without it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def copy_checked(source: Path, ref: ArtifactRef, dest: Path, where: str) -> Path:
    """Copy ``source`` to ``dest`` atomically, checking its sha256 and size against ``ref``.

    Raises:
        ChannelError: the copy differs from ``ref`` (nothing is left at ``dest``).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    digest = hashlib.sha256()
    size = 0
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb") as out:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if digest.hexdigest() != ref.sha256 or size != ref.size:
            raise ChannelError(
                f'artifact "{ref.file}" in {where} has sha256 {digest.hexdigest()[:16]}… and '
                f"{size} bytes, but the release says {ref.sha256[:16]}… and {ref.size} bytes; "
                "it was changed after publishing: publish a new release")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return dest


class FolderChannel(Channel):
    """A channel kept in the folder ``root`` (see the module note for the layout).

    Opening never fails: a folder that does not exist yet is a channel that is away
    (``ChannelUnavailable``) until ``hotswap publish`` creates it.

    Args:
        root: the channel folder.
        poll: seconds between two looks at ``current`` in ``wait_for_change``.
    """

    def __init__(self, root: str | os.PathLike[str], *, poll: float = 0.05) -> None:
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.url = str(self.root)
        self.name = self.root.name
        self.poll = poll

    def __repr__(self) -> str:
        return f"<FolderChannel {self.url}>"

    # -- checks -------------------------------------------------------------------------------
    def _check(self) -> None:
        """Raise unless ``root`` is a channel folder (or an empty folder, a channel to be)."""
        root = self.root
        try:
            st = root.stat()
        except FileNotFoundError:
            raise ChannelUnavailable(f"channel folder {root} does not exist (yet); create it with "
                                     "hotswap publish, or mount it") from None
        except OSError as exc:
            raise ChannelUnavailable(f"channel folder {root} cannot be read ({exc.strerror}); "
                                     "check its permissions or mount") from exc
        if not stat.S_ISDIR(st.st_mode):
            raise ChannelError(f"{root} is a file, not a channel folder; give the folder that "
                               "hotswap publish created (it holds releases/ and current)")
        if not (root / RELEASES).is_dir():
            try:
                strangers = sorted(p.name for p in root.iterdir()
                                   if p.name not in (STATUS, INCOMING, ".lock"))
            except OSError as exc:
                raise ChannelUnavailable(f"channel folder {root} cannot be listed "
                                         f"({exc.strerror}); check its permissions") from exc
            if strangers:
                shown = ", ".join(strangers[:3]) + (", …" if len(strangers) > 3 else "")
                raise ChannelError(f"{root} is not a channel: it holds {shown} but no releases/ "
                                   "folder; give the folder hotswap publish created, or a new "
                                   "or empty folder to start a channel")

    def _read_release(self, folder: Path, where: str) -> Release:
        try:
            raw = (folder / RELEASE_FILE).read_bytes()
        except FileNotFoundError:
            raise ChannelError(f"{where}: no {RELEASE_FILE}; publish releases with hotswap "
                               "publish") from None
        except OSError as exc:
            raise ChannelUnavailable(f"{where}: cannot read {RELEASE_FILE} ({exc.strerror})") from exc
        return Release.from_json(raw, where=str(folder / RELEASE_FILE))

    def _current_revision(self) -> int | None:
        try:
            target = os.readlink(self.root / CURRENT)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ChannelError(f"{self.root / CURRENT} is not a symlink to a release "
                               f"({exc.strerror}); switch it with hotswap publish or rollback") from exc
        name = os.path.basename(os.path.normpath(target))
        if not name.isdigit():
            raise ChannelError(f"{self.root / CURRENT} points to {target!r}, not to "
                               f"{RELEASES}/<revision>; switch it with hotswap publish or rollback")
        return int(name)

    # -- releases -----------------------------------------------------------------------------
    def current(self) -> Release | None:
        """The live release (``current``'s target), or None before the first publish."""
        self._check()
        revision = self._current_revision()
        if revision is None:
            return None
        return self.release(revision)

    def release(self, revision: int) -> Release:
        """The release ``releases/<revision>``; ChannelError naming it when unknown."""
        self._check()
        folder = self.root / RELEASES / str(revision)
        if not folder.is_dir():
            known = self._revisions()
            listed = (f"known revisions: {known[0]}..{known[-1]}" if known
                      else "nothing was published yet")
            raise ChannelError(f"unknown revision {revision} in channel {self.url} ({listed}); "
                               "hotswap status shows the current one")
        release = self._read_release(folder, f"revision {revision} in {self.url}")
        if release.revision != revision:
            raise ChannelError(f"{folder / RELEASE_FILE} says revision {release.revision}, but "
                               f"its folder is {revision}; the channel was edited by hand")
        return release

    def _revisions(self) -> list[int]:
        try:
            names = os.listdir(self.root / RELEASES)
        except FileNotFoundError:
            return []
        return sorted(int(n) for n in names if n.isdigit())

    def history(self) -> list[Release]:
        """Every release in ``releases/``, oldest first (incomplete folders skipped)."""
        self._check()
        out = []
        for revision in self._revisions():
            try:
                out.append(self.release(revision))
            except ChannelError as exc:
                logger.warning("channel %s: skipping revision %d: %s", self.url, revision, exc)
        return out

    def _create(self) -> None:
        """Make ``root`` a channel folder (publishers only; followers never create it)."""
        self._check_creatable()
        (self.root / RELEASES).mkdir(parents=True, exist_ok=True)
        (self.root / STATUS).mkdir(exist_ok=True)

    def _check_creatable(self) -> None:
        try:
            self._check()
        except ChannelUnavailable:
            if self.root.exists():
                raise
        parent = self.root.parent
        if not parent.is_dir() and parent.exists():
            raise ChannelError(f"{parent} is a file; the channel folder {self.root} cannot be "
                               "created below it")

    def put_artifact(self, path: Path, ref: ArtifactRef) -> None:
        """Copy the artifact to ``.incoming/<sha256>.hsp`` (checked), ready for publish_release."""
        self._create()
        dest = self.root / INCOMING / f"{ref.sha256}.hsp"
        if dest.is_file() and sha256_file(dest) == (ref.sha256, ref.size):
            return
        copy_checked(Path(path), ref, dest, str(path))

    def _find(self, ref: ArtifactRef, *, staged: bool = True) -> Path:
        """A file holding ``ref``: in ``.incoming`` (unless ``staged`` is false), else in the
        newest release that has it."""
        incoming = self.root / INCOMING / f"{ref.sha256}.hsp"
        if staged and incoming.is_file():
            return incoming
        for revision in reversed(self._revisions()):
            candidate = self.root / RELEASES / str(revision) / ref.file
            try:
                if candidate.stat().st_size != ref.size:
                    continue
                release = self.release(revision)
            except (OSError, ChannelError):
                continue
            if (found := release.artifacts.get(ref.name)) is not None and found.sha256 == ref.sha256:
                return candidate
        raise ChannelError(f'artifact "{ref.file}" (sha256 {ref.sha256[:16]}…) is not in channel '
                           f"{self.url}; publish it with hotswap publish")

    def publish_release(self, release: Release) -> Release:
        """Claim ``releases/<revision>`` (compare-and-set on the current revision) and switch
        ``current`` to it; PublishConflict when another publisher got there first."""
        self._create()
        releases = self.root / RELEASES
        sources = {name: self._find(ref) for name, ref in release.artifacts.items()}
        tmp = Path(tempfile.mkdtemp(prefix=f".r{release.revision}.", dir=releases))
        try:
            for name, ref in release.artifacts.items():
                dest = tmp / ref.file
                try:
                    os.link(sources[name], dest)
                except OSError:  # another file system, or no hard links: copy (checked)
                    copy_checked(sources[name], ref, dest, str(sources[name]))
            (tmp / RELEASE_FILE).write_text(json.dumps(release.to_json(), indent=1) + "\n")
            os.chmod(tmp, 0o755)
            with locked(self.root / ".lock"):  # where flock is missing the rename is still the claim
                now = self._current_revision()
                expected = (now or 0) + 1
                if release.revision != expected:
                    raise PublishConflict(
                        f"revision {release.revision} cannot be published to {self.url}: the "
                        f"current revision is {now} (someone published meanwhile); check "
                        "hotswap status and publish again")
                try:
                    os.rename(tmp, releases / str(release.revision))
                except OSError as exc:
                    raise PublishConflict(
                        f"revision {release.revision} in {self.url} was claimed by another "
                        "publisher at the same time; check hotswap status and publish "
                        "again") from exc
                self._switch(release.revision)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        for ref in release.artifacts.values():
            with contextlib.suppress(OSError):
                (self.root / INCOMING / f"{ref.sha256}.hsp").unlink()
        return release

    def _switch(self, revision: int) -> None:
        link = self.root / CURRENT
        tmp = self.root / f".{CURRENT}.{os.getpid()}.{time.monotonic_ns()}"
        os.symlink(f"{RELEASES}/{revision}", tmp)
        try:
            os.replace(tmp, link)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def fetch_artifact(self, ref: ArtifactRef, dest: Path) -> Path:
        """Copy the artifact into ``dest`` atomically, checking sha256 and size."""
        self._check()
        # only from a release folder: a publisher unlinks its .incoming copy right after the
        # switch, so a follower quick to see the release could lose the file it was reading
        source = self._find(ref, staged=False)
        return copy_checked(source, ref, Path(dest), f"channel {self.url}")

    def wait_for_change(self, after: int | None, timeout: float) -> Release | None:
        """Poll ``current`` every ``poll`` seconds until its revision differs from ``after``."""
        deadline = time.monotonic() + timeout
        while True:
            self._check()
            if self._current_revision() != after:
                return self.current()
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(self.poll, left))

    # -- instances ----------------------------------------------------------------------------
    def report(self, status: Mapping[str, Any]) -> None:
        """Write ``status/<instance>.json`` atomically (the status folder is made if missing)."""
        self._check()
        folder = self.root / STATUS
        try:
            folder.mkdir(exist_ok=True)
            write_atomically(folder / status_file_name(str(status["instance"])),
                             json.dumps(dict(status), sort_keys=False).encode())
        except OSError as exc:
            raise ChannelUnavailable(f"cannot write the status of {status['instance']!r} to "
                                     f"{folder} ({exc.strerror}); check its permissions") from exc

    def statuses(self) -> list[dict[str, Any]]:
        """Every report in ``status/``, sorted by instance; unreadable ones are skipped and
        expired ones (``status_expired``: a vanished instance) removed."""
        self._check()
        out = []
        now = time.time()
        try:
            names = os.listdir(self.root / STATUS)
        except FileNotFoundError:
            return []
        for name in names:
            if not name.endswith(".json") or name.startswith("."):
                continue
            path = self.root / STATUS / name
            try:
                obj = json.loads(path.read_bytes())
                age = now - path.stat().st_mtime
            except (OSError, ValueError):
                continue
            if not (isinstance(obj, dict) and isinstance(obj.get("instance"), str)):
                continue
            if status_expired(obj, age):   # a vanished instance: forgotten, as NATS expires it
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            out.append(obj)
        return sorted(out, key=lambda s: s["instance"])
