"""Render the generated modules from the jinja2 templates in ``templates/``.

The templates ship inside the wheel as ``hotswap_build/templates``; in a source checkout they
are the repository's top-level ``templates/``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from . import __version__
from .static import STATIC_PLUGIN_PREFIX

__all__ = ["computed_imports_module", "registration_module", "static_plugin_module",
           "static_plugins_module", "templates_dir"]


def templates_dir() -> Path:
    """The folder holding the ``*.py.j2`` templates, installed or in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "registration.py.j2").is_file():
            return candidate
    raise FileNotFoundError(f"hotswap's templates are missing (looked in {here / 'templates'} "
                            f"and {here.parent / 'templates'}); reinstall hotswap")


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


def _render(template: str, **values: Any) -> str:
    return _environment().get_template(template).render(version=__version__, **values)


def registration_module(name: str, hooks: Iterable[str], live_funcs: Mapping[str, str],
                        live_types: Mapping[str, str]) -> str:
    """The ``_hotswap_registration`` module: HOOKS, LIVE_FUNCS and LIVE_TYPES.

    Args:
        name: the plugin name (the root package inside the artifact).
        hooks: the hook names the root package provides.
        live_funcs: live function name -> dotted module inside the artifact.
        live_types: live type name -> dotted module inside the artifact.
    """
    by_module: dict[str, list[str]] = {}
    for live, module in {**live_funcs, **live_types}.items():
        relative = "." + module[len(name) + 1:] if module != name else "."
        by_module.setdefault(relative, []).append(live)
    return _render(
        "registration.py.j2",
        name=name,
        hooks=sorted(hooks),
        live_imports=[(m, sorted(n)) for m, n in sorted(by_module.items())],
        live_funcs=sorted(live_funcs),
        live_types=sorted(live_types),
    )


def computed_imports_module(name: str, import_name: str) -> str:
    """The ``_hotswap_imports`` module: the functions the plugin's computed imports call.

    Args:
        name: the plugin name.
        import_name: the plugin's real dotted import name, whose names it maps.
    """
    return _render("computed_imports.py.j2", name=name, import_name_repr=repr(import_name),
                   dotted="." in import_name)


def static_plugin_module(name: str, import_name: str) -> str:
    """``hotswap_static_plugin_<name>.py``: builds the plugin's ``StaticPlugin``."""
    return _render("static_plugin.py.j2", name=name, import_name=import_name)


def static_plugins_module(names: Iterable[str]) -> str:
    """``hotswap_static_plugins.py``: ``HOTSWAP_STATIC_PLUGINS`` over every given plugin."""
    ordered = sorted(set(names))
    modules = [f"{STATIC_PLUGIN_PREFIX}{n}" for n in ordered]
    plugins = list(zip(ordered, modules, strict=True))
    return _render("static_plugins.py.j2", modules=modules, plugins=plugins)
