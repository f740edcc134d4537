"""Leases: a session pinned to the manager it started on (README "Sessions pinned to a version").

Design note: taking or releasing a lease takes no lock at all, so it never waits for a reload
(which holds the reload lock for as long as it imports and runs hooks) nor for a free. A lease
is one entry in its manager's ``_leases`` dict; a dict store, delete or copy is one step under
the GIL. The freer and a taker meet Dekker-style on two fields of the manager: the taker stores
its lease, then reads ``_freeing``; the freer sets ``_freeing``, then reads ``_leases``. Either
the freer sees the lease (and waits), or the taker sees the flag (and takes back its lease,
then leases the manager that is current by now). ``free_timeout`` still caps a lease: a free
due that long is done anyway, with a warning naming each lease still held.

A released lease keeps nothing of its manager (its ``_manager`` slot is cleared before the
swapper's release hook runs): a host often keeps its session objects, and the lease in them,
long after the session ended, and a lease that still named its manager would keep every version
of it alive however long ago it was freed. Reading ``manager`` afterwards is an error saying so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, final

from .errors import HotswapError

if TYPE_CHECKING:
    from .manager import PluginManager

__all__ = ["Lease", "take"]

_now = time.time


@final
class Lease:
    """A manager pinned for one session: while held, none of its versions is freed.

    ``with swapper.lease("match 42") as manager: ...`` releases on leaving the block;
    ``lease = swapper.lease("ws 10.0.0.7:5531")`` is held across callbacks until
    ``lease.release()``.

    Once released, the lease holds nothing of its manager (so a session object that keeps
    it does not keep freed versions alive); ``manager`` then raises ``HotswapError``.

    Attributes:
        name: what the host called it (shown by ``swapper.leases()``, ``stats()`` and the
            ``free_timeout`` warning).
    """

    __slots__ = ("_manager", "name", "_time", "_on_release", "__weakref__")

    def __init__(self, manager: PluginManager, name: str,
                 on_release: Callable[[Lease, PluginManager], None] | None) -> None:
        self._manager: PluginManager | None = manager  # None once released
        self.name = name
        self._time = _now()
        self._on_release = on_release  # None once released

    @property
    def manager(self) -> PluginManager:
        """The ``PluginManager`` that was current when the lease was taken.

        Raises:
            HotswapError: the lease is released (it no longer pins, nor names, a manager).
        """
        manager = self._manager
        if manager is None:
            raise self._released()
        return manager

    def _released(self) -> HotswapError:
        return HotswapError(
            f'lease "{self.name}" is released: it no longer pins a manager (its versions may be '
            "freed); take a new lease with swapper.lease(name), or use swapper.current()",
            step="lease")

    @property
    def taken(self) -> datetime:
        """When the lease was taken (UTC)."""
        return datetime.fromtimestamp(self._time, UTC)

    @property
    def held(self) -> bool:
        """False once released."""
        return self._on_release is not None

    @property
    def versions(self) -> tuple[tuple[str, int], ...]:
        """(plugin name, load number) of each version the lease pins, in dependency order
        (empty once released)."""
        manager = self._manager
        if manager is None:
            return ()
        return tuple((plugin.name, plugin._version.load) for plugin in manager.plugins())

    def release(self) -> None:
        """Let the manager's versions go (freed once ``free_delay`` has passed since their
        replacement and nothing else holds them). Releasing twice does nothing.

        The lease keeps nothing of the manager afterwards, so holding a released lease never
        keeps a version alive."""
        on_release = self._on_release
        if on_release is not None:
            manager = self._manager
            self._on_release = None
            self._manager = None
            if manager is not None:
                on_release(self, manager)

    def __enter__(self) -> PluginManager:
        manager = self._manager
        if manager is None:
            raise self._released()
        return manager

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        manager = self._manager
        if manager is None:
            return f"<Lease {self.name!r} released>"
        return f"<Lease {self.name!r} on {manager!r} held>"


class _Current(Protocol):
    _current: PluginManager | None


def take(owner: _Current, name: str,
         on_release: Callable[[Lease, PluginManager], None]) -> Lease | None:
    """Lease ``owner``'s current manager; None when there is none (no load yet, or closed).

    ``owner._current`` is read, not ``current()`` called, and ``on_release`` is bound once by
    the caller: a lease costs the work it does (a dict store and two flag reads), not calls."""
    while True:
        manager = owner._current
        if manager is None:
            return None
        lease = Lease(manager, name, on_release)
        leases = manager._leases
        leases[lease] = None
        if not manager._freeing:
            return lease
        # its free has begun (it was replaced meanwhile): the current manager is the one to pin
        leases.pop(lease, None)
        lease._on_release = None
        lease._manager = None
