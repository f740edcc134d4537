"""Host-side types of the livex demo: the job queue that outlives every plugin version.

A plugin version schedules a job as *live data* (``live.wrap(order)``) plus the *names* of the
live type and live function that handle it. The host's worker handles each job when it is due
with whatever version is current then, looking both names up in the current manager's vault,
so jobs scheduled by version N are handled by version N+1 after a reload, and none is lost.

A job that must finish on the version that took it (a banquet: cooked to the menu it was
ordered from) carries a ``Lease`` (``swapper.lease``) instead: the worker handles it with the
leased manager and then releases the lease, so that version stays alive until then.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from hotswap_runtime import Lease, live


@dataclass(frozen=True)
class Job:
    """A job waiting in the queue; it holds no object of any plugin version, only names and
    data (and, for a job pinned to its version, the host's lease on that version)."""

    id: int
    handler: str        # name of the live function that handles it, e.g. "live_cook"
    type_name: str      # name of the live type its data unwraps into, e.g. "Live_Order"
    data: live.Data     # the job's data, version-neutral
    scheduled_by: str   # CompileTimeString of the version that scheduled it
    lease: Lease | None = None  # set when it must be handled by the version that scheduled it


@dataclass(frozen=True)
class Receipt:
    """What a live function returns once it has handled a job."""

    handled_by: str     # CompileTimeString of the version that handled the job
    text: str


class JobQueue:
    """A thread-safe queue of delayed jobs, owned by the host; it survives every reload.

    Args:
        delay: seconds between scheduling a job and its being due.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Job]] = []
        self._ids = itertools.count(1)
        self.scheduled = 0
        self.done_by: Counter[str] = Counter()
        self.handed_over = 0
        self._in_hand = 0
        self._pin: Lease | None = None

    @contextlib.contextmanager
    def pinned_to(self, lease: Lease) -> Iterator[None]:
        """Jobs scheduled inside the block carry ``lease``: the worker handles them with the
        leased version, then releases it."""
        with self._cond:
            self._pin = lease
        try:
            yield
        finally:
            with self._cond:
                self._pin = None

    def schedule(self, handler: str, type_name: str, data: live.Data, *, scheduled_by: str) -> int:
        """Queue a job, due ``delay`` seconds from now; return its id.

        Raises:
            TypeError: ``data`` is not live data; wrap it with ``live.wrap``.
        """
        if not isinstance(data, live.Data):
            raise TypeError(f"job data must be live data, got {type(data).__name__}; "
                            f"wrap it with hotswap_runtime.live.wrap")
        with self._cond:
            job = Job(next(self._ids), handler, type_name, data, scheduled_by, self._pin)
            heapq.heappush(self._heap, (time.monotonic() + self.delay, job.id, job))
            self.scheduled += 1
            self._cond.notify()
            return job.id

    def next_due(self, timeout: float) -> Job | None:
        """Take the earliest job once it is due; wait at most ``timeout`` seconds for one."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                if self._heap and self._heap[0][0] <= now:
                    self._in_hand += 1
                    return heapq.heappop(self._heap)[2]
                wake = min(deadline, self._heap[0][0]) if self._heap else deadline
                if wake <= now:
                    return None
                self._cond.wait(wake - now)

    def take_all(self) -> list[Job]:
        """Take every queued job, due or not (the host drains the queue before it exits)."""
        with self._cond:
            jobs = [entry[2] for entry in sorted(self._heap)]
            self._heap.clear()
            self._in_hand += len(jobs)
            return jobs

    def finish(self, job: Job, receipt: Receipt) -> None:
        """Record that ``job`` was handled, and by which version."""
        with self._cond:
            self._in_hand -= 1
            self.done_by[receipt.handled_by] += 1
            if receipt.handled_by != job.scheduled_by:
                self.handed_over += 1

    def retry(self, job: Job, delay: float) -> None:
        """Put back a job whose handling failed, due again in ``delay`` seconds."""
        with self._cond:
            self._in_hand -= 1
            heapq.heappush(self._heap, (time.monotonic() + delay, job.id, job))
            self._cond.notify()

    def pending(self) -> int:
        """Jobs scheduled and not done yet: queued, or in a worker's hands."""
        with self._cond:
            return len(self._heap) + self._in_hand

    def report(self) -> str:
        """One line: jobs scheduled, done per version, handed over, pending, lost."""
        with self._cond:
            done = sum(self.done_by.values())
            pending = len(self._heap) + self._in_hand
            per_version = ", ".join(f"{v}={n}" for v, n in sorted(self.done_by.items())) or "none"
            lost = self.scheduled - done - pending
            return (f"scheduled {self.scheduled}, done {done} (by version: {per_version}), "
                    f"handed over {self.handed_over}, pending {pending}, lost {lost}")
