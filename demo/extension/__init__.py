"""extension: a host-defined object (``extension_factory``) that the plugins fill in ``on_init``."""
