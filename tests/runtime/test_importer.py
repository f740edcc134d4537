"""The in-memory importer: bytecode only when made for this Python, sources otherwise."""

from __future__ import annotations

import importlib
import importlib.util
import marshal
import sys

import pytest

from hotswap_runtime.importer import VersionLoader, mount, mount_name, parse_mount_name, unmount

TAG = sys.implementation.cache_tag


def _pyc(source: str) -> bytes:
    code = compile(source, "x.py", "exec", dont_inherit=True)
    return importlib.util.MAGIC_NUMBER + (1).to_bytes(4, "little") + b"\0" * 8 + marshal.dumps(code)


@pytest.mark.parametrize("bytecode, expected", [
    ({"cache_tag": TAG, "magic": importlib.util.MAGIC_NUMBER.hex(), "optimize": 0}, "from pyc"),
    ({"cache_tag": "cpython-299", "magic": "00000000", "optimize": 0}, "from source"),
    (None, "from source"),
])
def test_bytecode_used_only_when_it_matches(bytecode, expected) -> None:
    """The artifact's pyc runs when its cache tag and magic match this Python; else the source."""
    files = {"pkg/__init__.py": b"WHERE = 'from source'\n",
             f"pkg/__pycache__/__init__.{TAG}.pyc": _pyc("WHERE = 'from pyc'\n")}
    loader = VersionLoader("pkg", files, "_hotswap_test_pkg_0", "/x/pkg.hsp#0", bytecode)
    mount(loader)
    try:
        module = importlib.import_module("_hotswap_test_pkg_0")
        assert module.WHERE == expected
        assert module.__file__ == "/x/pkg.hsp#0/pkg/__init__.py"
        assert loader.get_source("_hotswap_test_pkg_0") == "WHERE = 'from source'\n"
    finally:
        unmount(loader)
    assert "_hotswap_test_pkg_0" not in sys.modules


def test_missing_submodule_is_module_not_found() -> None:
    """Importing a module the snapshot lacks raises ModuleNotFoundError, as on disk."""
    loader = VersionLoader("pkg", {"pkg/__init__.py": b""}, "_hotswap_test_pkg_1", "/x#1", None)
    mount(loader)
    try:
        importlib.import_module("_hotswap_test_pkg_1")
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module("_hotswap_test_pkg_1.nope")
    finally:
        unmount(loader)


@pytest.mark.parametrize("name, load", [("world", 3), ("world_map", 12), ("a_1", 7)])
def test_mount_names_read_back(name: str, load: int) -> None:
    """The mount name of a version, and any of its submodules, parses back to plugin and load,
    whatever underscores and digits the plugin's name holds."""
    root = mount_name(name, load)
    assert root.startswith("_hotswap_") and name in root and str(load) in root
    assert parse_mount_name(root) == (name, load)
    assert parse_mount_name(f"{root}.jobs.queue") == (name, load)


@pytest.mark.parametrize("module", ["world", "_hotswap_", "_hotswap_world", "_hotswap_world_x",
                                    "_hotswap__3", "_hotswap_imports", "x._hotswap_world_3"])
def test_other_module_names_are_not_mounts(module: str) -> None:
    assert parse_mount_name(module) is None
