"""trine: three plugins wired by ``export``/``import_`` (gamma -> beta -> alpha)."""
