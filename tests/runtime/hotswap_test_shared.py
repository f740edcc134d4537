"""A host-side module for the runtime tests: the types plugins share across versions."""

from typing import Protocol, runtime_checkable


class AlphaApi:
    """What plugin alpha exports."""

    def __init__(self, stamp: str) -> None:
        self.stamp = stamp


@runtime_checkable
class Greeter(Protocol):
    def greet(self) -> str: ...


class Counter(Protocol):
    count: int

    def bump(self) -> int: ...
