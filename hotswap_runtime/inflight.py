"""Finding a version's code in flight: on thread stacks, in asyncio tasks, in pending awaitables.

Design note: nothing here runs on the call path of a plain (synchronous) ``invoke_func``, a live
function or a method: the search happens at free time, on the freer thread, by *code* — a frame
belongs to a version when its module globals' ``__name__`` lies under the version's mount root
(``_hotswap_<name>_<load>``), whatever route led into it.

- Threads: ``sys._current_frames()`` gives every thread's top frame; its ``f_back`` chain is
  walked. The calling thread is skipped.
- Tasks: every event loop the host was seen running (``note_loop``, called by every load and
  reload — ``areload`` included —, by ``ainvoke_each`` and by the tracking wrapper of an
  ``async def invoke_func``) is kept in a weak
  set. A running loop's tasks are read on the loop's own thread (``call_soon_threadsafe`` and a
  concurrent future waited for at most ``LOOP_TIMEOUT`` seconds); a loop that does not answer
  in time is blocked (its tasks are not moving), so its tasks are then read from the calling
  thread; should that fail too it counts as one task in flight, holding the free (up to
  ``free_timeout``) rather than risk freeing code a task is suspended in. Each task's coroutine
  chain (``cr_await`` / ``gi_yieldfrom`` / ``ag_await``) is walked.
- Awaitables: an ``async def invoke_func`` is wrapped once, at load, by a function that puts
  each returned awaitable into the version's ``WeakSet``; one that is still pending (a coroutine
  not finished, a future not done) and is not already seen in a task counts. A synchronous
  ``invoke_func`` is never wrapped (a call through it stays one plain call); awaitables it
  returns are found once they run (on a stack or in a task), not while they wait unstarted.

A thread whose ``run`` target, or a task whose outermost coroutine, is the version's own code
(other than an entry point: ``invoke_func``, a live function, a method of a live type) is the
version's *own worker*: it does not hold the free (``on_free`` is where it should be stopped),
but when it is still running after ``on_free`` the swapper warns (SPEC 8.2).
"""

from __future__ import annotations

import concurrent.futures
import functools
import inspect
import sys
import threading
import time
import weakref
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from types import CodeType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from .version import Version

__all__ = ["Found", "InFlight", "note_loop", "invoke_entry", "scan", "entry_codes", "wait_for_own_workers",
           "LOOP_TIMEOUT"]

#: seconds to wait for a running loop to hand over its tasks
LOOP_TIMEOUT = 1.0
#: deepest await chain or stack walked (a guard against cycles)
_MAX_DEPTH = 10_000

_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _get_running_loop() -> asyncio.AbstractEventLoop | None:
    """This thread's running loop. Without asyncio imported no loop can run, so a host that
    never uses asyncio never pays for importing it."""
    events = sys.modules.get("asyncio.events")
    return None if events is None else events._get_running_loop()


def note_loop() -> None:
    """Remember the running event loop of this thread (if any), so its tasks get searched."""
    loop = _get_running_loop()
    if loop is not None:
        _loops.add(loop)


def invoke_entry(version: Version) -> Callable[..., Any]:
    """The function ``plugin.invoke_func`` calls: the version's own when synchronous; for an
    ``async def invoke_func`` a wrapper that tracks each returned awaitable weakly."""
    fn = version.hooks["invoke_func"]
    if not inspect.iscoroutinefunction(fn):
        return fn
    pending = version.awaitables
    loops = _loops
    get_loop = _get_running_loop

    @functools.wraps(fn)
    def invoke_func(name: str, *params: Any) -> Any:
        result = fn(name, *params)
        try:
            pending.add(result)
        except TypeError:  # not weak-referenceable: it cannot be followed
            pass
        loop = get_loop()
        if loop is not None:
            loops.add(loop)
        return result

    return invoke_func


@dataclass
class InFlight:
    """What of one version is running now.

    Attributes:
        threads: names of threads whose stack holds its code (calls from outside).
        tasks: names of pending tasks whose await chain holds its code (calls from outside).
        awaitables: awaitables returned by its ``invoke_func`` that are still pending.
        own_threads: names of live threads whose ``run`` target is its code.
        own_tasks: names of pending tasks whose outermost coroutine is its (non-entry) code.
    """

    threads: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    awaitables: int = 0
    own_threads: list[str] = field(default_factory=list)
    own_tasks: list[str] = field(default_factory=list)

    @property
    def calls(self) -> int:
        """Calls in flight: what holds the free."""
        return len(self.threads) + len(self.tasks) + self.awaitables

    @property
    def total(self) -> int:
        """Everything running its code, own workers included (``VersionStats.in_flight``)."""
        return self.calls + len(self.own_threads) + len(self.own_tasks)


def entry_codes(version: Version) -> set[CodeType]:
    """Code objects through which callers enter the version (not its own workers)."""
    codes: set[CodeType] = set()

    def add(fn: Any) -> None:
        try:
            fn = getattr(fn, "__func__", fn)
            fn = getattr(fn, "__wrapped__", fn)
            code = getattr(fn, "__code__", None)
        except Exception:  # noqa: BLE001 - an odd class attribute: not a way in
            return
        if isinstance(code, CodeType):
            codes.add(code)

    add(version.hooks.get("invoke_func"))
    for fn in version.live_funcs.values():
        add(fn)
    for cls in version.live_types.values():
        for klass in getattr(cls, "__mro__", (cls,)):
            if klass is not object:
                for value in list(vars(klass).values()):
                    add(value)
    return codes


Match = Callable[[Any], "str | None"]


def _matcher(roots: set[str]) -> Match:
    """``match(module_name)``: the root of ``roots`` the module lies under, or None.

    Mounted versions have dotless roots (one dict lookup); a statically linked plugin's root is
    its real package name, which may be dotted (a prefix test then)."""
    simple = {r for r in roots if "." not in r}
    dotted = sorted((r for r in roots if "." in r), key=len, reverse=True)

    def match(name: Any) -> str | None:
        if not isinstance(name, str):
            return None
        head = name.partition(".")[0]
        if head in simple:
            return head
        for root in dotted:
            if name == root or name.startswith(root + "."):
                return root
        return None

    return match


def _root(obj: Any, match: Match) -> str | None:
    obj = getattr(obj, "func", obj)  # functools.partial
    obj = getattr(obj, "__func__", obj)  # bound method
    return match(getattr(obj, "__module__", None))


def _code(fn: Any) -> Any:
    fn = getattr(fn, "func", fn)
    fn = getattr(fn, "__func__", fn)
    return getattr(fn, "__code__", None)


def _thread_owner(thread: threading.Thread | None, codes: Container[CodeType],
                  match: Match) -> str | None:
    """The root whose code is the thread's run target, unless that is an entry point."""
    if thread is None:
        return None
    target = getattr(thread, "_target", None)
    if target is None:
        target = type(thread).run
        if target is threading.Thread.run:
            return None
    root = _root(target, match)
    if root is None or _code(target) in codes:
        return None  # not the version's, or a caller's thread that calls straight into it
    return root


def _chain(coro: Any) -> Iterable[tuple[Any, Any]]:
    """(awaitable, frame) along a coroutine's await chain, outermost first."""
    depth = 0
    while coro is not None and depth < _MAX_DEPTH:
        frame = (getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
                 or getattr(coro, "ag_frame", None))
        yield coro, frame
        nxt = getattr(coro, "cr_await", None)
        if nxt is None:
            nxt = getattr(coro, "gi_yieldfrom", None)
        if nxt is None:
            nxt = getattr(coro, "ag_await", None)
        coro = nxt
        depth += 1


def _read_tasks(loop: asyncio.AbstractEventLoop, match: Match,
                codes: Container[CodeType]) -> list[tuple[str, set[str], str | None, set[int]]]:
    """(task name, roots in its chain, owner root, ids of awaitables in the chain) per task."""
    import asyncio  # a loop was registered, so asyncio is imported already

    out: list[tuple[str, set[str], str | None, set[int]]] = []
    for task in asyncio.all_tasks(loop):
        hit: set[str] = set()
        ids: set[int] = set()
        owner: str | None = None
        first = True
        for awaitable, frame in _chain(task.get_coro()):
            ids.add(id(awaitable))
            if frame is None:
                first = False
                continue
            root = match(frame.f_globals.get("__name__"))
            if root is not None:
                hit.add(root)
                if first and frame.f_code not in codes:
                    owner = root
            first = False
        if owner is not None and task.cancelling():
            hit.discard(owner)  # the version's own task, already told to stop: it is ending
            owner = None
        if hit:
            out.append((task.get_name(), hit, owner, ids))
    return out


def _tasks_of(loop: asyncio.AbstractEventLoop, match: Match, codes: Container[CodeType],
              timeout: float) -> list[tuple[str, set[str], str | None, set[int]]] | None:
    """The tasks of ``loop`` that run code under ``roots``; None when the loop did not answer."""
    if loop.is_closed():
        return []
    if not loop.is_running() or _get_running_loop() is loop:
        return _read_tasks(loop, match, codes)
    future: concurrent.futures.Future[list[tuple[str, set[str], str | None, set[int]]]] = (
        concurrent.futures.Future())

    def collect() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(_read_tasks(loop, match, codes))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            future.set_exception(exc)

    try:
        loop.call_soon_threadsafe(collect)
    except RuntimeError:  # closed meanwhile
        return []
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        if not future.cancel():  # it started meanwhile: its answer is on the way
            return future.result()
    # the loop has run no callback for ``timeout`` seconds (blocked, or stopped without being
    # marked so): its tasks are not moving, so read them from here
    for _ in range(3):
        try:
            return _read_tasks(loop, match, codes)
        except RuntimeError:  # a task was added meanwhile: the loop moves again; retry
            continue
    return None


def _members(weak: weakref.WeakSet[Any]) -> list[Any]:
    """A WeakSet's live members, safe while other threads add to it (the copy of its
    underlying set is one C call; iterating the WeakSet itself is not)."""
    return [obj for ref in set(weak.data) if (obj := ref()) is not None]


def _pending(awaitable: Any) -> bool:
    if inspect.iscoroutine(awaitable):
        return awaitable.cr_frame is not None
    if inspect.isgenerator(awaitable):
        return awaitable.gi_frame is not None
    done = getattr(awaitable, "done", None)
    if callable(done):
        try:
            return not done()
        except Exception:  # noqa: BLE001 - an odd awaitable: assume it still runs
            return True
    return True


class _EntryCodes:
    """The entry codes of some versions, computed on first use (most scans never need them)."""

    def __init__(self, versions: Iterable[Version]) -> None:
        self._versions = list(versions)
        self._codes: set[CodeType] | None = None

    def __contains__(self, code: object) -> bool:
        if self._codes is None:
            codes: set[CodeType] = set()
            for version in self._versions:
                codes |= entry_codes(version)
            self._codes = codes
        return code in self._codes


class Found(dict[int, InFlight]):
    """``scan``'s answer: ``id(version)`` -> ``InFlight``; a version with nothing in flight has
    no entry (``found[key]`` then gives an empty, shared ``InFlight``; ``.get`` gives None)."""

    def __missing__(self, key: int) -> InFlight:
        return _NOTHING

    def slot(self, key: int) -> InFlight:
        """The entry of ``key``, made when missing."""
        found = self.get(key)
        if found is None:
            found = self[key] = InFlight()
        return found


_NOTHING = InFlight()


def scan(versions: Iterable[Version], *, timeout: float | None = None) -> Found:
    """What of each version (keyed by ``id(version)``) is in flight right now.

    Safe to call from any thread; a running loop's tasks are read on its own thread, waiting
    for it at most ``timeout`` seconds (default ``LOOP_TIMEOUT``).
    """
    if timeout is None:
        timeout = LOOP_TIMEOUT
    by_root = {v.root: v for v in versions}
    found = Found()
    if not by_root:
        return found
    match = _matcher(set(by_root))
    codes = _EntryCodes(by_root.values())
    me = threading.get_ident()
    threads = {t.ident: t for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue
        thread = threads.get(ident)
        hit: set[str] = set()
        depth = 0
        while frame is not None and depth < _MAX_DEPTH:
            root = match(frame.f_globals.get("__name__"))
            if root is not None:
                hit.add(root)
            frame = frame.f_back
            depth += 1
        del frame
        if not hit:
            continue
        owner = _thread_owner(thread, codes, match)
        name = thread.name if thread is not None else f"thread {ident}"
        for root in hit:
            slot = found.slot(id(by_root[root]))
            (slot.own_threads if root == owner else slot.threads).append(name)
    # threads whose run target is the version's code but that are not in its code right now
    for thread in threads.values():
        owner = _thread_owner(thread, codes, match)
        if owner is not None and thread.is_alive():
            slot = found.slot(id(by_root[owner]))
            if thread.name not in slot.own_threads:
                slot.own_threads.append(thread.name)
    in_tasks: set[int] = set()
    for loop in _members(_loops):
        tasks = _tasks_of(loop, match, codes, timeout)
        if tasks is None:
            for version in by_root.values():
                found.slot(id(version)).tasks.append(f"<tasks of an event loop that did not answer in {timeout} s>")
            continue
        for name, hit, owner, ids in tasks:
            in_tasks |= ids
            for root in hit:
                slot = found.slot(id(by_root[root]))
                (slot.own_tasks if root == owner else slot.tasks).append(name)
    for version in by_root.values():
        if not version.awaitables.data:
            continue
        count = 0
        for awaitable in _members(version.awaitables):
            if id(awaitable) not in in_tasks and _pending(awaitable):
                count += 1
        if count:
            found.slot(id(version)).awaitables = count
    return found


def wait_for_own_workers(versions: list[Version], grace: float) -> Found:
    """Scan until no version has its own threads or tasks running, for at most ``grace`` s."""
    deadline = time.monotonic() + grace
    while True:
        found = scan(versions)
        if not any(f.own_threads or f.own_tasks for f in found.values()):
            return found
        if time.monotonic() >= deadline:
            return found
        time.sleep(0.02)

