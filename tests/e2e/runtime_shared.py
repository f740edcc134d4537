"""A host-side module for the runtime end-to-end tests: types the sample plugins share."""


class AlphaApi:
    """What plugin alpha exports to its dependents."""

    def __init__(self, stamp: str) -> None:
        self.stamp = stamp

    def hello(self) -> str:
        return f"alpha {self.stamp}"
