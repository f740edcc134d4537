"""Finding a version's code in flight: on thread stacks, in asyncio tasks, in pending awaitables.

Design note: nothing here runs on the call path of a plain (synchronous) ``invoke_func``, a live
function or a method: the search happens at free time, on the freer thread, by *code* — a frame
belongs to a version when its module globals' ``__name__`` lies under the version's mount root
(``_hotswap_<name>_<load>``), whatever route led into it. It never runs anything on an event
loop and never waits for one.

- Threads: ``sys._current_frames()`` gives every thread's top frame; its ``f_back`` chain is
  walked. The calling thread's own calls do not count (it is the one searching).
- Loops: found on those same stacks, no registration needed: a frame of
  ``BaseEventLoop.run_forever`` has its loop as ``self`` (the calling thread's
  running loop, and loops seen by ``note_loop``, are added: uvloop runs no Python frame).
- Tasks: asyncio's task registry (a ``WeakSet``, plus 3.12's eager set) is copied in one C
  call, so reading it from another thread cannot race with a loop adding tasks; every pending
  task of a loop that is not closed is read. Its coroutine chain (``cr_await`` /
  ``gi_yieldfrom`` / ``ag_await``) is walked while the task is suspended; a task running at
  that instant has the rest of its chain on its loop thread's stack, which is read instead.
- Awaitables: what an ``async def invoke_func`` returns is tracked weakly by a wrapper made at
  load. A synchronous ``invoke_func`` or a live function is never wrapped (a call through it
  stays one plain call): an unfinished coroutine made by a version's code that it returned is
  found where it goes — awaited (in a task's chain, however deep: ``gather``, ``wait_for``,
  ``shield``, ``TaskGroup`` or a host task around it), running (on a stack), or not started
  yet: held by a suspended coroutine of the host (a local, or an item of a list, tuple, set or
  dict there), or by plain code — a sync thread's local, a module-level container — which no
  cheap search can see (another thread's locals are not read, see ``_held_values``). Those are
  found on the heap (``_search_heap``): at free time, only for a version with async code, and
  only once the cheap search finds nothing, one ``gc.get_referrers`` over its async code
  objects (the GIL held for one walk over the tracked objects); what it finds is followed
  weakly afterwards.
- Futures: a bare future (``loop.create_future()``) made by a version's code and returned by a
  sync ``invoke_func`` is not attributed to the version — it is made in C and carries no trace
  of its maker, and the plain call path is not wrapped — so it holds the free only through what
  will complete it, where that runs (a thread in the version's code, a task of the version that
  the version does not keep, a coroutine of it); a future that an ``async def invoke_func``
  returns is tracked like any of its awaitables.

A thread whose ``run`` target is the version's own code (other than an entry point:
``invoke_func``, a live function, a method of a live type) is the version's *own worker*. A task
is one only when its outermost coroutine is the version's non-entry code that was not handed
out by ``invoke_func``, nothing outside the version waits for it (no host task awaits it, gathers
it, waits for it or shields it, no host callback wants its result) and the version made it: it
is awaited only by the version's own workers, or held by the version (its module globals or
frames, a few levels down, as ``on_free`` needs to stop it). Own workers do not hold the free
(``on_free`` is where they should be stopped), but when one still runs after ``on_free`` the
swapper warns (README "Staged reloads"). Anything else holds it.
"""

from __future__ import annotations

import collections
import functools
import gc
import inspect
import sys
import threading
import time
import weakref
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from types import (
    AsyncGeneratorType,
    CodeType,
    CoroutineType,
    FrameType,
    FunctionType,
    GeneratorType,
    MethodType,
    ModuleType,
)
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from .version import Version

__all__ = ["Found", "InFlight", "note_loop", "invoke_entry", "scan", "entry_codes",
           "wait_for_own_workers", "running_loops", "pending_tasks"]

#: reads of a task's await chain before it is taken as running (its frames then on a stack)
_READ_TRIES = 6
#: items of a container in a frame's locals looked at for an unstarted awaitable
_CONTAINER_ITEMS = 1000
#: most objects visited when looking for what a version holds
_HELD_LIMIT = 100_000
#: deepest await chain or stack walked (a guard against cycles)
_MAX_DEPTH = 10_000

_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _get_running_loop() -> asyncio.AbstractEventLoop | None:
    """This thread's running loop. Without asyncio imported no loop can run, so a host that
    never uses asyncio never pays for importing it."""
    events = sys.modules.get("asyncio.events")
    return None if events is None else events._get_running_loop()


def note_loop() -> None:
    """Remember the running event loop of this thread (if any): loops are found on the threads'
    stacks anyway, this adds a loop whose ``run_forever`` runs no Python frame (uvloop)."""
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


def _run_codes() -> set[CodeType]:
    """The code of ``BaseEventLoop.run_forever``: a frame running it has the loop as ``self``
    (every loop asyncio itself drives, whatever the subclass; ``_run_once`` is not used: its
    locals hold the callback being run, and reading them on 3.11/3.12 would keep it alive)."""
    base = sys.modules.get("asyncio.base_events")
    if base is None:
        return set()
    return {base.BaseEventLoop.run_forever.__code__}


def _frame_self(frame: FrameType) -> Any:
    try:
        return frame.f_locals.get("self")
    except Exception:  # noqa: BLE001 - an odd frame: no loop to read from it
        return None


def running_loops() -> dict[Any, int]:
    """Every event loop running now, found on the threads' stacks: loop -> thread ident.

    No registration: a frame of ``BaseEventLoop.run_forever`` names its loop,
    and the calling thread's running loop is added (a loop whose ``run_forever`` is not Python
    code, such as uvloop's, is found when it is the caller's or was seen by ``note_loop``)."""
    loops: dict[Any, int] = {}
    codes = _run_codes()
    if codes:
        for ident, top in sys._current_frames().items():
            frame: FrameType | None = top
            depth = 0
            while frame is not None and depth < _MAX_DEPTH:
                if frame.f_code in codes:
                    loop = _frame_self(frame)
                    if loop is not None:
                        loops[loop] = ident
                    break
                frame = frame.f_back
                depth += 1
    own = _get_running_loop()
    if own is not None:
        loops[own] = threading.get_ident()
    for loop in _members(_loops):
        if loop not in loops and loop.is_running():
            loops[loop] = 0
    return loops


def pending_tasks() -> list[Any]:
    """Every unfinished task of every loop that is not closed, read from any thread.

    ``asyncio.all_tasks(loop)`` iterates asyncio's task registry (a ``WeakSet``) in Python,
    which races with a loop adding tasks on another thread; copying the set under it is one C
    call, atomic under the GIL (the retry is asyncio's own guard, kept for other runtimes)."""
    tasks_module = sys.modules.get("asyncio.tasks")
    if tasks_module is None:
        return []
    weak = getattr(tasks_module, "_scheduled_tasks", None)  # 3.12+
    if weak is None:
        weak = getattr(tasks_module, "_all_tasks", None)  # 3.11
    eager = getattr(tasks_module, "_eager_tasks", None)
    refs: set[Any] = set()
    found: list[Any] = []
    for _ in range(1000):
        try:
            refs = set(weak.data) if weak is not None else set()
            found = list(eager) if eager else []
            break
        except RuntimeError:
            continue
    found.extend(task for ref in refs if (task := ref()) is not None)
    out = []
    for task in found:
        try:
            if task.done() or task.get_loop().is_closed():
                continue
        except Exception:  # noqa: BLE001 - not a task we can read: not ours to judge
            continue
        out.append(task)
    return out


def _is_running(coro: Any) -> bool:
    return bool(getattr(coro, "cr_running", False) or getattr(coro, "gi_running", False)
                or getattr(coro, "ag_running", False))


def _suspended_chain(coro: Any) -> list[tuple[Any, Any]] | None:
    """The await chain of a suspended task made of plain coroutines (the common case, read
    without ``getattr``); None when the task runs now or its chain holds something else."""
    if type(coro) is not CoroutineType or coro.cr_running:
        return None
    links: list[tuple[Any, Any]] = []
    link: Any = coro
    while True:
        kind = type(link)
        if kind is CoroutineType:
            links.append((link, link.cr_frame))
            link = link.cr_await
        elif kind is GeneratorType:  # a generator-based awaitable, or an __await__ in Python
            links.append((link, link.gi_frame))
            link = link.gi_yieldfrom
        else:  # None, or a future (or its iterator) the chain waits on: no frame below
            break
        if len(links) >= _MAX_DEPTH:
            return None
    if coro.cr_running:  # its loop's thread was switched in meanwhile
        return None
    return links


def _read_chain(coro: Any, wait: bool) -> tuple[list[tuple[Any, Any]], bool]:
    """The await chain of a task's coroutine, and whether it was read while the task was
    suspended (a running task's chain is cut where it runs: its frames are on a stack).

    With ``wait``, a task caught running (its loop's thread was switched out mid-step) gets
    a few milliseconds to finish its step, so what its frames hold can be read too."""
    links: list[tuple[Any, Any]] = []
    for attempt in range(_READ_TRIES):
        before = _is_running(coro)
        links = list(_chain(coro))
        if not before and not _is_running(coro):
            return links, True
        if wait and attempt >= 1:
            time.sleep(0.001)
    return links, False


def _stack_roots(frame: FrameType | None, match: Match) -> set[str]:
    roots: set[str] = set()
    depth = 0
    while frame is not None and depth < _MAX_DEPTH:
        root = match(frame.f_globals.get("__name__"))
        if root is not None:
            roots.add(root)
        frame = frame.f_back
        depth += 1
    return roots


def _held_values(coro: Any) -> list[Any]:
    """What a suspended coroutine's frame holds (locals and value stack), and the items of
    those that are plain containers.

    ``gc.get_referents`` reads them without side effects; ``frame.f_locals`` would not do on
    3.11 and 3.12, where it leaves a snapshot of the locals on the frame that keeps whatever they
    held alive after the function dropped it."""
    values = gc.get_referents(coro)
    out = values
    for value in values:
        kind = type(value)
        if kind in _CONTAINER_KINDS:
            if out is values:
                out = list(values)
            out.extend(list(value.values() if kind is dict else value)[:_CONTAINER_ITEMS])
    return out


_CONTAINER_KINDS = frozenset({dict, list, tuple, set, frozenset})


_AWAITABLE_KINDS = frozenset({CoroutineType, GeneratorType, AsyncGeneratorType})


def _is_asyncio(globals_: dict[str, Any]) -> bool:
    name = globals_.get("__name__")
    return isinstance(name, str) and name.startswith("asyncio.")


def _unfinished_coroutine(obj: Any) -> Any:
    """The frame of ``obj`` when it is an unfinished coroutine (or generator-based awaitable,
    or async generator)."""
    kind = type(obj)
    if kind is CoroutineType:
        return obj.cr_frame
    if kind is GeneratorType and obj.gi_code.co_flags & inspect.CO_ITERABLE_COROUTINE:
        return obj.gi_frame
    if kind is AsyncGeneratorType:
        return obj.ag_frame
    return None


class _Tasks:
    """The pending tasks as read once: chains, who waits for whom, what each version holds."""

    def __init__(self, match: Match, codes: Container[CodeType], handed_out: set[int],
                 loops: dict[Any, int], me: int) -> None:
        self.match = match
        self.codes = codes
        self.read: list[tuple[Any, set[str], str | None]] = []  # task, roots, candidate root
        self.chain_ids: set[int] = set()  # ids of the versions' coroutines seen in a chain
        self.coros: list[tuple[Any, str | None]] = []  # suspended coroutines read, and their root
        self.waiting: dict[int, list[Any]] = {}  # id(future) -> tasks waiting for it
        self.candidate: dict[int, str] = {}  # id(task) -> root whose own worker it may be
        self._own: dict[int, bool] = {}
        self._held: dict[str, set[int]] = {}
        self.unread: list[str] = []  # tasks that kept running: what their frames hold is unknown
        mine = _get_running_loop()  # its running task is the caller: it will not stop running
        roots_of: dict[int, str | None] = {}  # id(module globals) -> root: one lookup per module
        chain_ids = self.chain_ids
        coros = self.coros
        waiting = self.waiting
        for task in pending_tasks():
            coro = task.get_coro()
            links = _suspended_chain(coro)
            sure = links is not None
            if links is None:
                links, sure = _read_chain(coro, task.get_loop() is not mine)
            roots: set[str] = set()
            outer_root: str | None = None
            first = True
            for awaitable, frame in links:
                if frame is None:
                    first = False
                    continue
                globs = frame.f_globals
                key = id(globs)
                if key in roots_of:
                    root = roots_of[key]
                else:
                    root = roots_of[key] = match(globs.get("__name__"))
                if sure:
                    coros.append((awaitable, root))
                if root is not None:
                    roots.add(root)
                    chain_ids.add(id(awaitable))  # only the versions' awaitables are looked up
                    if first and frame.f_code not in codes and id(awaitable) not in handed_out:
                        outer_root = root
                first = False
            if not sure:  # running now on its loop's thread: read that stack as it is
                if task.get_loop() is not mine:
                    self.unread.append(task.get_name())
                ident = loops.get(task.get_loop())
                stacks = sys._current_frames()
                for i in ([ident] if ident else list(stacks)):
                    if i != me:
                        roots |= _stack_roots(stacks.get(i), match)
                del stacks
            if outer_root is not None:
                self.candidate[id(task)] = outer_root
            self.read.append((task, roots, outer_root))
            future = getattr(task, "_fut_waiter", None)
            if future is not None:
                waiting.setdefault(id(future), []).append(task)
                if hasattr(future, "_children"):
                    self._note_waiter(task, future, 0)

    def _note_waiter(self, task: Any, gathering: Any, depth: int) -> None:
        """``task`` waits for a gather's future: so for each of its children (gathers nest)."""
        for child in getattr(gathering, "_children", None) or ():
            self.waiting.setdefault(id(child), []).append(task)
            if depth < 8 and hasattr(child, "_children"):
                self._note_waiter(task, child, depth + 1)

    def own(self, task: Any, root: str) -> bool:
        """Whether ``task`` (its outermost coroutine being the version's non-entry code) is the
        version's own worker: nothing outside the version waits for it, and the version made it
        (awaited only by its own workers, or held by its modules or frames)."""
        key = id(task)
        known = self._own.get(key)
        if known is not None:
            return known
        self._own[key] = True  # a cycle of tasks waiting for each other adds nothing
        waiters, outside = self._waiters(task, root, 0)
        if outside:
            answer = False
        elif waiters:
            answer = all(self.candidate.get(id(w)) == root and self.own(w, root) for w in waiters)
        else:
            answer = key in self._held_by(root)
        self._own[key] = answer
        return answer

    def _waiters(self, future: Any, root: str, depth: int) -> tuple[list[Any], bool]:
        """Tasks waiting for ``future``, and whether something outside the version (host code,
        another version, a thread in ``run_until_complete``) waits for it too."""
        import asyncio  # a task exists, so asyncio is imported already

        waiters = list(self.waiting.get(id(future), ()))
        outside = False
        if depth > 4:
            return waiters, not waiters
        for callback, _context in getattr(future, "_callbacks", None) or ():
            owner = getattr(callback, "__self__", None)
            if owner is not None and asyncio.isfuture(owner):  # Task.task_wakeup: it awaits
                waiters.append(owner)
                continue
            if owner is not None and hasattr(owner, "_parent_task"):  # a TaskGroup
                parent = owner._parent_task
                if parent is None:
                    outside = True
                else:
                    waiters.append(parent)
                continue
            fn = callback.func if isinstance(callback, functools.partial) else callback
            fn = getattr(fn, "__func__", fn)
            module = getattr(fn, "__module__", None)
            where = self.match(module)
            if where == root:
                continue  # the version's own bookkeeping
            if where is not None:
                outside = True
                continue
            if owner is not None and not isinstance(module, str):
                continue  # a bound builtin such as a set's discard: bookkeeping, not waiting
            if isinstance(module, str) and module.startswith("asyncio."):
                if isinstance(callback, functools.partial):
                    values = [*callback.args, *callback.keywords.values()]
                else:
                    values = [cell.cell_contents for cell in getattr(fn, "__closure__", None) or ()
                              if _cell_filled(cell)]
                futures = [v for v in values if asyncio.isfuture(v) and v is not future]
                if not futures:
                    outside = True  # run_until_complete and the like: a host thread waits
                for other in futures:
                    more, out = self._waiters(other, root, depth + 1)
                    waiters.extend(more)
                    outside = outside or out or not more
                continue
            outside = True  # host code wants its result
        return waiters, outside

    def _held_by(self, root: str) -> set[int]:
        """Ids of what the version's modules and suspended frames hold, a few levels deep."""
        held = self._held.get(root)
        if held is not None:
            return held
        start = _module_values(root, self.match)
        for coro, where in self.coros:
            if where == root:
                start.extend(_held_values(coro))
        held = _reach(start)
        self._held[root] = held
        return held


def _module_values(root: str, match: Match) -> list[Any]:
    """The globals of every module of the version mounted at ``root``."""
    values: list[Any] = []
    for name, module in list(sys.modules.items()):
        if module is not None and match(name) == root:
            values.extend(list(vars(module).values()))
    return values


def _cell_filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def _reach(start: list[Any], depth: int = 3) -> set[int]:
    """Ids of the objects reachable from ``start`` through containers and instance attributes,
    ``depth`` levels down, at most ``_HELD_LIMIT`` objects (never into modules or classes)."""
    seen: set[int] = set()
    level = start
    for _ in range(depth):
        nxt: list[Any] = []
        for obj in level:
            key = id(obj)
            if key in seen:
                continue
            seen.add(key)
            if len(seen) > _HELD_LIMIT:
                return seen
            if isinstance(obj, dict):
                nxt.extend(list(obj.values()))
            elif isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
                nxt.extend(list(obj))
            elif isinstance(obj, weakref.WeakSet):
                nxt.extend(_members(obj))
            elif not isinstance(obj, (type, ModuleType, FunctionType)):
                attrs = getattr(obj, "__dict__", None)
                if type(attrs) is dict:
                    nxt.extend(list(attrs.values()))
        level = nxt
    seen.update(id(obj) for obj in level)
    return seen


def _members(weak: weakref.WeakSet[Any]) -> list[Any]:
    """A WeakSet's live members, safe while other threads add to it (the copy of its
    underlying set is one C call; iterating the WeakSet itself is not)."""
    return [obj for ref in set(weak.data)  # type: ignore[attr-defined]  # its set of refs, untyped
            if (obj := ref()) is not None]


def _pending(awaitable: Any) -> bool:
    if inspect.iscoroutine(awaitable):
        return awaitable.cr_frame is not None
    if inspect.isgenerator(awaitable):
        return awaitable.gi_frame is not None
    if inspect.isasyncgen(awaitable):
        return awaitable.ag_frame is not None
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

    #: names of tasks caught running at every read (their loop's thread busy in one step):
    #: what their frames hold, an unstarted awaitable maybe, could not be read; a free waits
    #: for them a moment (``freeing.UNREAD_GRACE``)
    unread: list[str] = []

    def __missing__(self, key: int) -> InFlight:
        return _NOTHING

    def slot(self, key: int) -> InFlight:
        """The entry of ``key``, made when missing."""
        found = self.get(key)
        if found is None:
            found = self[key] = InFlight()
        return found


_NOTHING = InFlight()


def scan(versions: Iterable[Version], *, confirm: float = 0.0, heap: bool = False) -> Found:
    """What of each version (keyed by ``id(version)``) is in flight right now.

    Safe to call from any thread, and it never waits for an event loop: thread stacks, every
    loop's tasks and their await chains are read from the calling thread. With ``confirm`` > 0,
    an answer of nothing in flight is checked by a second search ``confirm`` seconds later (the
    first one reads a moving system, one thread at a time: a coroutine handed from a thread to
    a task between two reads is seen by the second). With ``heap`` (the free's check), an
    answer of nothing in flight is first checked against the heap for versions with async
    code (``_search_heap``): what it finds is counted by that second search, and followed
    weakly by every later one (``stats()`` included) until it finishes.
    """
    versions = list(versions)
    found = _scan_once(versions)
    if confirm > 0 and not any(f.calls for f in found.values()) and not found.unread:
        seen = _search_heap(versions) if heap else 0
        tasks = bool(pending_tasks())
        if tasks:
            time.sleep(confirm)  # without a task anywhere, nothing can move between two reads
        if tasks or seen:
            found = _scan_once(versions)
    return found


# -- the heap: unstarted coroutines held by plain code -------------------------------------------
#
# An unstarted coroutine (or one parked outside any task: an async generator between two
# steps, a coroutine driven by hand) that a synchronous ``invoke_func`` or a live function
# returned is on no stack and in no task's chain, and plain synchronous code may hold it (a
# local of a thread, a module-level list of the host) where nothing above can look: another
# thread's ``frame.f_locals`` cannot be read (see ``_held_values``), and wrapping a sync
# ``invoke_func`` to note what it returns would cost its call path ~150 ns. So at free time,
# once the cheap search finds nothing, a version whose code has coroutine, async generator or
# iterable-coroutine code objects gets one ``gc.get_referrers(*those codes)``: one pass over
# every object the collector tracks with the GIL held (~15 ms per million small objects, +~1 ms
# per million for each code object looked for beyond the first: CPython compares each
# reference with every target; README "Drain-aware freeing" has the figures), which lists
# each unfinished coroutine of that code wherever it is held
# (3.11 visits a coroutine's ``gi_code``, 3.12+ its frame's code while it is unfinished). A
# version without async code never pays it. What it finds is followed by weak reference; it
# holds the free as long as it is pending, unless it is in a task's chain (the task is judged
# as a whole: a version's own worker does not hold), running on a stack (counted there), or
# kept by the version itself (its module globals or frames, as for its own tasks). A
# new search runs only once everything found before has finished, and not sooner than
# ``_HEAP_SHARE`` times its last duration after it (the version counts as held meanwhile), so a
# held free does not take the GIL for a heap pass at every poll.

#: a heap search waits this many times its last duration before the next one (<= 5% of the GIL)
_HEAP_SHARE = 20.0
#: code flags of what is awaited or iterated asynchronously
_ASYNC_FLAGS = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE
_get_referrers = gc.get_referrers  # one name, so a test can count the heap passes


class _Watch:
    """What the heap searches know of one version: its async code objects (weakly: a freed
    version keeps nothing alive through this), what the last search found, and when the
    next one may run."""

    def __init__(self, codes: list[weakref.ref[CodeType]]) -> None:
        self.codes = codes
        self.found: list[weakref.ref[Any]] = []
        self.next_at = 0.0
        self.searches = 0

    def deferred(self, alive: list[Any]) -> bool:
        """Whether the version counts as held although nothing found before is pending now:
        the last search found something and the next one is not due yet."""
        if any(_pending(obj) for obj in alive):
            return False
        return bool(self.found) and time.monotonic() < self.next_at


_watches: weakref.WeakKeyDictionary[Version, _Watch] = weakref.WeakKeyDictionary()
_watches_lock = threading.Lock()


def _watch(version: Version) -> _Watch:
    with _watches_lock:
        watch = _watches.get(version)
    if watch is None:  # computed outside the lock: two freers at once compute it twice at most
        watch = _Watch([weakref.ref(code) for code in async_codes(version)])
        with _watches_lock:
            watch = _watches.setdefault(version, watch)
    return watch


def _search_heap(versions: list[Version]) -> int:
    """One heap pass for the versions with async code whose search is due; each one's
    ``_Watch.found`` becomes what it finds. Returns how many unfinished ones were found."""
    now = time.monotonic()
    targets: dict[CodeType, _Watch] = {}
    searched: list[_Watch] = []
    for version in versions:
        watch = _watch(version)
        if not watch.codes or now < watch.next_at:
            continue
        codes = [code for ref in watch.codes if (code := ref()) is not None]
        if codes:
            searched.append(watch)
            targets.update(dict.fromkeys(codes, watch))
    if not targets:
        return 0
    found: dict[_Watch, list[weakref.ref[Any]]] = {watch: [] for watch in searched}
    count = 0
    start = time.perf_counter()
    referrers = _get_referrers(*targets)
    obj = frame = None
    for obj in referrers:
        kind = type(obj)
        if kind is CoroutineType:
            code, frame = obj.cr_code, obj.cr_frame
        elif kind is AsyncGeneratorType:
            code, frame = obj.ag_code, obj.ag_frame
        elif kind is GeneratorType:
            code, frame = obj.gi_code, obj.gi_frame
        else:
            continue  # its functions, running frames, enclosing code
        if frame is None:
            continue  # finished (3.11 still lists it)
        holder = targets.get(code)
        if holder is not None:
            found[holder].append(weakref.ref(obj))
            count += 1
    del referrers, obj, frame
    spent = time.perf_counter() - start
    for watch, refs in found.items():
        watch.found = refs
        watch.searches += 1
        watch.next_at = time.monotonic() + _HEAP_SHARE * spent
    return count


def async_codes(version: Version) -> list[CodeType]:
    """The code objects of the version's coroutines, async generators and iterable coroutines.

    Found from its modules' globals: functions (their nested code too, through ``co_consts``,
    closures and ``__wrapped__``), classes of the version and their members, and containers or
    instances a few levels down. No code object is kept by the version at load for this: a
    load pays nothing, the walk runs once per version at its first free check."""
    root = version.root
    match = _matcher({root})
    stack = [(value, 0) for value in _module_values(root, match)]
    codes: dict[CodeType, None] = {}
    seen: set[int] = set()
    while stack and len(seen) < _HELD_LIMIT:
        obj, depth = stack.pop()
        key = id(obj)
        if key in seen:
            continue
        seen.add(key)
        kind = type(obj)
        if kind is CodeType:
            if obj.co_flags & _ASYNC_FLAGS:
                codes[obj] = None
            stack.extend((const, depth) for const in obj.co_consts if type(const) is CodeType)
        elif kind is FunctionType:
            if match(obj.__globals__.get("__name__")) is not None:
                stack.append((obj.__code__, depth))
            if depth < 4:  # a decorator's wrapper: what it wraps
                stack.extend((cell.cell_contents, depth + 1) for cell in obj.__closure__ or ()
                             if _cell_filled(cell))
                wrapped = obj.__dict__.get("__wrapped__")
                if wrapped is not None:
                    stack.append((wrapped, depth + 1))
        elif isinstance(obj, type):
            if match(getattr(obj, "__module__", None)) is not None:
                stack.extend((value, depth) for value in list(vars(obj).values()))
        elif depth >= 4 or kind is ModuleType:
            continue
        elif kind in (staticmethod, classmethod, MethodType):
            stack.append((obj.__func__, depth))
        elif kind is property:
            stack.extend((fn, depth) for fn in (obj.fget, obj.fset, obj.fdel) if fn is not None)
        elif kind is functools.partial:
            stack.append((obj.func, depth + 1))
        elif kind is dict:
            stack.extend((value, depth + 1) for value in list(obj.values())[:_CONTAINER_ITEMS])
        elif kind in _CONTAINER_KINDS or kind is collections.deque:
            stack.extend((value, depth + 1) for value in list(obj)[:_CONTAINER_ITEMS])
        else:
            attrs = getattr(obj, "__dict__", None)
            if type(attrs) is dict:
                stack.extend((value, depth + 1) for value in list(attrs.values()))
    return list(codes)


def _scan_once(versions: list[Version]) -> Found:
    by_root = {v.root: v for v in versions}
    found = Found()
    if not by_root:
        return found
    match = _matcher(set(by_root))
    codes = _EntryCodes(by_root.values())
    me = threading.get_ident()
    mine = globals()
    threads = {t.ident: t for t in threading.enumerate()}
    run_codes = _run_codes()
    loops: dict[Any, int] = {}
    on_stacks: set[int] = set()  # ids of frames running now (their coroutines are on a stack)
    for ident, top in sys._current_frames().items():
        thread = threads.get(ident)
        hit: set[str] = set()
        frame: FrameType | None = top
        depth = 0
        while frame is not None and depth < _MAX_DEPTH:
            if frame.f_code in run_codes:
                loop = _frame_self(frame)
                if loop is not None:
                    loops[loop] = ident
            on_stacks.add(id(frame))
            if frame.f_globals is not mine:
                root = match(frame.f_globals.get("__name__"))
                if root is not None:
                    hit.add(root)
            frame = frame.f_back
            depth += 1
        del frame
        if not hit or ident == me:
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
    for loop in _members(_loops):
        loops.setdefault(loop, 0)
    handed_out: dict[int, str] = {}  # what an async invoke_func returned: the caller's
    for root, version in by_root.items():
        for awaitable in _members(version.awaitables):
            handed_out[id(awaitable)] = root
    tasks = _Tasks(match, codes, set(handed_out), loops, me) if "asyncio.tasks" in sys.modules else None
    chain_ids: set[int] = set()
    if tasks is not None:
        chain_ids = tasks.chain_ids
        found.unread = tasks.unread
        for task, roots, outer_root in tasks.read:
            if not roots:
                continue
            name = task.get_name()
            for root in roots:
                slot = found.slot(id(by_root[root]))
                if root == outer_root and tasks.own(task, root):
                    if not task.cancelling():  # told to stop already: it is ending
                        slot.own_tasks.append(name)
                else:
                    slot.tasks.append(name)
    # awaitables not running anywhere: returned by an async invoke_func, or made by the version
    # (a sync invoke_func's or a live function's async helper) and held, unstarted, by a
    # suspended coroutine of the host
    waiting: dict[int, tuple[Any, str]] = {}
    for root, version in by_root.items():
        for awaitable in _members(version.awaitables):
            waiting[id(awaitable)] = (awaitable, root)
    for coro, where in tasks.coros if tasks is not None else ():
        if where is not None:
            continue
        frame = _unfinished_coroutine(coro)
        if frame is None or _is_asyncio(frame.f_globals):
            continue  # asyncio's own coroutines wrap what they are given in tasks at once
        for value in _held_values(coro):
            if type(value) not in _AWAITABLE_KINDS:
                continue
            coro_frame = _unfinished_coroutine(value)
            if coro_frame is not None:
                root = match(coro_frame.f_globals.get("__name__"))
                if root is not None:
                    waiting[id(value)] = (value, root)
    # unstarted (or parked) coroutines of the versions found on the heap by the last search
    # (``_search_heap``), followed weakly from one free attempt to the next
    deferred: list[str] = []
    on_heap: dict[int, tuple[Any, str]] = {}
    for root, version in by_root.items():
        watch = _watches.get(version)
        if watch is None:
            continue
        alive = [obj for ref in watch.found if (obj := ref()) is not None]
        for obj in alive:
            on_heap[id(obj)] = (obj, root)
        if watch.deferred(alive):
            deferred.append(root)
        del alive
    counts: dict[str, int] = {}
    unheld: dict[str, list[Any]] = {}
    for source in (waiting, on_heap):
        for key, (awaitable, root) in source.items():
            if key in chain_ids or not _pending(awaitable):
                continue
            coro_frame = _unfinished_coroutine(awaitable)
            if coro_frame is not None and id(coro_frame) in on_stacks:
                continue  # running on a thread: counted there
            if source is on_heap:
                if key not in waiting:
                    unheld.setdefault(root, []).append(awaitable)
                continue
            counts[root] = counts.get(root, 0) + 1
    # found on the heap only: one the version keeps itself (in its module globals, or its own
    # frames, a few levels down) and nothing outside awaits is its own, like its own tasks
    for root, objs in unheld.items():
        held = tasks._held_by(root) if tasks is not None else _reach(_module_values(root, match))
        outside = sum(id(obj) not in held for obj in objs)
        if outside:
            counts[root] = counts.get(root, 0) + outside
    del unheld, on_heap
    for root in deferred:
        if not counts.get(root):  # its next heap search is not due yet: still held (see _Watch)
            counts[root] = 1
    for root, count in counts.items():
        found.slot(id(by_root[root])).awaitables = count
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

