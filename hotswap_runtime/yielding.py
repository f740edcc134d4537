"""Letting an event loop run while ``areload`` works in its worker thread.

Design note: a reload in a worker thread keeps the GIL for the whole switch interval (5 ms)
each time the event loop's thread asks for it, and the loop asks twice per wake-up: its ticks
stall ~10 ms. ``time.sleep(0)`` hands the GIL over at once, so the reader and the importer call
``yield_gil`` between members and modules. A yield is worth its cost only there, though:

- only in ``areload``'s worker (``for_event_loop``): a reload in the main thread blocks its
  caller anyway, and one in another thread (a trigger, the host's own thread) has no loop
  waiting on it; there every yield only gives up the GIL to whoever spins, and getting it back
  costs up to a switch interval each time (among 8 busy threads, twice as long a reload);
- only while others want the GIL: when, over the last ``YIELD_INTERVAL``, the thread's CPU time
  fell short of the wall time by ``CONTENTION``, another thread ran; it then yields every
  interval for ``CONTENDED_FOR`` (sleeping costs ~0.1 ms, too much when nobody waits);
- not in a crowd: when a yield took most of a switch interval (``CROWDED``) to get the GIL
  back, busy threads compete for it, the loop's thread gets no more from a yield than from the
  interpreter's own switching, and the reload would pay a switch interval per yield; it stops
  yielding for ``CONTENDED_FOR``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator

__all__ = ["CONTENDED_FOR", "CONTENTION", "CROWDED", "LOAD_SWITCH_INTERVAL", "YIELD_INTERVAL",
           "for_event_loop", "prompt_gil", "yield_gil"]

#: how long a worker thread keeps the GIL between two yields while others want it (seconds)
YIELD_INTERVAL = 0.001
#: time another thread ran within one interval that counts as "others want the GIL" (seconds)
CONTENTION = 0.0001
#: how long a worker thread keeps yielding after it last saw another thread run, and how long
#: it stops yielding once it found itself in a crowd (seconds)
CONTENDED_FOR = 0.2
#: a yield that took longer than this share of the switch interval to get the GIL back waited
#: for a thread that kept it until forced to let go: busy threads compete for it, not just a
#: loop that runs a moment and sleeps again
CROWDED = 0.8
#: a window longer than this is a pause between loads, not a measure of contention (seconds)
_STALE = 0.02


class _YieldState(threading.local):
    def __init__(self) -> None:
        self.loop_waits = 0         # > 0 inside for_event_loop()
        self.wall = -1.0            # perf_counter at the start of the current window
        self.cpu = 0.0              # this thread's CPU time then
        self.contended_until = -1.0
        self.crowded_until = -1.0


_state = _YieldState()


@contextlib.contextmanager
def for_event_loop() -> Iterator[None]:
    """Within this block, the calling thread works for an event loop that waits on it
    (``areload``'s worker): ``yield_gil`` may let the loop's thread run."""
    _state.loop_waits += 1
    try:
        yield
    finally:
        _state.loop_waits -= 1


def yield_gil() -> None:
    """In ``areload``'s worker, let the event loop's thread run about every ``YIELD_INTERVAL``
    while it wants the GIL (see the design note); anywhere else, return at once."""
    state = _state
    if not state.loop_waits:
        return
    now = time.perf_counter()
    window = now - state.wall
    if window < YIELD_INTERVAL:
        return
    cpu = time.thread_time()
    if window <= _STALE and window - (cpu - state.cpu) >= CONTENTION:
        state.contended_until = now + CONTENDED_FOR
    if state.crowded_until <= now < state.contended_until:
        time.sleep(0)
        after = time.perf_counter()
        if after - now > CROWDED * sys.getswitchinterval():
            state.crowded_until = after + CONTENDED_FOR
        now, cpu = after, time.thread_time()
    state.wall, state.cpu = now, cpu


#: the interpreter's switch interval while a load runs (seconds). A load makes hundreds of short
#: calls that release the GIL (each file system call writing a version's folder, each member's
#: zlib and sha256); among threads that keep the GIL busy, getting it back after each one costs
#: about a switch interval (5 ms by default), so a 100-module load among 8 busy threads took over
#: 100 times its idle time (bench/contended.py). At 0.05 ms those waits shrink a hundredfold
#: and the load gets near its fair share of the GIL; the busy threads switch more often, for
#: the load's duration only.
LOAD_SWITCH_INTERVAL = 0.00005


class _Interval:
    """The switch interval lowered while at least one load runs (loads of several swappers
    may overlap), restored after the last one unless the host changed it meanwhile."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loads = 0
        self.saved: float | None = None  # the host's interval, while lowered
        self.ours = 0.0                  # the interval set, as the interpreter reports it


_interval = _Interval()


@contextlib.contextmanager
def prompt_gil() -> Iterator[None]:
    """Within this block (a load), the GIL comes back promptly after each call releasing it:
    the switch interval is at most ``LOAD_SWITCH_INTERVAL``."""
    state = _interval
    with state.lock:
        if state.loads == 0:
            current = sys.getswitchinterval()
            if current > LOAD_SWITCH_INTERVAL:
                sys.setswitchinterval(LOAD_SWITCH_INTERVAL)
                state.saved, state.ours = current, sys.getswitchinterval()
        state.loads += 1
    try:
        yield
    finally:
        with state.lock:
            state.loads -= 1
            if state.loads == 0 and state.saved is not None:
                if sys.getswitchinterval() == state.ours:  # else the host set its own since
                    sys.setswitchinterval(state.saved)
                state.saved = None
