"""Host-side types of the slink demo, shared by the host and its plugin."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    """What the fib plugin answers on each heartbeat."""

    plugin: str
    version: str
    n: int
    value: int

    def __str__(self) -> str:
        return f"{self.plugin} {self.version}: fib({self.n}) = {self.value}"
