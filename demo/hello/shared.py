"""Host-side types of the hello demo, shared by the host and its plugins.

Plugins import this module (``from demo.hello.shared import Heartbeat``); it is part of the
host, never of a plugin, so every plugin version sees the same ``Heartbeat`` class.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Heartbeat:
    """One heartbeat of the host: each plugin adds a line to it through ``say``."""

    tick: int
    lines: list[str] = field(default_factory=list)

    def say(self, plugin: str, version: str, text: str) -> None:
        """Add what ``plugin``, built with the stamp ``version``, has to say this beat."""
        self.lines.append(f"heartbeat {self.tick}: {plugin} {version}: {text}")
