"""``StaticPlugin``: a plugin linked into the host from source by ``hotswap build --staticLinking``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any

__all__ = ["StaticPlugin"]


@dataclass(frozen=True)
class StaticPlugin:
    """A plugin imported from its source files under its real import name.

    The generated ``hotswap_static_plugin_<name>.py`` builds one of these; the runtime loads it
    with the same lifecycle, checks and vault as an artifact (``static_plugins=``).

    Attributes:
        name: the plugin name (its folder's base name).
        package: the plugin's root package, imported from source.
        hooks: the seven required functions by name, plus ``self_test`` when defined.
        live_funcs: live function name -> function.
        live_types: live type name -> class.
    """

    name: str
    package: ModuleType
    hooks: Mapping[str, Callable[..., Any]]
    live_funcs: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    live_types: Mapping[str, type] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for attr in ("hooks", "live_funcs", "live_types"):
            object.__setattr__(self, attr, MappingProxyType(dict(getattr(self, attr))))
