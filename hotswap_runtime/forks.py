"""What a forked child gets of the runtime (README "Forked workers").

Design note. ``os.fork()`` copies memory, not threads: in the child only the thread that forked
runs, a thread object of any other thread describes nothing, and a lock another thread held at
the fork stays held for ever. gunicorn ``--preload``, ``multiprocessing``'s fork start method
and a plain ``os.fork()`` all fork a process in which a swapper may already run. Each runtime
object that owns a thread or a lock registers here (``track``: weakly, so registering never
keeps one alive) and gets three calls around every fork, from ``os.register_at_fork``:

- ``_before_fork()`` in the parent, in the forking thread: take the locks whose state must be
  whole in the child (bounded waits, never a deadlock: what cannot be taken in time is reset in
  the child and said so there);
- ``_after_fork_in_parent()``: give them back;
- ``_after_fork_in_child()``: give them back, reset what another thread held, and restart or
  give up the object's own threads (each class says which, and why, in its own notes).

What each part does in a child: the freer restarts (a version replaced before or after the fork
is freed in the child too); a reload that ran in another thread at the fork does not go on (the
reload lock is reset, a warning says so); a ``Follower`` does not follow (it is one instance,
the parent's: start one per worker after its fork); the signal and file triggers do not carry
over either (start them per worker); a NATS channel opens a connection of its own on first use;
the runtime folder gives the child a proc folder of its own on its first load; a lease held at
the fork is held in both processes, each copy pinning its own process's manager.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Protocol

__all__ = ["FORK_WAIT", "free_in_child", "reset_lock", "track"]

logger = logging.getLogger("hotswap")

#: seconds a fork waits for a lock of the runtime held by another thread (a free in progress)
FORK_WAIT = 5.0


class _ForkAware(Protocol):
    def _before_fork(self) -> None: ...
    def _after_fork_in_parent(self) -> None: ...
    def _after_fork_in_child(self) -> None: ...


_tracked: weakref.WeakSet[_ForkAware] = weakref.WeakSet()
_forking: list[_ForkAware] = []  # strong references from before the fork to after it


def track(obj: _ForkAware) -> None:
    """Call ``obj``'s fork methods around every ``os.fork()`` for as long as it lives."""
    _tracked.add(obj)


def reset_lock(lock: object) -> None:
    """Make ``lock`` (a ``Lock``, ``RLock``, ``Condition`` or ``Event``) free again in a forked
    child, whoever held it at the fork.

    ``_at_fork_reinit`` is what the standard library itself calls in its own at-fork handlers
    (logging, concurrent.futures); it keeps the object, so every reference to it sees the reset.
    """
    lock._at_fork_reinit()  # type: ignore[attr-defined]  # private in typeshed, public in CPython since 3.9


def free_in_child(lock: threading.Lock) -> None:
    """Reset ``lock`` in every forked child: for a module's lock held only briefly, never across
    user code, so a thread of the parent that held it at the fork had nothing to finish."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=lambda: reset_lock(lock))


def _each(method: str) -> None:
    for obj in list(_forking):
        try:
            getattr(obj, method)()
        except Exception:  # noqa: BLE001 - a fork must go on whatever one object does
            logger.exception("hotswap: %s of %r failed", method, obj)


def _before() -> None:
    _forking[:] = list(_tracked)
    _each("_before_fork")


def _after_in_parent() -> None:
    _each("_after_fork_in_parent")
    _forking.clear()


def _after_in_child() -> None:
    _each("_after_fork_in_child")
    _forking.clear()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(before=_before, after_in_parent=_after_in_parent,
                        after_in_child=_after_in_child)
