"""hotswap build: turn a plugin package into a versioned, verifiable ``.hsp`` artifact."""

__version__ = "0.1.0"

__all__ = ["__version__"]
