"""hotswap_runtime: load, swap, isolate and free plugin versions inside a running host."""

from . import live
from .errors import HotswapError
from .manager import Details, Plugin, PluginManager, Vault
from .static import StaticPlugin
from .swapper import PluginManagerSwapper, VersionStats

__all__ = [
    "Details",
    "HotswapError",
    "Plugin",
    "PluginManager",
    "PluginManagerSwapper",
    "StaticPlugin",
    "Vault",
    "VersionStats",
    "live",
]
