"""The slink plugins. A package (unlike the other demos' plugin folders) on purpose.

``hotswap build --staticLinking`` imports a plugin under its real import name, found by walking
up the ``__init__.py`` chain: with this file the fib plugin is ``demo.slink.plugin.fib``,
importable from the repository root like the host itself. The host never imports it directly.
"""
