"""hotswap_runtime: load, swap, isolate and free plugin versions inside a running host."""

from . import live
from .errors import ArtifactError, HotswapError
from .leases import Lease
from .manager import Details, Plugin, PluginManager, Vault
from .staged import PreparedReload
from .static import StaticPlugin
from .swapper import PluginManagerSwapper, VersionStats

__all__ = [
    "ArtifactError",
    "Details",
    "HotswapError",
    "Lease",
    "Plugin",
    "PluginManager",
    "PluginManagerSwapper",
    "PreparedReload",
    "StaticPlugin",
    "Vault",
    "VersionStats",
    "live",
]
