"""Freeing: when the versions a reload replaced are freed, and how.

Design note on the policy (``FreePolicy``): a replaced manager is due ``free_delay`` seconds
after the swap, on the swapper's ``Freer`` thread. Until then it is the rollback target; once
due, the versions only it uses are searched for code in flight (``inflight.scan``: thread
stacks, asyncio tasks, pending awaitables) and the check repeats, backing off to every 0.25 s,
until none is left or ``free_timeout`` has passed (then a warning). Releasing drops one
reference from each of its versions; those that reach zero (not carried over into a newer
manager) run ``on_free`` in reverse dependency order on that thread, their own threads and tasks
still running get a warning, then they are pruned (see ``Version.prune``). Freed versions are
watched through weak references only, for ``stats()``. ``close()`` releases at once, without
the search.

Design note on the timer: one long-lived daemon thread per swapper (started at its first reload) sleeps on a
condition until the earliest deadline, rather than a ``threading.Timer`` per reload: starting a
thread costs the reload that starts it a few milliseconds of GIL hand-over, and a daemon thread
never keeps the process alive.

Design note on fork (see ``forks``): a forked child has no freer thread, and the locks of the
policy may have been held by it at the fork. So the fork waits (``FORK_WAIT`` at most) for a
free in progress to end and takes the policy's locks, so the child gets whole bookkeeping;
the child resets those locks and the freer, puts back the entry the freer was looking at, and
restarts the thread when entries are queued: a version replaced before or after the fork is
freed in the child like in the parent. A free that outlasted the wait (an ``on_free`` that
blocks) does not go on in the child, and the child says so.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from . import forks
from .errors import HotswapError
from .inflight import scan, wait_for_own_workers

if TYPE_CHECKING:
    import asyncio

    from .manager import PluginManager
    from .version import Version

__all__ = ["FreePolicy", "Freer", "Pending", "run_on_free"]

#: seconds at most a free replaced by ``areload`` waits for the awaiting loop to resume (the
#: loop's callback makes it due sooner: ``FreePolicy.handed_to``)
HANDOFF_WAIT = 1.0


class _Handoff(threading.local):
    held: list[tuple[Pending, float]] | None = None


_handoff = _Handoff()

#: seconds between the two in-flight searches that must both find nothing before a free
CONFIRM = 0.005
#: seconds a free waits for a task caught running at every read (``Found.unread``) to pause
UNREAD_GRACE = 1.0
#: seconds a freed version's own threads and tasks get to end after on_free before the warning
WORKER_GRACE = 0.25


class Pending:
    """A replaced manager waiting for its free."""

    def __init__(self, manager: PluginManager) -> None:
        # None once done: the freer's queue may still hold the entry, and must not keep it
        self.manager: PluginManager | None = manager
        self.done = False
        self.expired = False  # free_delay has passed: no longer a rollback target
        self.give_up: float | None = None  # monotonic time at which it is freed regardless
        self.retry = 0.0  # seconds until the next in-flight check
        self.unread_since: float | None = None  # when a search first met a task it could not read


class Freer:
    """One daemon thread that runs ``release(entry)`` once each entry's delay has passed.

    ``release`` returns None when done with the entry, or seconds after which to call it again
    (code of the entry's versions was still in flight).
    """

    def __init__(self, release: Callable[[Pending], float | None], logger: logging.Logger) -> None:
        self._release = release
        self._logger = logger
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, Pending]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._busy = False  # a release runs now
        self._entry: Pending | None = None  # the entry it runs (put back in a forked child)

    def schedule(self, entry: Pending, delay: float) -> None:
        """Release ``entry`` after ``delay`` seconds; starts the thread on first use."""
        with self._cond:
            heapq.heappush(self._queue, (time.monotonic() + delay, next(self._seq), entry))
            if self._thread is None:
                self._start()
            else:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    timeout = None
                    if self._queue:
                        timeout = self._queue[0][0] - time.monotonic()
                        if timeout <= 0:
                            entry = heapq.heappop(self._queue)[2]
                            self._busy = True
                            self._entry = entry
                            break
                    self._cond.wait(timeout)
            again = None
            try:
                again = self._release(entry)
            except Exception:  # the freer must survive whatever a release does
                self._logger.exception("freeing plugin versions failed")
            with self._cond:
                if again is not None and not self._stopped:
                    heapq.heappush(self._queue, (time.monotonic() + again, next(self._seq), entry))
                self._busy = False
                self._entry = None
                self._cond.notify_all()  # wait_due
            del entry

    def _start(self) -> None:
        """Start the thread (``_cond`` held)."""
        self._thread = threading.Thread(target=self._run, name="hotswap-free", daemon=True)
        self._thread.start()

    def _after_fork_in_child(self) -> None:
        """Reset the freer of a forked child: no thread (it did not survive the fork), the
        entry it was looking at queued again, the thread restarted when entries wait."""
        forks.reset_lock(self._cond)
        self._thread = None
        self._busy = False
        entry, self._entry = self._entry, None
        if self._stopped:
            return
        if entry is not None and not entry.done:
            heapq.heappush(self._queue, (time.monotonic(), next(self._seq), entry))
        if self._queue:
            with self._cond:
                self._start()

    def poke(self, entry: Pending, due: float | None = None) -> None:
        """Make ``entry``, queued for a later look, due now (or at ``due``, a ``monotonic``
        time, when that is sooner than it was); nothing when it is not queued: the release
        running it answers for itself."""
        with self._cond:
            for index, (when, seq, queued) in enumerate(self._queue):
                if queued is entry:
                    due = time.monotonic() if due is None else due
                    if due < when:
                        self._queue[index] = (due, seq, entry)
                        heapq.heapify(self._queue)
                        self._cond.notify()
                    return

    def wait_due(self, timeout: float) -> None:
        """Wait, up to ``timeout`` seconds, until every release due by now has run once (or
        asked to run again later). Returns at once in the freer's own thread."""
        if threading.current_thread() is self._thread:
            return
        now = time.monotonic()
        end = now + timeout
        with self._cond:
            while not self._stopped and (self._busy or (self._queue and self._queue[0][0] <= now)):
                left = end - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def stop(self) -> None:
        """Forget what is queued, let the thread finish the release it runs, and end it."""
        with self._cond:
            self._stopped = True
            self._queue.clear()
            self._cond.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()


def run_on_free(version: Version, logger: logging.Logger) -> None:
    """Run ``version``'s ``on_free``; a failure is logged, never raised (freeing goes on)."""
    try:
        version.call("on_free", logger)
    except HotswapError as exc:
        logger.error("%s", exc, exc_info=exc)


def warn_running_workers(doomed: list[Version], logger: logging.Logger) -> None:
    """Warn (README "Staged reloads") of each thread or task of a freed version that ``on_free`` did not stop."""
    found = wait_for_own_workers(doomed, WORKER_GRACE)
    for version in doomed:
        f = found[id(version)]
        for kind, names in (("thread", f.own_threads), ("task", f.own_tasks)):
            for name in names:
                logger.warning(
                    'plugin "%s" version #%d is freed while its %s "%s" still runs; stop '
                    "it in on_free (set a stop flag and join the thread, cancel the task)",
                    version.name, version.load, kind, name)


class FreePolicy:
    """When and how one swapper frees the versions of the managers it replaced.

    Attributes:
        lock: guards the bookkeeping shared with the freer thread (``pending``,
            ``last_replaced``, ``freed`` and every version's ``managers`` count); held briefly,
            never while a hook runs, so a free never waits for a load.
        freeing: held while versions are freed (``on_free``, pruning, collecting); a load waits
            for it (bounded) before it allocates.
        pending: replaced managers whose free has not run yet.
        last_replaced: the manager the last reload (or rollback) replaced: the rollback target.
        freed: versions freed but maybe still referenced (followed through weak references).
    """

    def __init__(self, logger: logging.Logger, free_delay: float, free_timeout: float) -> None:
        self.lock = threading.Lock()
        self.freeing = threading.Lock()
        self.pending: list[Pending] = []
        self.last_replaced: Pending | None = None
        self.freed: list[Version] = []
        self._logger = logger
        self._free_delay = free_delay
        self._free_timeout = free_timeout
        self._freer = Freer(self.due, logger)
        self._releasing: list[Version] = []  # what a release is freeing now (named after a fork)
        self._fork_held: list[threading.Lock | threading.Condition] = []
        self._fork_in_freer = False
        forks.track(self)

    # -- fork (see the module note and ``forks``) ----------------------------------------------
    def _before_fork(self) -> None:
        """Wait (bounded) for a free in progress to end and hold the locks over the fork."""
        self._fork_held = []
        self._fork_in_freer = threading.current_thread() is self._freer._thread
        if self._fork_in_freer:
            return  # an on_free that forks: its free holds these, and goes on in both processes
        for lock in (self.freeing, self.lock, self._freer._cond):
            if lock.acquire(timeout=forks.FORK_WAIT):
                self._fork_held.append(lock)
            else:
                self._logger.warning(
                    "a fork waited %g s for the free of plugin versions %s and goes on; in the "
                    "child that free does not go on", forks.FORK_WAIT, self._names(self._releasing))

    def _after_fork_in_parent(self) -> None:
        held, self._fork_held = self._fork_held, []
        for lock in reversed(held):
            lock.release()

    def _after_fork_in_child(self) -> None:
        if self._fork_in_freer:  # this thread is the freer, in the middle of its free: let it be
            forks.reset_lock(self._freer._cond)  # (which it does not hold during a free)
            return
        complete = len(self._fork_held) == 3
        self._fork_held = []
        forks.reset_lock(self.freeing)
        forks.reset_lock(self.lock)
        releasing, self._releasing = self._releasing, []
        if not complete and releasing:
            self._logger.error(
                "this process (pid %d) was forked while plugin versions %s were being freed in "
                "another thread: in this process their free stops where it was (their on_free "
                "may not have run) and they stay in memory; fork when no on_free blocks",
                os.getpid(), self._names(releasing))
        self._freer._after_fork_in_child()

    @staticmethod
    def _names(versions: list[Version]) -> str:
        return ", ".join(f"{v.name}#{v.load}" for v in versions) or "(none)"

    def replaced(self, manager: PluginManager) -> Pending:
        """Record ``manager`` as replaced (the new rollback target); call with ``lock`` held,
        then ``schedule`` the entry once it is released."""
        entry = Pending(manager)
        self.pending.append(entry)
        self.last_replaced = entry
        return entry

    def schedule(self, entry: Pending) -> None:
        """Make ``entry`` due ``free_delay`` seconds from now (in ``handed_to``'s block: once
        the loop has resumed, and no sooner)."""
        held = _handoff.held
        if held is None or self._free_delay >= HANDOFF_WAIT:
            self._freer.schedule(entry, self._free_delay)
            return
        held.append((entry, time.monotonic() + self._free_delay))
        self._freer.schedule(entry, HANDOFF_WAIT)

    @contextlib.contextmanager
    def handed_to(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        """Within this block (``areload``'s worker, which ``loop`` awaits), the free of a
        manager it replaces starts once ``loop`` has run the step that resumes the awaiting
        coroutine, not before.

        Started from the worker, the freer would want the GIL just as the loop's thread wakes
        up to resume that coroutine, and keep it for a switch interval (5 ms by default): a
        10-module ``areload`` with ``free_delay=0`` took 14 ms to return instead of 8
        (bench/restart.py). The free is queued for ``HANDOFF_WAIT`` as a safety net (a loop
        closed or stopped meanwhile never runs the callback) and moved to its due time in the
        third loop iteration after the worker ends: the first sets the worker's result, the
        second resumes the coroutine, the third (after that step) starts the free.
        """
        held: list[tuple[Pending, float]] = []
        _handoff.held = held
        try:
            yield
        finally:
            _handoff.held = None
            for entry, due in held:
                try:
                    loop.call_soon_threadsafe(loop.call_soon, loop.call_soon, self._freer.poke,
                                              entry, due)
                except RuntimeError:  # the loop is closed: the safety net frees it
                    pass

    def stop(self) -> None:
        """Stop the freer thread; what it has queued is forgotten (``close`` releases it)."""
        self._freer.stop()

    def wait_due(self, timeout: float) -> None:
        """Let the frees due by now run first (bounded by ``timeout`` seconds)."""
        self._freer.wait_due(timeout)

    def unleased(self, manager: PluginManager) -> None:
        """The last lease of ``manager`` was released: if its free is due already, run it now.

        Takes no lock (``pending`` is copied in one step); the freer's own lock is held for a
        queue push at most."""
        for entry in list(self.pending):
            if entry.manager is manager and entry.expired and not entry.done:
                self._freer.poke(entry)

    def due(self, entry: Pending) -> float | None:
        """The freer's call once ``free_delay`` has passed: free when no code of the doomed
        versions is in flight (or ``free_timeout`` is reached); else say when to look again."""
        with self.lock:
            manager = entry.manager
            if entry.done or manager is None:
                return None
            entry.expired = True
            doomed = [v for v in manager._versions() if v.managers <= 1]
        now = time.monotonic()
        if entry.give_up is None:
            entry.give_up = now + self._free_timeout
        # leases first (see ``leases``): raise the flag, then look; a taker does the reverse
        manager._freeing = True
        held = list(manager._leases)
        if held:
            if now < entry.give_up:
                manager._freeing = False
                entry.retry = 0.25  # a release pokes the freer: this is only a safety net
                return min(entry.retry, max(entry.give_up - now, 0.0))
            self._logger.warning(
                "plugin versions %s are freed after free_timeout (%g s) while leases still "
                "pin them: %s; release each lease when its session ends",
                ", ".join(f"{v.name}#{v.load}" for v in manager._versions()),
                self._free_timeout, ", ".join(f'"{lease.name}"' for lease in held))
        if doomed:
            found = scan(doomed, confirm=CONFIRM, heap=True)
            busy = [(v, found[id(v)]) for v in doomed if found[id(v)].calls]
            # a task that kept running through the search (its loop busy in one long step):
            # its stack was read, but not what its frames hold; wait a little for it, not more
            unread = bool(found.unread)
            if unread:
                if entry.unread_since is None:
                    entry.unread_since = now
                unread = now - entry.unread_since < UNREAD_GRACE
            else:
                entry.unread_since = None
            if (busy or unread) and now < entry.give_up:
                manager._freeing = False  # not freed yet: a lease may still pin it
                entry.retry = min(max(entry.retry * 2, 0.01), 0.25)
                if entry.retry >= 0.25:
                    self._logger.debug("freeing %s waits for code in flight",
                                       ", ".join(f"{v.name}#{v.load}" for v, _ in busy))
                return min(entry.retry, max(entry.give_up - now, 0.0))
            for version, f in busy:
                self._logger.warning(
                    'plugin "%s" version #%d is freed after free_timeout (%g s) while its code '
                    "still runs in %d threads, %d tasks and %d awaitables (threads: %s; "
                    "tasks: %s); those calls now run code that was freed",
                    version.name, version.load, self._free_timeout, len(f.threads),
                    len(f.tasks), f.awaitables, ", ".join(f.threads) or "-",
                    ", ".join(f.tasks) or "-")
        self.release(entry)
        return None

    def release(self, entry: Pending) -> None:
        """Drop one manager's hold on its versions and free those nobody uses any more."""
        # ``freeing`` is held from the moment the versions leave ``pending`` until they are
        # listed in ``freed``, so a stats() that waited for it never misses one mid-free
        with self.freeing:
            with self.lock:
                manager = entry.manager
                if entry.done or manager is None:
                    return
                entry.done = True
                manager._freeing = True  # a lease taken from now on pins the current manager
                if entry in self.pending:
                    self.pending.remove(entry)
                entry.manager = None
                doomed: list[Version] = []
                for version in reversed(manager._versions()):
                    version.managers -= 1
                    if version.managers <= 0:
                        version.state = "freeing"
                        doomed.append(version)
                self._releasing = doomed
            for version in doomed:
                run_on_free(version, self._logger)
            if doomed:
                warn_running_workers(doomed, self._logger)
            for version in doomed:
                version.track()
                version.prune()
                version.state = "freed"
            if doomed:
                # a version's modules, classes and functions are cycles: collect the young
                # generations now (~0.1 ms) so their memory is reused by the next load
                gc.collect(1)
            with self.lock:
                # forget the freed versions that are gone here, not only in stats(): a host
                # that never calls stats() must not keep one Version per reload forever
                self.freed = [v for v in self.freed if v.alive()]
                self.freed.extend(doomed)
                self._releasing = []
        if doomed:
            self._logger.info("freed plugin versions: %s",
                              ", ".join(f"{v.name}#{v.load}" for v in doomed))
