"""Triggers: ready-made ways for a host to decide when to reload.

Four helpers, each returning a function that stops it:

- ``reload_on_signal(swapper, data=None, signum=signal.SIGUSR1)``: reload when the process
  gets ``signum`` (``kill -USR1 <pid>``); a background thread does the reload.
- ``watch_plugin_dir(swapper, data=None, debounce=0.2)``: reload when the ``*.hsp`` artifacts
  in ``swapper.plugin_dir`` change; a background thread watches (needs ``hotswap[watch]``).
- ``areload_on_signal(swapper, data=None, signum=signal.SIGUSR1)`` and
  ``awatch_plugin_dir(swapper, data=None, debounce=0.2)``: the same for a host with a running
  asyncio loop (call them from inside it); the loop does the work through ``swapper.areload``,
  so it keeps serving during a reload. Their stop function returns the task, so
  ``await stop()`` also waits for a reload in progress to end.

Design. A reload never runs inside a signal handler: a handler may interrupt the main thread
anywhere, even while it holds a lock the reload needs. The sync signal handler only writes a
byte to a pipe (``os.write`` is safe there, unlike taking a lock); a daemon thread blocks
reading that pipe and reloads. Bytes written while a reload runs are read at once afterwards,
so a burst of signals gives one more reload, not one per signal. The asyncio form lets
``loop.add_signal_handler`` run the callback in the loop, outside the handler. The watchers
ignore every file but ``*.hsp`` (the build writes ``.<name>.hsp.<random>.tmp`` and renames it,
so a half-written artifact is never seen) and wait until the folder has been quiet for
``debounce`` seconds, then reload once for the whole burst.

Every reload's Details (info) or error (with its traceback) goes to the swapper's logger
(``swapper.logger``: the host's ``logger=``, or ``logging.getLogger("hotswap")``); nothing a
reload raises reaches the host. What a trigger needs of the swapper is typed as a Protocol
(``Reloads`` and its kin), which ``PluginManagerSwapper`` satisfies (checked by mypy below). A failed reload
leaves the previous plugins serving (the swapper guarantees it); the trigger keeps listening.

In a forked child (gunicorn ``--preload``, ``multiprocessing``, ``os.fork``; see ``forks``) the
two thread forms carry over: the child gets a thread of its own (and ``reload_on_signal`` a pipe
of its own: the parent's would wake the parent's thread, reloading the parent on the child's
signal), so ``kill -USR1 <child pid>`` or a changed artifact reloads the child's swapper, and
the ``stop()`` the parent got stops the child's. The asyncio forms belong to their loop, which
does not run in a child: start them in the child's own loop.

Which loop reloads, and why it does not matter for what is in flight: ``reload_on_signal`` and
``watch_plugin_dir`` reload from a daemon thread of their own (no event loop runs there); the
``a…`` forms reload from the running loop, through ``areload`` (its worker thread). Either way
nothing in flight is lost: the replaced versions' free (README "Staged reloads") finds every running event
loop on the threads' stacks and reads every loop's tasks, and every thread's stack, whichever
thread reloaded, so a call, task or pending awaitable of an old version holds its free.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from . import forks
from .errors import HotswapError

if TYPE_CHECKING:
    import asyncio  # imported where used: a host without asyncio need not pay for it

    from .swapper import PluginManagerSwapper

__all__ = ["reload_on_signal", "watch_plugin_dir", "areload_on_signal", "awatch_plugin_dir"]


class _Logs(Protocol):
    @property
    def logger(self) -> logging.Logger: ...


class _Reloads(_Logs, Protocol):
    """What ``reload_on_signal`` needs of the swapper."""

    def reload(self, data: Any = None) -> Any: ...


class _AReloads(_Logs, Protocol):
    """What ``areload_on_signal`` needs of the swapper."""

    def areload(self, data: Any = None) -> Awaitable[Any]: ...


class _WatchReloads(_Reloads, Protocol):
    """What ``watch_plugin_dir`` needs of the swapper."""

    @property
    def plugin_dir(self) -> str: ...


class _WatchAReloads(_AReloads, Protocol):
    """What ``awatch_plugin_dir`` needs of the swapper."""

    @property
    def plugin_dir(self) -> str: ...


if TYPE_CHECKING:
    def _fits(swapper: PluginManagerSwapper) -> tuple[_WatchReloads, _WatchAReloads]:
        return swapper, swapper  # mypy: the swapper offers every trigger what it reads


def _report(logger: logging.Logger, cause: str, details: Any) -> None:
    logger.info("reload on %s: %s", cause, str(details) or "no plugins found")


def _reload(swapper: _Reloads, data: Any, cause: str, logger: logging.Logger) -> None:
    try:
        details = swapper.reload(data)
    except Exception:
        logger.exception("reload on %s failed; the previous plugins keep serving", cause)
    else:
        _report(logger, cause, details)


async def _areload(swapper: _AReloads, data: Any, cause: str, logger: logging.Logger) -> None:
    try:
        details = await swapper.areload(data)
    except Exception:
        logger.exception("reload on %s failed; the previous plugins keep serving", cause)
    else:
        _report(logger, cause, details)


# None where the platform has no SIGUSR1 (Windows): the signal triggers then need signum=
_SIGUSR1: int | None = getattr(signal, "SIGUSR1", None)


def _require(signum: int | None, helper: str) -> int:
    if signum is None:
        raise ValueError(f"{helper}: this platform has no SIGUSR1; pass signum= "
                         "(signal.SIGBREAK on Windows)")
    return signum


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _install(signum: int, handler: Any, helper: str) -> Any:
    try:
        return signal.signal(signum, handler)
    except ValueError as exc:   # not the main thread, or a signal that cannot be caught
        raise ValueError(f"{helper}: cannot handle {_signal_name(signum)} ({exc}); call it from "
                         "the main thread with a signal that can be caught") from exc


def _restore(signum: int, ours: Any, previous: Any) -> None:
    # leave alone a handler someone installed after ours; None means "not set from Python"
    if signal.getsignal(signum) is ours:
        signal.signal(signum, signal.SIG_DFL if previous is None else previous)


class _InChild:
    """Calls ``restart`` in every forked child until ``done()`` (see ``forks``)."""

    #: the triggers running: kept here, since the host may drop its stop function
    running: set[_InChild] = set()

    def __init__(self, restart: Callable[[], None]) -> None:
        self.restart = restart
        _InChild.running.add(self)
        forks.track(self)

    def done(self) -> None:
        _InChild.running.discard(self)

    def _before_fork(self) -> None:
        pass

    def _after_fork_in_parent(self) -> None:
        pass

    def _after_fork_in_child(self) -> None:
        self.restart()


def reload_on_signal(swapper: _Reloads, data: Any = None,
                     signum: int | None = _SIGUSR1) -> Callable[[], None]:
    """Reload ``swapper`` with ``data`` each time the process receives ``signum``.

    Call it from the main thread. The signal handler only wakes a daemon thread, which calls
    ``swapper.reload(data)`` and logs the Details or the error; signals arriving during a reload
    are coalesced into one more reload. The reload runs in that thread, outside any event
    loop; nothing in flight on the host's loops or threads is lost (the free finds them all).

    Returns:
        ``stop()``: restores the previous handler of ``signum``, then ends the thread (waiting
        for a reload in progress). Calling it again does nothing. Call it from the main thread;
        elsewhere (a reload callback, say) it ends the thread but can only make the handler
        ignore the signal, and logs a warning.

    Raises:
        ValueError: not called from the main thread, or ``signum`` cannot be caught.
    """
    signum = _require(signum, "reload_on_signal")
    logger = swapper.logger
    cause = _signal_name(signum)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    stopped = threading.Event()

    def handler(signo: int, frame: FrameType | None) -> None:
        if stopped.is_set():   # a handler left behind by a stop() outside the main thread
            return
        try:
            os.write(write_fd, b"\0")
        except OSError:   # the pipe is full (wake-ups are pending anyway) or closed (stopping)
            pass

    stopped_from_inside = False   # stop() called by the reload itself (a callback)

    def run() -> None:
        try:
            while True:
                os.read(read_fd, 4096)   # every pending wake-up at once: one reload per burst
                if stopped.is_set():
                    return
                _reload(swapper, data, cause, logger)
        finally:
            if stopped_from_inside:   # stop() could not wait for us, so we close the pipe
                os.close(write_fd)
                os.close(read_fd)

    try:
        previous = _install(signum, handler, "reload_on_signal")
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    thread = threading.Thread(target=run, name=f"hotswap-reload-on-{cause}", daemon=True)
    thread.start()

    def restart() -> None:
        """In a forked child: a pipe and a thread of its own (the handler is inherited)."""
        nonlocal read_fd, write_fd, thread
        if stopped.is_set():
            return
        forks.reset_lock(stopped)
        parents = (read_fd, write_fd)
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        for fd in parents:  # the parent's pipe: shared with the parent, never ours to read
            os.close(fd)
        if thread is not threading.current_thread():  # else: forked from a reload of ours,
            thread = threading.Thread(target=run, name=f"hotswap-reload-on-{cause}", daemon=True)
            thread.start()  # which goes on reading the new pipe in the child

    in_child = _InChild(restart)

    def stop() -> None:
        nonlocal stopped_from_inside
        if stopped.is_set():
            return
        in_child.done()
        stopped.set()
        try:
            if threading.current_thread() is threading.main_thread():
                _restore(signum, handler, previous)
            else:
                logger.warning("reload_on_signal: stop() ran outside the main thread, so the "
                               "previous %s handler could not be restored (ours now ignores the "
                               "signal); call stop() from the main thread", cause)
        finally:
            try:
                os.write(write_fd, b"\0")
            except BlockingIOError:   # full: the thread has wake-ups to read anyway
                pass
            if thread is threading.current_thread():
                stopped_from_inside = True
            else:
                # the pipe is closed only once nothing can write to or read from it again
                thread.join()
                os.close(write_fd)
                os.close(read_fd)

    return stop


def areload_on_signal(swapper: _AReloads, data: Any = None,
                      signum: int | None = _SIGUSR1) -> Callable[[], asyncio.Task[None]]:
    """Reload ``swapper`` with ``data`` each time the process receives ``signum``, in the loop.

    Call it from inside the running asyncio loop (in the main thread). The loop's signal
    handler wakes a task that awaits ``swapper.areload(data)`` and logs the Details or the
    error; signals arriving during a reload are coalesced into one more reload. The reload is
    started from this loop (its imports and hooks run in ``areload``'s worker thread, so the
    loop keeps serving); nothing in flight on this or any other loop or thread is lost.

    Returns:
        ``stop()``: restores the previous handler of ``signum`` and ends the task after any
        reload in progress; it returns that task, so ``await stop()`` waits for the end.

    Raises:
        RuntimeError: no running loop.
        ValueError: not called from the main thread, or ``signum`` cannot be caught.
    """
    import asyncio
    signum = _require(signum, "areload_on_signal")
    loop = asyncio.get_running_loop()
    logger = swapper.logger
    cause = _signal_name(signum)
    wake = asyncio.Event()
    stopping = False
    previous = signal.getsignal(signum)
    try:
        loop.add_signal_handler(signum, wake.set)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"areload_on_signal: cannot handle {cause} ({exc}); call it from the "
                         "main thread with a signal that can be caught") from exc

    async def run() -> None:
        while True:
            await wake.wait()
            wake.clear()
            if stopping:
                return
            await _areload(swapper, data, cause, logger)

    task = loop.create_task(run(), name=f"hotswap-reload-on-{cause}")

    def stop() -> asyncio.Task[None]:
        nonlocal stopping
        if not stopping:
            stopping = True
            loop.remove_signal_handler(signum)
            # remove_signal_handler installs SIG_DFL; put back what the host had
            if previous is not None:
                signal.signal(signum, previous)
            wake.set()
        return task

    return stop


# ---------------------------------------------------------------------------------- watchers

def _watchfiles(helper: str) -> Any:
    try:
        import watchfiles
    except ImportError as exc:
        raise ImportError(f"{helper} needs the watchfiles package, an optional extra of "
                          "hotswap; install it with: pip install 'hotswap[watch]'",
                          name="watchfiles") from exc
    # watchfiles imports platform lazily, in the watching thread: a process forked while that
    # thread imports it leaves the child a half-made module, and the child's watch fails on it
    import platform  # noqa: F401 - imported for its side effect (see above), never used
    return watchfiles


def _is_artifact(change: Any, path: str) -> bool:
    """Only ``<name>.hsp`` counts; never the build's ``.<name>.hsp.<random>.tmp``."""
    name = os.path.basename(path)
    return name.endswith(".hsp") and not name.startswith(".")


def _watch_args(swapper: _WatchReloads | _WatchAReloads, debounce: float, helper: str) -> tuple[Path, dict[str, Any]]:
    if debounce < 0:
        raise ValueError(f"{helper}: debounce must be >= 0 seconds, got {debounce!r}")
    folder = Path(swapper.plugin_dir)
    if not folder.is_dir():
        raise HotswapError(f"{helper}: cannot watch plugin folder {str(folder)!r}: it is not a "
                           "folder; create it first")
    quiet_ms = max(1, round(debounce * 1000))
    # step: how long the folder must stay quiet; debounce: the longest burst grouped at once
    return folder, {"step": quiet_ms, "debounce": max(1600, 10 * quiet_ms), "recursive": False}


def _links_on_the_way(folder: Path) -> list[str]:
    """Every symlink met while resolving ``folder``: its own, its ancestors' (``current`` in
    ``current/plugins``) and those their targets go through, each as the physical path of the
    link (where a switch of it shows up as a change of its parent folder)."""
    links: list[str] = []
    parts = Path(os.path.abspath(folder)).parts
    here, todo = Path(parts[0]), list(parts[1:])
    while todo and len(links) < 40:           # 40: the kernel's own limit on nested links
        part = todo.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            here = here.parent
            continue
        step = here / part
        if not step.is_symlink():
            here = step
            continue
        links.append(str(step))
        target = Path(os.readlink(step))
        if target.is_absolute():
            here, todo = Path(target.parts[0]), [*target.parts[1:], *todo]
        else:
            todo = [*target.parts, *todo]
    return links


def _watch_plan(folder: Path) -> tuple[list[Path], Callable[[Any, str], bool], Callable[[Any], bool]]:
    """What to watch for ``folder``: (paths, filter, relinked(changes)).

    A deploy switches a set of artifacts atomically by renaming a new symlink over the old one:
    the plugin folder itself, a folder above it (``current/plugins``) or a link on the way to
    either. Nothing changes inside the old or the new target then, so the parent folder of
    every link met on the way is watched for that link's name too; when one changes the watch
    starts again on the new target.
    """
    links = set(_links_on_the_way(folder))
    if not links:
        return [folder], _is_artifact, lambda changes: False
    target = str(folder.resolve())

    def wanted(change: Any, path: str) -> bool:
        if os.path.abspath(path) in links:
            return True
        return os.path.dirname(os.path.abspath(path)) == target and _is_artifact(change, path)

    def relinked(changes: Any) -> bool:
        return any(os.path.abspath(path) in links for _, path in changes)

    parents = sorted({os.path.dirname(link) for link in links} - {target})
    return [Path(target), *map(Path, parents)], wanted, relinked


#: how long a (re)started watch must be quiet before it looks whether a link moved meanwhile
_SETTLE_MS = 500


class _Relinks:
    """The gap of a watch restarted after a link switch: watchfiles sees nothing until its new
    watch is up, so a link switched again in between (two deploys in a row) would go unseen.
    Once the new watch is up (its first quiet timeout) the folder's target is compared with
    the one the last reload was made for."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.loaded = os.path.realpath(folder)
        self.pending = False

    def reloading(self) -> None:
        """A reload starts: it reads what the folder points to now."""
        self.loaded = os.path.realpath(self.folder)

    def missed(self, changes: Any) -> bool:
        """Whether ``changes`` is the first quiet timeout after a restart and the target moved."""
        if changes or not self.pending:
            return False
        self.pending = False
        return os.path.realpath(self.folder) != self.loaded


def watch_plugin_dir(swapper: _WatchReloads, data: Any = None,
                     debounce: float = 0.2) -> Callable[[], None]:
    """Reload ``swapper`` with ``data`` when the artifacts in its ``plugin_dir`` change.

    A daemon thread watches the folder (not recursively) with watchfiles and reloads from that
    thread, outside any event loop; nothing in flight on the host's loops or threads is lost
    (the free finds them all). Only ``*.hsp`` files count, so the temporary file of an atomic
    write is ignored; once the folder has been quiet for ``debounce`` seconds, one reload
    handles the whole burst. Added, rebuilt and deleted
    artifacts all trigger it. After ``reset_plugin_dir``, stop this and start a new one. When
    ``plugin_dir`` is a symlink, or sits below one (``current/plugins``), switching that link
    to another folder (a new link renamed over the old one: the atomic way to deploy a set of
    artifacts) reloads too, and the watch moves to the new target.

    The watch starts in the background: changes made in the first moments after the call
    may be missed.

    Returns:
        ``stop()``: ends the watch (waiting for a reload in progress). Calling it again does
        nothing.

    Raises:
        ImportError: watchfiles is not installed (``pip install 'hotswap[watch]'``).
        HotswapError: ``plugin_dir`` is not a folder.
    """
    watchfiles = _watchfiles("watch_plugin_dir")
    folder, options = _watch_args(swapper, debounce, "watch_plugin_dir")
    logger = swapper.logger
    cause = f"change in {folder}"
    stop_event = threading.Event()

    def run() -> None:
        try:
            relinks = _Relinks(folder)
            while not stop_event.is_set():
                paths, wanted, relinked = _watch_plan(folder)
                for changes in watchfiles.watch(*paths, stop_event=stop_event, watch_filter=wanted,
                                                rust_timeout=_SETTLE_MS, yield_on_timeout=True,
                                                **options):
                    if stop_event.is_set():
                        return
                    missed = relinks.missed(changes)
                    if not (changes or missed):
                        continue
                    relinks.reloading()
                    _reload(swapper, data, cause, logger)
                    if missed or relinked(changes):
                        relinks.pending = True
                        break  # the link points elsewhere now: watch the new target
        except Exception:
            logger.exception("watching plugin folder %s failed; artifacts changed from now on "
                             "do not reload until watch_plugin_dir is called again", folder)

    thread = threading.Thread(target=run, name="hotswap-watch-plugin-dir", daemon=True)
    thread.start()

    def restart() -> None:
        """In a forked child: a watching thread of its own."""
        nonlocal thread
        if stop_event.is_set():
            return
        forks.reset_lock(stop_event)
        if thread is not threading.current_thread():  # a fork from inside our reload goes on
            thread = threading.Thread(target=run, name="hotswap-watch-plugin-dir", daemon=True)
            thread.start()

    in_child = _InChild(restart)

    def stop() -> None:
        in_child.done()
        stop_event.set()
        if thread is not threading.current_thread():
            thread.join()

    return stop


def awatch_plugin_dir(swapper: _WatchAReloads, data: Any = None,
                      debounce: float = 0.2) -> Callable[[], asyncio.Task[None]]:
    """Reload ``swapper`` with ``data`` when its artifacts change, from the running loop.

    Like ``watch_plugin_dir``, but a task of the running loop watches (``watchfiles.awatch``)
    and awaits ``swapper.areload(data)``: the reload is started from this loop (its work runs
    in ``areload``'s worker thread). Call it from inside the loop. Nothing in flight on this or
    any other loop or thread is lost.

    Returns:
        ``stop()``: ends the watch after any reload in progress; returns the task, so
        ``await stop()`` waits for the end.

    Raises:
        ImportError: watchfiles is not installed (``pip install 'hotswap[watch]'``).
        HotswapError: ``plugin_dir`` is not a folder.
        RuntimeError: no running loop.
    """
    import asyncio
    watchfiles = _watchfiles("awatch_plugin_dir")
    folder, options = _watch_args(swapper, debounce, "awatch_plugin_dir")
    loop = asyncio.get_running_loop()
    logger = swapper.logger
    cause = f"change in {folder}"
    stop_event = asyncio.Event()

    async def run() -> None:
        try:
            relinks = _Relinks(folder)
            while not stop_event.is_set():
                paths, wanted, relinked = _watch_plan(folder)
                async for changes in watchfiles.awatch(*paths, stop_event=stop_event,
                                                       watch_filter=wanted, rust_timeout=_SETTLE_MS,
                                                       yield_on_timeout=True, **options):
                    if stop_event.is_set():
                        return
                    missed = relinks.missed(changes)
                    if not (changes or missed):
                        continue
                    relinks.reloading()
                    await _areload(swapper, data, cause, logger)
                    if missed or relinked(changes):
                        relinks.pending = True
                        break
        except Exception:
            logger.exception("watching plugin folder %s failed; artifacts changed from now on "
                             "do not reload until awatch_plugin_dir is called again", folder)

    task = loop.create_task(run(), name="hotswap-watch-plugin-dir")

    def stop() -> asyncio.Task[None]:
        stop_event.set()
        return task

    return stop
