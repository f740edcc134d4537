"""Host-side types of the trine demo: the interfaces the plugins export to each other.

A plugin never imports another plugin's package. It declares what it needs as an annotated
attribute of its ``import_()`` object (``alpha: AlphaApi``), and the runtime sets that attribute
to the ``export()`` of the plugin of that name once it conforms to the annotation (these are
runtime-checkable protocols, so the check is ``isinstance``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class AlphaApi(Protocol):
    """What alpha exports."""

    def path(self) -> str:
        """Who answers: ``"alpha <stamp>"``."""
        ...


@runtime_checkable
class BetaApi(Protocol):
    """What beta exports."""

    def path(self) -> str:
        """Who answers, through whom: ``"beta <stamp> -> alpha <stamp>"``."""
        ...
