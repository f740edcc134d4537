"""Deferred freeing: replaced managers wait here until their ``free_delay`` has passed.

Design note: one long-lived daemon thread per swapper (started at its first reload) sleeps on a
condition until the earliest deadline, rather than a ``threading.Timer`` per reload: starting a
thread costs the reload that starts it a few milliseconds of GIL hand-over, and a daemon thread
never keeps the process alive.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .manager import PluginManager

__all__ = ["Freer", "Pending"]


class Pending:
    """A replaced manager waiting for its free."""

    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager
        self.done = False
        self.expired = False  # free_delay has passed: no longer a rollback target
        self.give_up: float | None = None  # monotonic time at which it is freed regardless
        self.retry = 0.0  # seconds until the next in-flight check


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

    def schedule(self, entry: Pending, delay: float) -> None:
        """Release ``entry`` after ``delay`` seconds; starts the thread on first use."""
        with self._cond:
            heapq.heappush(self._queue, (time.monotonic() + delay, next(self._seq), entry))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hotswap-free", daemon=True)
                self._thread.start()
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
                            break
                    self._cond.wait(timeout)
            again = None
            try:
                again = self._release(entry)
            except Exception:  # the freer must survive whatever a release does
                self._logger.exception("freeing plugin versions failed")
            if again is not None:
                with self._cond:
                    if not self._stopped:
                        heapq.heappush(self._queue,
                                       (time.monotonic() + again, next(self._seq), entry))
            del entry

    def stop(self) -> None:
        """Forget what is queued, let the thread finish the release it runs, and end it."""
        with self._cond:
            self._stopped = True
            self._queue.clear()
            self._cond.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
