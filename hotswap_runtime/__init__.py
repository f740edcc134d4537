"""hotswap_runtime: load, swap, isolate and free plugin versions inside a running host."""

from .errors import HotswapError
from .static import StaticPlugin

__all__ = [
    "HotswapError",
    "StaticPlugin",
]
