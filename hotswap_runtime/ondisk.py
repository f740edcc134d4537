"""Each version's files on disk: the runtime folder, per-version folders, sweeping, the write guard.

Design note (README "Under the hood", files on disk). Real code reads files next to its modules, so every
version gets its package members as real, read-only files. Writing ~200 files per load would
cost a 100-module plugin a third of its reload, so the files live in a *store* keyed by the
artifact's sha256, written once and shared by every load of that artifact in every process on
the same runtime folder (re-wired dependents, rollbacks, several workers, alternating builds),
and a version's own folder is one symlink into it::

    <runtime_dir>/                          0700, created if missing (default: a private folder
                                            under the system temp directory)
      store/<sha256>-<layout>.<k>/          one artifact's package, written once:
        <name>/...                            files 0444, folders 0555
        (xattr user.hotswap.seal)             sha256 of the lstat of each file and folder once
                                              sealed (a ``.seal`` file holding them where the
                                              file system has no user xattrs)
      procs/<pid>-<random>/                 one swapper's folder, 0700
        .owner                              flock'ed (shared lock) for the swapper's whole life
        world#3 -> <runtime_dir>/store/<...>  a version's folder: ``…/world#3/world/jobs.py``
        .keep-<entry> -> …/store/<...>      a store entry this swapper keeps for reuse once no
                                            version of its own uses it (its last version's
                                            folder, renamed: never a moment without a link)

A store entry is written into a temporary folder and renamed into place, so it is complete or
absent. A file equal to the same file of the copy the plugin's running version uses is a hard
link to it rather than a new file (a link costs a fifth of a write: a rebuild after a one-file
change writes one file). Before reuse, an entry's files are checked against its seal (inode,
size, mtime and mode of every file and folder: a write changes the mtime, a chmod the mode, a
replaced file the inode, a new or removed file its folder's mtime; not the ctime, which a hard
link from a later copy changes), and an entry that fails the check is never used again (a fresh
one is written beside it). So a copy corrupted by a writer that file modes did not stop can
never reach the next load.

Who owns what: a swapper holds a lock on its ``.owner`` file for as long as it lives, and the
kernel drops that lock when the process dies, however it dies (SIGKILL included); a process id
alone could be reused. Every swapper, when it starts, sweeps each proc folder whose ``.owner``
it can lock (its owner is dead), then every store entry no symlink of a live proc folder points
to.

Design note on locking: hosts sharing a runtime folder (every host of a user shares the default
one) never wait for each other over unrelated versions; there is no folder-wide lock.

- A proc folder is made as ``procs/.new-<random>``, its ``.owner`` created and locked inside,
  then renamed to its final name: a sweep never sees a final-named folder without a live owner,
  and leaves a ``.new-`` folder alone unless it is older than ``NEW_STALE_S`` (its maker was
  killed in those microseconds).
- Removing (a dead host's proc folder, an unused store entry) first renames the thing aside
  (``.gone-<random>``): of hosts sweeping at once exactly one wins the rename, and the slow
  removal of the tree runs under no lock at all.
- The only lock is per store entry, a ``flock`` on the entry's folder: linking a version to an
  entry holds it for one ``symlink``, collecting holds it (non-blocking: a busy entry is
  skipped) from before the references are read until the entry is renamed aside. So a link
  never points to an entry being removed, and two hosts wait for each other only over the same
  artifact, for a few microseconds.
- The last host to close removes ``store``, ``procs`` and (when it made it, or it is the
  default one) the runtime folder, each only when empty: a host that finds one missing at any
  step (starting, placing a copy) makes it again rather than failing. A live host's proc folder
  is never empty, so nothing a live host uses goes with them. Two hosts removing the same aside
  (a closing host and a sweep) is expected: the loser is quiet.
- Writing a new copy takes no lock: it goes to a temporary folder inside the writer's own proc
  folder (``procs/<pid>-<random>/.tmp-<random>``: swept with it if the writer dies), and is
  renamed into the store, locked until its first link exists; when another host placed a sound
  copy first, the rename fails and that copy is used.

Read-only for root too: root (or any process with ``CAP_DAC_OVERRIDE``) ignores file modes. When
a probe shows the modes do not bind this process (``os.access`` of a 0444 file for writing), the
runtime installs an audit hook (``sys.addaudithook``, PEP 578; it cannot be removed, and costs a
Python call and a dict lookup per audited event, a fraction of a microsecond: importing 100
modules raises about 1600) that raises ``PermissionError`` for every write-mode ``open``,
remove, rename, chmod, link, truncate and the like under a runtime folder in use, except the
runtime's own. It covers Python code in this process; C code writing through its own calls, and
other processes, are not stopped, which is why reuse checks the seal.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import posixpath
import secrets
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from . import forks
from .errors import HotswapError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: every other proc folder counts as alive
    fcntl = None  # type: ignore[assignment]  # no such module on Windows

__all__ = ["RuntimeFolder", "default_runtime_dir", "guard_active"]

logger = logging.getLogger("hotswap")

#: bump when what a store entry holds changes: entries of another layout are never reused
LAYOUT = "2"
STORE = "store"
PROCS = "procs"
SEAL = ".seal"
#: the extended attribute holding an entry's seal digest: setting it costs ~2 us where creating
#: the .seal file costs a new inode (tens of microseconds, ~80 on some ext4 folders)
SEAL_XATTR = "user.hotswap.seal"
OWNER = ".owner"
LOCK = ".lock"  # the folder-wide lock of older runtimes: removed with the skeleton
KEEP_PREFIX = ".keep-"
TMP_PREFIX = ".tmp-"
#: a proc folder being made (it gets its final name once its owner file is locked)
NEW_PREFIX = ".new-"
#: a proc folder or store entry claimed for removal (renamed aside first: one remover wins)
DEAD_PREFIX = ".gone-"
#: a ``.new-`` folder older than this (seconds) is a leftover of a host killed while making it
NEW_STALE_S = 600.0
_RETRIES = 100
#: store entries locked at once while collecting (each lock holds a descriptor)
_LOCK_BATCH = 64
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
#: store entries a swapper keeps for reuse once no version of its own uses them
KEEP_ENTRIES = 8
KEEP_BYTES = 256 * 1024 * 1024


def default_runtime_dir() -> str:
    """``<system temp dir>/hotswap-<uid>``: private to the user running the host."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return os.path.join(tempfile.gettempdir(), f"hotswap-{user}")


# -- the write guard --------------------------------------------------------------------------
class _Guard:
    """The audit hook that keeps runtime folders read-only where file modes do not."""

    def __init__(self) -> None:
        self.roots: dict[str, int] = {}  # realpath + os.sep -> how many RuntimeFolders use it
        # what the hook reads: replaced whole, never changed in place, so it needs no lock
        self.prefixes: tuple[str, ...] = ()
        self.installed = False
        self.lock = threading.Lock()
        self.local = threading.local()  # .depth > 0 while the runtime itself writes

    def add(self, root: str) -> None:
        with self.lock:
            key = os.path.realpath(root) + os.sep
            self.roots[key] = self.roots.get(key, 0) + 1
            self.prefixes = tuple(self.roots)
            if not self.installed:
                sys.addaudithook(self.hook)
                self.installed = True

    def remove(self, root: str) -> None:
        with self.lock:
            key = os.path.realpath(root) + os.sep
            count = self.roots.get(key, 0) - 1
            if count <= 0:
                self.roots.pop(key, None)
            else:
                self.roots[key] = count
            self.prefixes = tuple(self.roots)

    @contextlib.contextmanager
    def allowed(self) -> Iterator[None]:
        """The runtime's own writes (this thread only)."""
        local = self.local
        local.depth = getattr(local, "depth", 0) + 1
        try:
            yield
        finally:
            local.depth -= 1

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        # called for every audited event of the process: one dict lookup for the others
        positions = _WRITE_EVENTS.get(event)
        if positions is None or not self.prefixes:
            return
        if getattr(self.local, "depth", 0):  # a write of our own (materializing a version)
            return
        if event == "open":
            flags = args[2] if len(args) > 2 else None
            mode = args[1]
            if isinstance(flags, int) and flags >= 0:
                if not flags & _WRITE_FLAGS:
                    return
            elif not (isinstance(mode, str) and any(c in mode for c in "wax+")):
                return
        for index, follow in positions:
            if index < len(args):
                self._check(event, args[index], follow)

    def _check(self, event: str, target: Any, follow: bool) -> None:
        if isinstance(target, int) or target is None:
            return  # a descriptor: opened for writing (refused) or not ours to judge
        try:
            path = os.fsdecode(os.fspath(target))
        except TypeError:
            return
        path = os.path.abspath(path)
        if follow:
            real = os.path.realpath(path)
        else:  # the entry itself is what changes: resolve its folder only
            real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
        probe = real + os.sep
        for root in self.prefixes:
            if probe.startswith(root):
                raise PermissionError(
                    errno.EACCES,
                    f"{event}: a hot-loaded version's files are read-only; write to a folder of "
                    "your own (tempfile, or a data folder the host passes in)", path)


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
#: audit event -> (argument index, follow symlinks) of each path it changes
_WRITE_EVENTS: dict[str, tuple[tuple[int, bool], ...]] = {
    "open": ((0, True),),
    "os.remove": ((0, False),),
    "os.rmdir": ((0, False),),
    "os.mkdir": ((0, False),),
    "os.rename": ((0, False), (1, False)),
    "os.link": ((0, True), (1, False)),
    "os.symlink": ((1, False),),
    "os.chmod": ((0, True),),
    "os.chown": ((0, True),),
    "os.chflags": ((0, True),),
    "os.lchflags": ((0, False),),
    "os.truncate": ((0, True),),
    "os.utime": ((0, True),),
    "os.setxattr": ((0, True),),
    "os.removexattr": ((0, True),),
    "os.mkfifo": ((0, False),),
    "os.mknod": ((0, False),),
    "shutil.rmtree": ((0, False),),
}

_GUARD = _Guard()
forks.free_in_child(_GUARD.lock)  # held for a dict update only


def guard_active() -> bool:
    """Whether the audit-hook guard is installed in this process (file modes do not bind it)."""
    return _GUARD.installed


# -- helpers ----------------------------------------------------------------------------------
def _remove_tree(path: str) -> None:
    """Remove ``path`` (a folder of read-only folders, a file or a symlink); missing is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    # a 0555 folder keeps its entries, even from its owner: open each up first (root need not)
    os.chmod(path, 0o700)
    for folder, dirs, _ in os.walk(path):
        for name in dirs:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(os.path.join(folder, name), 0o700)
    shutil.rmtree(path)


def _remove_quietly(path: str) -> None:
    """``_remove_tree``, where another host may be removing the same tree at the same time."""
    try:
        _remove_tree(path)
    except OSError as exc:
        if os.path.lexists(path):
            logger.debug("cannot remove %s yet (%s): the next sweep does", path, str(exc))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


#: a copy to hard-link unchanged files from: its path, its files, its seal
_Base = tuple[str, Mapping[str, bytes], dict[str, Any]]


def _stat_key(st: os.stat_result) -> list[int]:
    # no ctime: a hard link from a later copy changes it (writing changes the mtime, chmod the
    # mode, replacing the file the inode, adding or removing one its folder's mtime)
    return [st.st_ino, st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode)]


class RuntimeFolder:
    """One swapper's share of a runtime folder: its proc folder, its versions' folders, its
    store entries.

    Args:
        path: the runtime folder (None: ``default_runtime_dir()``).
        log: where to report swept leftovers and replaced store entries.

    Raises:
        HotswapError: the folder cannot be created or written, naming it and what to check.
    """

    def __init__(self, path: str | os.PathLike[str] | None, log: logging.Logger | None = None) -> None:
        self.default = path is None
        self.root = os.path.abspath(os.fspath(path)) if path is not None else default_runtime_dir()
        self.log = log or logger
        self.store = os.path.join(self.root, STORE)
        self.procs = os.path.join(self.root, PROCS)
        self._lock = threading.RLock()
        self._owner_fd = -1
        self.proc = ""
        self._created_root = False
        self._in_use: dict[str, int] = {}  # store entry name -> versions of ours using it
        # entries kept for reuse by a ``.keep-`` link, made when their last version of ours is
        # freed: entry name -> bytes, least recently used first
        self._keep: OrderedDict[str, int] = OrderedDict()
        self._sizes: dict[str, int] = {}  # entry name -> bytes, for entries of ours
        self._folders: dict[str, str] = {}  # version folder -> store entry name
        # store entry -> (plugin, its files) of the newest copy of each plugin while a version
        # of ours uses it: the next copy hard-links the files that did not change instead of
        # writing them
        self._contents: dict[str, tuple[str, Mapping[str, bytes]]] = {}
        # store entry -> its seal, for the entries of ``_contents`` (checked against the files
        # before each link from them, without reading the .seal file again)
        self._seals: dict[str, dict[str, Any]] = {}
        # plugin -> the folders (relative) of its newest copy, and a temporary folder holding
        # them made ahead (when a version is freed, in the freer thread) for its next copy
        self._layouts: dict[str, frozenset[str]] = {}
        self._newest: dict[str, str] = {}  # plugin -> the entry of its newest copy
        self._spares: dict[str, tuple[str, frozenset[str]]] = {}
        self._guarded = False
        self._pid = os.getpid()
        self._inherited: list[int] = []  # owner files of the parent, in a forked child
        self.closed = False
        try:
            self._open()
        except OSError as exc:
            self._close_fds()
            if self.proc:
                with contextlib.suppress(OSError), _GUARD.allowed():
                    _remove_tree(self.proc)
            if self._guarded:
                _GUARD.remove(self.root)
            raise self._error(exc) from exc

    def _error(self, exc: OSError) -> HotswapError:
        where = f' ("{exc.filename}")' if exc.filename and exc.filename != self.root else ""
        hint = ("check that it is a folder (or can be created: its parent exists and is a "
                "writable folder), writable by this user, on a file system with free space")
        if self.default:
            hint += ", or pass runtime_dir= a folder of your own"
        return HotswapError(
            f'runtime folder "{self.root}" cannot be used{where}: {exc.strerror or exc}; {hint} '
            f"(it holds each loaded version's files)", step="runtime_dir")

    # -- start, sweep, close ------------------------------------------------------------------
    def _open(self) -> None:
        self._created_root = not os.path.isdir(self.root)
        with _GUARD.allowed():
            if self.default:
                # checked before anything is written into it; the last host to close may
                # remove it between our making it and this check: then made again
                for _ in range(_RETRIES):
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(self.root, 0o700)
                    with contextlib.suppress(FileNotFoundError):
                        st = os.stat(self.root)
                        break
                else:
                    raise OSError(errno.EAGAIN, "other hosts kept removing it", self.root)
                if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o022):
                    raise HotswapError(
                        f'runtime folder "{self.root}" belongs to another user or others can '
                        "write to it: a plugin's files there could be replaced; remove it, or "
                        "pass runtime_dir= a folder of your own", step="runtime_dir")
            owner = self._new_proc()
            # a probe, with no side effect: can this process write a 0444 file? (root can)
            if os.access(owner, os.W_OK):
                _GUARD.add(self.root)
                self._guarded = True
            self._sweep()

    def _skeleton(self) -> None:
        """The runtime folder, ``store`` and ``procs``, each 0700: the last host to close
        removes them, and may do so between any two of these steps (then they are made again)."""
        for _ in range(_RETRIES):
            try:
                for path in (self.root, self.store, self.procs):
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(path, 0o700)
                return
            except FileNotFoundError as exc:
                if exc.filename == self.root or os.fsdecode(exc.filename or "") == self.root:
                    os.makedirs(os.path.dirname(self.root), exist_ok=True)  # its parents
        raise OSError(errno.EAGAIN, "other hosts kept removing it", self.root)

    def _new_proc(self) -> str:
        """Make this process' proc folder, its owner file locked before the folder gets its
        final name (so a sweep never finds it without a live owner); the owner file's path."""
        for _ in range(_RETRIES):
            self._skeleton()
            try:
                new = tempfile.mkdtemp(prefix=NEW_PREFIX, dir=self.procs)
            except FileNotFoundError:
                continue  # the last host to close removed procs/ after our makedirs: again
            fd = os.open(os.path.join(new, OWNER), os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444)
            try:
                if fcntl is not None:
                    # shared: a child forked with this descriptor keeps the folder alive too
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                final = os.path.join(self.procs, f"{os.getpid()}-{new[-8:]}")
                os.rename(new, final)
            except BaseException:
                os.close(fd)
                with contextlib.suppress(OSError):
                    _remove_tree(new)
                raise
            self._owner_fd = fd
            self.proc = final
            return os.path.join(final, OWNER)
        raise OSError(errno.EAGAIN, "other hosts kept removing it", self.procs)

    def _forked(self) -> None:
        """In a child forked from the process that made this object: the parent's proc folder
        stays the parent's (the child keeps its owner file open, so the versions it inherited
        keep their files while it lives); the child's next version gets a folder of its own."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._lock = threading.RLock()  # another thread may have held it at the fork
        if self._owner_fd >= 0:
            self._inherited.append(self._owner_fd)
        self._owner_fd = -1
        self.proc = ""
        self._folders.clear()
        self._in_use.clear()
        self._keep.clear()
        self._contents.clear()
        self._seals.clear()
        self._newest.clear()
        self._spares.clear()  # in the parent's proc folder: the parent's

    def _lock_entry(self, entry: str, wait: bool) -> int | None:
        """Lock store entry ``entry`` (a flock on its folder, exclusive); the descriptor holding
        the lock, or None when the entry is gone (or busy, unless ``wait``). Only linking to an
        entry and collecting it take its lock: hosts never wait for each other's entries."""
        path = os.path.join(self.store, entry)
        try:
            fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            # a collector renames an entry aside under its lock: the one locked must still be it
            if os.path.samestat(os.fstat(fd), os.lstat(path)):
                return fd
        except OSError:
            pass
        os.close(fd)
        return None

    def _alive(self, proc: str) -> bool:
        """Whether the swapper owning proc folder ``proc`` still runs (its lock is held)."""
        if fcntl is None:
            return True
        try:
            fd = os.open(os.path.join(proc, OWNER), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False  # made before the folder got its name: without one, a crash's
        except OSError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    def _aside(self, path: str, folder: str) -> str | None:
        """Rename ``path`` to a hidden name in ``folder`` (a claim: of hosts sweeping at once,
        one wins); the new path, or None when another host took it first."""
        aside = os.path.join(folder, DEAD_PREFIX + secrets.token_hex(8))
        try:
            os.rename(path, aside)
        except OSError:
            return None
        return aside

    def _sweep(self) -> None:
        """Remove the proc folders of dead owners, then unreferenced store entries.

        Takes no lock: a dead host's folder is claimed by renaming it aside, then removed; a
        folder still being made (``.new-…``) is left alone unless it is old (its maker died
        making it)."""
        swept = []
        now = time.time()
        try:
            entries = list(os.scandir(self.procs))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            name = entry.name
            if entry.path == self.proc:
                continue
            if name.startswith(DEAD_PREFIX):  # claimed by a sweep (or close) that died midway
                _remove_quietly(entry.path)
                continue
            if name.startswith(NEW_PREFIX):
                try:
                    if now - entry.stat(follow_symlinks=False).st_mtime < NEW_STALE_S:
                        continue
                except OSError:
                    continue
            elif self._alive(entry.path):
                continue
            aside = self._aside(entry.path, self.procs)
            if aside is not None:
                _remove_quietly(aside)
                swept.append(name)
        if swept:
            self.log.info("runtime folder %s: removed the leftovers of %d stopped host(s): %s",
                          self.root, len(swept), ", ".join(sorted(swept)))
        self._collect()

    def _referenced(self) -> set[str]:
        """Store entries some live proc folder points to."""
        found: set[str] = set()
        try:
            procs = list(os.scandir(self.procs))
        except FileNotFoundError:
            return found
        for proc in procs:
            if proc.name.startswith(DEAD_PREFIX):
                continue
            try:
                links = list(os.scandir(proc.path))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for link in links:
                if link.is_symlink():
                    with contextlib.suppress(OSError):
                        found.add(os.path.basename(os.readlink(link.path)))
        return found

    def _collect(self, only: Iterable[str] | None = None) -> None:
        """Remove the store entries nobody points to (all of them, or those in ``only``).

        Each candidate is locked first (skipped when busy: a host is linking it), the
        references are read once every candidate is locked (no new link can appear), and each
        unreferenced one is renamed aside under its lock, then removed with no lock held."""
        if only is None:
            try:
                names = [entry.name for entry in os.scandir(self.store)]
            except FileNotFoundError:
                return
        else:
            names = list(only)
        trash = [os.path.join(self.store, name) for name in names
                 if name.startswith(DEAD_PREFIX)]  # claimed by a collector that died midway
        names = [name for name in names if not name.startswith(".")]
        for start in range(0, len(names), _LOCK_BATCH):
            held: dict[str, int] = {}
            try:
                for name in names[start:start + _LOCK_BATCH]:
                    fd = self._lock_entry(name, wait=False)
                    if fd is not None:
                        held[name] = fd
                if held:
                    referenced = self._referenced()
                    for name in held:
                        if name not in referenced:
                            aside = self._aside(os.path.join(self.store, name), self.store)
                            if aside is not None:
                                trash.append(aside)
            finally:
                for fd in held.values():
                    os.close(fd)
        for path in trash:
            _remove_quietly(path)

    def close(self) -> None:
        """Remove this swapper's proc folder and every store entry no other host uses.

        The last user of the runtime folder removes the folder's skeleton too (and the folder,
        when it created it or it is the default one), so nothing is left behind.
        """
        self._forked()
        with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                with _GUARD.allowed():
                    if self.proc:
                        # out of sight first (a sweep of a closing host's folder is harmless)
                        aside = self._aside(self.proc, self.procs)
                        self._close_owner()
                        if aside is not None:
                            # a host starting now may sweep this aside too: quiet if it wins
                            _remove_quietly(aside)
                    self._folders.clear()
                    self._in_use.clear()
                    self._keep.clear()
                    self._contents.clear()
                    self._seals.clear()
                    self._spares.clear()
                    self._close_owner()
                    self._collect()
                    self._remove_skeleton()
            except OSError as exc:
                # the text, not the exception: a handler keeping the record (pytest's caplog,
                # a MemoryHandler) would keep its traceback, whose frames hold the versions
                self.log.warning("runtime folder %s: cannot remove the files of this host's "
                                 "versions (%s); the next host on it sweeps them", self.root,
                                 str(exc))
            finally:
                self._close_fds()
                if self._guarded:
                    _GUARD.remove(self.root)
                    self._guarded = False

    def _remove_skeleton(self) -> None:
        # each rmdir fails on a folder another host uses: then that host removes it later
        try:
            os.rmdir(self.procs)
            os.rmdir(self.store)
        except OSError:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.root, LOCK))  # left by an older runtime
        if self.default or self._created_root:
            with contextlib.suppress(OSError):
                os.rmdir(self.root)  # only when empty

    def _close_owner(self) -> None:
        if self._owner_fd >= 0:
            os.close(self._owner_fd)
            self._owner_fd = -1

    def _close_fds(self) -> None:
        self._close_owner()
        while self._inherited:
            os.close(self._inherited.pop())

    # -- versions -----------------------------------------------------------------------------
    def materialize(self, name: str, load: int, sha256: str, files: Mapping[str, bytes]) -> str:
        """Give load ``load`` of plugin ``name`` its folder, ``<proc>/<name>#<load>``, holding
        ``files`` (member path -> bytes, every path under ``<name>/``) as read-only files.

        Raises:
            HotswapError: the files cannot be written (disk full, a member that is both a file
                and a folder); nothing of this version is left behind.
        """
        self._forked()
        with self._lock:
            if self.closed:
                raise HotswapError("the runtime folder was closed", plugin=name, step="files")
            folder = ""
            tmp = None
            try:
                with _GUARD.allowed():
                    if not self.proc:
                        self._new_proc()
                    link = os.path.join(self.proc, f"{name}#{load}")
                    layout = _layout(files)
                    found = self._find(name, sha256, files)
                    if found is not None and self._link(found[0], link):
                        entry, seal = found
                        folder = link
                    else:
                        # written with no lock held: other hosts go on loading meanwhile
                        tmp, seal = self._write(files, self._base(name),
                                                self._spare(name, layout))
                        entry, seal = self._place(tmp, name, sha256, files, link, seal)
                        tmp = None
                        folder = link
            except OSError as exc:
                if folder:
                    with contextlib.suppress(OSError), _GUARD.allowed():
                        os.unlink(folder)
                raise HotswapError(
                    f'plugin "{name}": cannot write its files into the runtime folder '
                    f'"{self.root}": {exc.strerror or exc}'
                    f'{f" ({exc.filename})" if exc.filename else ""}; check the free space and '
                    "permissions there, or pass runtime_dir= another folder",
                    plugin=name, step="files") from exc
            finally:
                if tmp is not None:
                    with _GUARD.allowed():
                        _remove_quietly(tmp)
            self._folders[folder] = entry
            self._in_use[entry] = self._in_use.get(entry, 0) + 1
            if entry not in self._sizes:
                self._sizes[entry] = sum(len(data) for data in files.values())
            if entry in self._keep:
                self._keep.move_to_end(entry)
            # only the newest copy of a plugin is linked from (``_base``): holding the files
            # of every older version still in use would keep their bytes (bytecode included,
            # which the versions themselves dropped) alive for as long as they run
            older = self._newest.get(name)
            if older is not None and older in self._contents:
                del self._contents[older]
                self._seals.pop(older, None)
            self._newest[name] = entry
            self._contents[entry] = (name, files)  # the newest last
            self._seals[entry] = seal
            self._layouts[name] = layout
        return folder

    def _base(self, name: str) -> _Base | None:
        """The newest sound copy of plugin ``name`` a version of ours uses, to link from."""
        entry = self._newest.get(name)
        if entry is None or entry not in self._contents:
            return None
        files = self._contents[entry][1]
        path = os.path.join(self.store, entry)
        seal = self._seals.get(entry)
        if seal is not None:
            # no check here: each file linked from it is checked against this seal once linked
            # (the same inode), and a load among busy threads pays each system call dearly
            return path, files, seal
        seal = self._sound(path, files)
        return None if seal is None else (path, files, seal)

    def _link(self, entry: str, folder: str) -> bool:
        """Make ``folder`` (a version's folder) a symlink to store entry ``entry``, under the
        entry's lock; False when the entry was collected meanwhile (write a fresh copy)."""
        fd = self._lock_entry(entry, wait=True)
        if fd is None:
            return False
        try:
            os.symlink(os.path.join(self.store, entry), folder)
        finally:
            os.close(fd)
        return True

    def release(self, folder: str) -> None:
        """The version owning ``folder`` is freed (or its load failed): remove its folder, and
        the store entries beyond what this swapper keeps for reuse that nobody else uses."""
        self._forked()
        with self._lock:
            entry = self._folders.pop(folder, None)
            if entry is None or self.closed:
                return
            try:
                with _GUARD.allowed():
                    count = self._in_use.get(entry, 0) - 1
                    if count > 0:
                        self._in_use[entry] = count
                        os.unlink(folder)
                        return
                    self._in_use.pop(entry, None)
                    self._contents.pop(entry, None)  # no version of ours holds its files
                    self._seals.pop(entry, None)
                    if entry in self._keep:
                        os.unlink(folder)
                        self._keep.move_to_end(entry)
                    else:
                        # the last version's folder becomes the link keeping the entry for
                        # reuse: one rename, and never a moment when nothing points to it;
                        # under the entry's lock, as a collector reading this proc folder
                        # meanwhile could see neither name
                        fd = self._lock_entry(entry, wait=True)
                        try:
                            os.rename(folder, os.path.join(self.proc, KEEP_PREFIX + entry))
                        finally:
                            if fd is not None:
                                os.close(fd)
                        self._keep[entry] = self._sizes.get(entry, 0)
                    self._evict()
                    self._make_spare(os.path.basename(folder).rpartition("#")[0])
            except OSError as exc:
                self.log.warning("runtime folder %s: cannot remove %s (%s)", self.root, folder,
                                 str(exc))

    def _make_spare(self, name: str) -> None:
        """Make the folders of plugin ``name``'s next copy ahead, while a version of it runs
        (called when an older one is freed, in the freer thread): a reload then writes only
        files (creating a folder costs as much as writing a file, tens of microseconds)."""
        layout = self._layouts.get(name)
        if layout is None or name in self._spares or self._newest.get(name) not in self._contents:
            return
        tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=self.proc)
        try:
            for folder in sorted(layout):  # a parent sorts before its children
                os.mkdir(os.path.join(tmp, folder), 0o700)
        except BaseException:
            _remove_quietly(tmp)
            raise
        self._spares[name] = (tmp, layout)

    def _spare(self, name: str, layout: frozenset[str]) -> tuple[str, frozenset[str]] | None:
        """The folders made ahead for plugin ``name``, when they are the ones ``layout`` needs."""
        spare = self._spares.pop(name, None)
        if spare is None:
            return None
        if spare[1] == layout and os.path.isdir(spare[0]):
            return spare
        _remove_quietly(spare[0])
        return None

    def _evict(self) -> None:
        """Drop the oldest kept entries beyond ``KEEP_ENTRIES``/``KEEP_BYTES``."""
        evicted: list[str] = []
        idle = [entry for entry in self._keep if entry not in self._in_use]
        total = sum(self._keep.values())
        while idle and (len(self._keep) > KEEP_ENTRIES or total > KEEP_BYTES):
            entry = idle.pop(0)
            total -= self._keep.pop(entry)
            self._sizes.pop(entry, None)
            os.unlink(os.path.join(self.proc, KEEP_PREFIX + entry))
            evicted.append(entry)
        if evicted:
            self._collect(evicted)

    # -- the store ----------------------------------------------------------------------------
    def _find(self, name: str, sha256: str,
              files: Mapping[str, bytes]) -> tuple[str, dict[str, Any]] | None:
        """The name and seal of a sound store entry holding ``files``, or None."""
        k = 0
        replaced = 0
        while True:
            entry = f"{sha256}-{LAYOUT}.{k}"
            path = os.path.join(self.store, entry)
            try:
                before = os.lstat(path).st_ino
            except OSError:
                return None
            seal = self._sound(path, files)
            if seal is not None:
                return entry, seal
            try:
                after = os.lstat(path).st_ino
            except OSError:
                return None  # collected while it was checked: not a changed copy
            if after != before and replaced < _RETRIES:
                # collected and placed again by other hosts while it was checked: the files
                # read were of two copies, neither changed; look at the new one
                replaced += 1
                continue
            self.log.warning("runtime folder %s: the files of %s were changed after they were "
                             "written (%s); writing a fresh copy", self.root, name, entry)
            k += 1

    def _place(self, tmp: str, name: str, sha256: str, files: Mapping[str, bytes],
               folder: str, seal: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Rename the written folder ``tmp`` into the store under the first name of ``sha256``
        that is free (or holds a sound copy another host placed first: that one is used, and
        ``tmp`` removed), and make ``folder`` a symlink to it; the entry's name and seal.

        ``tmp`` stays locked through the rename until the link exists: a collector skips it."""
        fd = os.open(tmp, os.O_RDONLY | _O_DIRECTORY | os.O_CLOEXEC)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            k = 0
            for _ in range(_RETRIES):
                entry = f"{sha256}-{LAYOUT}.{k}"
                path = os.path.join(self.store, entry)
                try:
                    os.rename(tmp, path)
                except FileNotFoundError:
                    if not os.path.lexists(tmp):
                        raise
                    # the last host to close removed store/ meanwhile (another host may have
                    # made it again already): make it, and try again
                    self._skeleton()
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                    # another host was faster: its copy, when sound, serves this version too
                    theirs = self._sound(path, files)
                    if theirs is not None and self._link(entry, folder):
                        _remove_tree(tmp)
                        return entry, theirs
                    if os.path.lexists(path):
                        k += 1
                    continue
                os.chmod(path, 0o555)
                os.symlink(path, folder)
                return entry, seal
            raise OSError(errno.EAGAIN, "other hosts kept taking its place", self.store)
        finally:
            os.close(fd)

    def _sound(self, path: str, files: Mapping[str, bytes],
               seal: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The seal of the entry at ``path`` when it is still exactly as sealed, for these
        members; None otherwise. ``seal``: the one this swapper wrote or read before (else the
        entry's seal digest, or its ``.seal`` file, is read)."""
        try:
            if seal is None:
                digest = _get_seal_digest(path)
                if digest is not None:
                    now = {rel: _stat_key(os.lstat(os.path.join(path, rel)))
                           for rel in (*files, *_layout(files))}
                    return now if _seal_digest(now) == digest else None
                with open(os.path.join(path, SEAL), "rb") as handle:
                    seal = json.loads(handle.read())
            if not isinstance(seal, dict) or any(member not in seal for member in files):
                return None
            for rel, expected in seal.items():
                if _stat_key(os.lstat(os.path.join(path, rel))) != expected:
                    return None
        except (OSError, ValueError):
            return None
        return seal

    def _write(self, files: Mapping[str, bytes], base: _Base | None,
               spare: tuple[str, frozenset[str]] | None = None) -> tuple[str, dict[str, Any]]:
        """Write ``files`` into a temporary folder and seal it; its path and seal.

        It lives in this host's proc folder until placed: a sweep removes it only with that
        folder, once this host is gone. A member whose bytes equal those of the same member in
        ``base`` (a sound copy of the previous version: its path, files and seal) is a hard link
        to it, about five times cheaper than writing it: a rebuild after a one-file change writes
        one file. A linked file must still be as the base's seal says, else it is written.
        ``spare``: a temporary folder already holding the folders needed (``_make_spare``)."""
        base_path, base_files, base_seal = base if base is not None else ("", {}, {})
        if spare is not None:
            tmp = spare[0]
            folders = {os.path.join(tmp, folder) for folder in spare[1]}
        else:
            tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=self.proc)
            folders = set()
        try:
            seal: dict[str, Any] = {}
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            for member, data in files.items():
                target = os.path.join(tmp, member)
                parent = os.path.dirname(target)
                if parent not in folders:
                    os.makedirs(parent, mode=0o700, exist_ok=True)
                    while parent != tmp and parent not in folders:
                        folders.add(parent)
                        parent = os.path.dirname(parent)
                old = base_files.get(member)
                if old is not None and (old is data or old == data):
                    try:
                        os.link(os.path.join(base_path, member), target)
                    except OSError:
                        pass  # no hard links here (another file system, a limit): write it
                    else:
                        linked = _stat_key(os.lstat(target))
                        if linked == base_seal.get(member):
                            seal[member] = linked
                            continue
                        os.unlink(target)  # changed since the base was checked: write it
                # 0444 less the umask is read-only whatever the umask: no chmod needed
                fd = os.open(target, flags, 0o444)
                try:
                    _write_all(fd, data)
                    seal[member] = _stat_key(os.fstat(fd))  # closing changes none of it
                finally:
                    os.close(fd)
            for folder in folders:
                os.chmod(folder, 0o555)
            for folder in folders:
                seal[os.path.relpath(folder, tmp)] = _stat_key(os.lstat(folder))
            if not _set_seal_digest(tmp, _seal_digest(seal)):
                fd = os.open(os.path.join(tmp, SEAL), flags, 0o444)
                try:
                    _write_all(fd, json.dumps(seal, separators=(",", ":")).encode())
                finally:
                    os.close(fd)
        except BaseException:
            _remove_tree(tmp)
            raise
        return tmp, seal


def _seal_digest(seal: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(json.dumps(sorted(seal.items()), separators=(",", ":")).encode()).digest()


def _set_seal_digest(folder: str, digest: bytes) -> bool:
    """Store ``digest`` on ``folder`` as an extended attribute; False where there are none."""
    try:
        os.setxattr(folder, SEAL_XATTR, digest)
    except (AttributeError, OSError):  # not Linux, or a file system without user xattrs
        return False
    return True


def _get_seal_digest(folder: str) -> bytes | None:
    """The seal digest stored on ``folder``, or None (none there: look for a ``.seal`` file)."""
    try:
        return os.getxattr(folder, SEAL_XATTR)
    except (AttributeError, OSError):
        return None


def _layout(files: Mapping[str, bytes]) -> frozenset[str]:
    """The folders (relative, with every parent) that ``files``' members lie in."""
    found: set[str] = set()
    for member in files:
        folder = posixpath.dirname(member)
        while folder and folder not in found:
            found.add(folder)
            folder = posixpath.dirname(folder)
    return frozenset(found)

