"""What the web host shares with its plugins: the host state and the call a plugin receives.

This module belongs to the host: it is imported once and never reloaded, so the objects it
defines (counters, sessions) survive every reload. Plugins import it for its types; they never
keep its objects in their own module globals, which a reload discards.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Call", "HostState", "Session"]


@dataclass
class Session:
    """One client of the host: an HTTP cookie session or one websocket connection.

    Attributes:
        id: the session id (the ``sid`` cookie for HTTP clients).
        kind: ``http`` or ``ws``.
        created: ``time.time()`` when the session began.
        hits: calls made in this session so far.
        data: free-form values plugins keep per session (they survive reloads).
    """

    id: str
    kind: str
    created: float = field(default_factory=time.time)
    hits: int = 0
    data: dict[str, Any] = field(default_factory=dict)


class HostState:
    """The host's in-memory state: named counters and sessions, shared by every plugin version.

    Thread-safe, as plugins may be called from the loop and from worker threads alike.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: Counter[str] = Counter()
        self.sessions: dict[str, Session] = {}
        self.started = time.time()

    def count(self, key: str, by: int = 1) -> int:
        """Add ``by`` to counter ``key`` and return its new value."""
        with self._lock:
            self.counters[key] += by
            return self.counters[key]

    def session(self, sid: str | None, kind: str = "http") -> Session:
        """The session ``sid``, or a new one (with a fresh id) when it is unknown or None."""
        with self._lock:
            found = self.sessions.get(sid) if sid else None
            if found is None:
                found = Session(secrets.token_hex(8), kind)
                self.sessions[found.id] = found
            found.hits += 1
            return found

    def end_session(self, sid: str) -> None:
        """Forget session ``sid`` (a closed websocket); unknown ids are ignored."""
        with self._lock:
            self.sessions.pop(sid, None)

    def snapshot(self) -> dict[str, Any]:
        """Counters and session figures as plain JSON-ready values."""
        with self._lock:
            kinds = Counter(s.kind for s in self.sessions.values())
            return {"counters": dict(sorted(self.counters.items())),
                    "sessions": {"http": kinds["http"], "ws": kinds["ws"]},
                    "uptime_s": round(time.time() - self.started, 3)}


@dataclass
class Call:
    """What the host hands a plugin's ``invoke_func(action, call, *extra)``.

    Attributes:
        action: the action asked for (the last segment of ``/p/<plugin>/<action>``, or ``ws``).
        params: the query parameters of the request (empty for websocket messages).
        session: the caller's session.
        state: the host state (counters, sessions), the same object across reloads.
        reloads: the swapper's reload counter when the call was made.
    """

    action: str
    params: dict[str, str]
    session: Session
    state: HostState
    reloads: int
