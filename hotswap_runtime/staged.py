"""``PreparedReload``: a reload run up to, not including, the swap (README "Staged reloads").

Design note on the lock: ``swapper.prepare`` takes the swapper's reload lock (a plain
``threading.Lock``) and the prepared reload keeps it until ``commit`` or ``abort``. A
``threading.Lock`` (unlike an ``RLock``) may be released by any thread, so a reload prepared in
one thread may be committed or aborted from another; meanwhile every other load, reload,
rollback or close waits, and the preparing thread itself is refused (rather than deadlocked)
if it tries one. Leaving a ``with`` block without ``commit()`` aborts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, final

from .errors import HotswapError

if TYPE_CHECKING:
    from .manager import Details, PluginManager
    from .version import Version

__all__ = ["PreparedReload", "Staged"]


@final
class Staged:
    """What a prepared load built: its manager, Details, the manager it replaces, fresh versions."""

    __slots__ = ("manager", "details", "old", "fresh", "swap")

    def __init__(self, manager: PluginManager | None, details: Details, old: PluginManager | None,
                 fresh: dict[str, Version], swap: bool) -> None:
        self.manager = manager
        self.details = details
        self.old = old
        self.fresh = fresh
        self.swap = swap  # False when there was nothing to load: commit then only marks loaded


@final
class PreparedReload:
    """A reload that ran every step up to the swap; ``commit()`` swaps, ``abort()`` undoes it.

    Attributes:
        details: the ``Details`` the reload reports once committed.
        manager: the new ``PluginManager`` (the current one when there was nothing to load),
            for the host's own probes before the swap.

    It holds the swapper's reload lock until ``commit`` or ``abort``, which any thread may call.
    """

    def __init__(self, staged: Staged, commit: Callable[[Staged], Details],
                 abort: Callable[[Staged], None], unlock: Callable[[], None]) -> None:
        self._staged = staged
        self._commit = commit
        self._abort = abort
        self._unlock = unlock
        self._state = "prepared"
        self._guard = threading.Lock()
        self.details: Details = staged.details
        self.manager: PluginManager | None = staged.manager

    @property
    def state(self) -> str:
        """``prepared``, ``committed`` or ``aborted``."""
        return self._state

    def _finish(self, to: str, step: str) -> Staged:
        with self._guard:
            if self._state != "prepared":
                raise HotswapError(f"this prepared reload was already {self._state}; "
                                   "prepare a new one with swapper.prepare()", step=step)
            self._state = to
        return self._staged

    def commit(self) -> Details:
        """Swap the prepared manager in, schedule the replaced one for freeing, release the lock.

        Raises:
            HotswapError: already committed or aborted.
        """
        staged = self._finish("committed", "commit")
        try:
            return self._commit(staged)
        finally:
            self._unlock()

    def abort(self) -> None:
        """Free what ``prepare`` loaded (``on_free`` where ``on_load`` ran); nothing changed.

        Raises:
            HotswapError: already committed or aborted.
        """
        staged = self._finish("aborted", "abort")
        try:
            self._abort(staged)
        finally:
            self._unlock()

    def __enter__(self) -> PreparedReload:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._state == "prepared":
            self.abort()

    def __repr__(self) -> str:
        return f"<PreparedReload {self._state}: {self.details}>"

    def __del__(self) -> None:  # a forgotten prepared reload must not hold the lock forever
        if getattr(self, "_state", None) == "prepared":
            try:
                self.abort()
            except Exception:  # noqa: BLE001 - nothing to report to at interpreter teardown
                pass
