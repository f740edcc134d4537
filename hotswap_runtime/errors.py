"""The one error hierarchy of hotswap: everything a user can cause is a ``HotswapError``."""

from __future__ import annotations

__all__ = ["HotswapError", "ArtifactError"]


class HotswapError(Exception):
    """A failure of hotswap, or of a plugin during a load, that the caller can act on.

    Attributes:
        plugin: the plugin concerned, if any.
        step: the step that failed (``verify``, ``on_load``, ``import_``...), if any.
    """

    def __init__(self, message: str, *, plugin: str | None = None, step: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.step = step


class ArtifactError(HotswapError):
    """An artifact that cannot be read or does not verify; the message lists every problem."""

    def __init__(self, message: str, *, path: str, plugin: str | None = None,
                 problems: tuple[str, ...] = ()) -> None:
        super().__init__(message, plugin=plugin, step="verify")
        self.path = path
        self.problems = problems
