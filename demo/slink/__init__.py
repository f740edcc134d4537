"""slink: static linking (``hotswap build --staticLinking``): plugins run from source, debuggable."""
