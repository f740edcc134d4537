"""Host-side types of the extension demo, shared by the host and its plugins.

``Router`` is the host's extension: ``PluginManagerSwapper(extension_factory=Router)`` makes a
fresh one for every manager (``vault.extension``), the plugins register their pages in it from
``on_init``, and the host serves whatever the current manager's router holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

#: a page handler: takes no argument, returns the page's text
Handler = Callable[[], str]


class Router:
    """Paths -> page handlers, filled by the plugins of one manager.

    A version carried over into a new manager runs ``on_init`` again for that manager's router,
    so ``add`` replaces an existing path instead of refusing it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pages: dict[str, tuple[str, Handler]] = {}

    def add(self, path: str, handler: Handler, *, plugin: str) -> None:
        """Serve ``handler`` at ``path`` on behalf of ``plugin``."""
        if not path.startswith("/"):
            raise ValueError(f"plugin {plugin!r}: path {path!r} must start with '/'")
        with self._lock:
            self._pages[path] = (plugin, handler)

    def paths(self) -> list[str]:
        """The registered paths, sorted."""
        with self._lock:
            return sorted(self._pages)

    def get(self, path: str) -> str:
        """Render the page at ``path``.

        Raises:
            LookupError: no plugin registered ``path``.
        """
        with self._lock:
            entry = self._pages.get(path)
        if entry is None:
            raise LookupError(f"no page at {path!r}; registered: {', '.join(self.paths()) or 'none'}")
        return entry[1]()
