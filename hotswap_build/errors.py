"""``BuildError``: every problem ``hotswap build`` found, raised once."""

from __future__ import annotations

from collections.abc import Iterable

from hotswap_runtime.errors import HotswapError

__all__ = ["BuildError"]


class BuildError(HotswapError):
    """A build that cannot go on; ``problems`` holds one message per problem, sorted.

    The CLI prints each problem as an ``Error: ...`` line. Each message says what is wrong,
    where (``file:line`` when there is a place) and how to fix it.

    Attributes:
        problems: every problem found, in a stable order.
    """

    def __init__(self, problems: Iterable[str], *, plugin: str | None = None,
                 step: str | None = "build") -> None:
        found = tuple(problems)  # each rule reports its problem once: no dedup by wording
        super().__init__("\n".join(found), plugin=plugin, step=step)
        self.problems = found
