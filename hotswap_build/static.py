"""Static linking: the registration module in the plugin folder, and the glue that imports
the plugin from source under its real name (``hotswap_static_plugin_<name>.py``) and gathers
every such plugin (``hotswap_static_plugins.py``)."""

from __future__ import annotations

from pathlib import Path

from hotswap_runtime.artifact import REGISTRATION_MODULE, write_atomically

from .layout import PluginLayout, is_generated

__all__ = ["STATIC_PLUGINS_MODULE", "STATIC_PLUGIN_PREFIX", "clean_static", "write_static"]

STATIC_PLUGIN_PREFIX = "hotswap_static_plugin_"
STATIC_PLUGINS_MODULE = "hotswap_static_plugins.py"


def _glue_path(layout: PluginLayout, out_path: Path) -> Path:
    return out_path / f"{STATIC_PLUGIN_PREFIX}{layout.name}.py"


def _static_names(out_path: Path) -> list[str]:
    names = []
    for path in sorted(out_path.glob(f"{STATIC_PLUGIN_PREFIX}*.py")):
        if is_generated(path):
            names.append(path.stem[len(STATIC_PLUGIN_PREFIX):])
    return names


def write_static(layout: PluginLayout, out_path: Path, registration: bytes) -> tuple[Path, ...]:
    """Write the registration module, the plugin's glue module and the aggregate module."""
    from .render import static_plugin_module, static_plugins_module

    reg_path = layout.root / f"{REGISTRATION_MODULE}.py"
    glue_path = _glue_path(layout, out_path)
    all_path = out_path / STATIC_PLUGINS_MODULE
    glue = static_plugin_module(layout.name, layout.import_name).encode("utf-8")
    names = sorted({*_static_names(out_path), layout.name})
    aggregate = static_plugins_module(names).encode("utf-8")
    written: list[tuple[Path, bytes | None]] = []
    try:
        for path, body in ((reg_path, registration), (glue_path, glue), (all_path, aggregate)):
            written.append((path, path.read_bytes() if path.exists() else None))
            write_atomically(path, body)
    except BaseException:
        for path, previous in reversed(written):  # put back what was there before
            if previous is None:
                path.unlink(missing_ok=True)
            else:
                write_atomically(path, previous)
        raise
    return (reg_path, glue_path, all_path)


def clean_static(layout: PluginLayout, out_path: Path) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """Remove what static linking generated for the plugin; regenerate the aggregate.

    Returns the files (re)written and the files removed.
    """
    from .render import static_plugins_module

    removed: list[Path] = []
    reg_path = layout.root / f"{REGISTRATION_MODULE}.py"
    if reg_path.exists() and is_generated(reg_path):
        reg_path.unlink()
        removed.append(reg_path)
    glue_path = _glue_path(layout, out_path)
    if glue_path.exists() and is_generated(glue_path):
        glue_path.unlink()
        removed.append(glue_path)
    all_path = out_path / STATIC_PLUGINS_MODULE
    names = _static_names(out_path)
    generated: tuple[Path, ...] = ()
    if names:
        write_atomically(all_path, static_plugins_module(names).encode("utf-8"))
        generated = (all_path,)
    elif all_path.exists() and is_generated(all_path):
        all_path.unlink()
        removed.append(all_path)
    return generated, tuple(removed)
