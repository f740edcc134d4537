"""Shared fixtures: build a plugin in-process, and import a built artifact for a test."""

from __future__ import annotations

import importlib.abc
import importlib.util
import itertools
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hotswap_build.build import BuildResult, build
from hotswap_runtime.artifact import read_artifact

SAMPLES = Path(__file__).parent / "samples"
# sample plugins are inputs to builds, never tests themselves
collect_ignore = ["samples"]
_mounts = itertools.count()


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory: pytest.TempPathFactory,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Builds never touch the user's cache: each test gets its own."""
    monkeypatch.setenv("HOTSWAP_CACHE_DIR", str(tmp_path_factory.mktemp("hotswap-cache")))


@pytest.fixture
def build_plugin() -> Callable[..., BuildResult]:
    """``build_plugin(plugin_dir, out_dir, **kwargs)``: run the in-process build API."""

    def run(plugin_dir: str | Path, out_dir: str | Path, **kwargs: Any) -> BuildResult:
        return build(plugin_dir, out_dir, **kwargs)

    return run


@pytest.fixture
def sample(tmp_path: Path) -> Callable[..., Path]:
    """``sample("good/hello")``: copy a sample plugin folder into tmp_path, return the copy."""

    def copy(name: str, into: Path | None = None) -> Path:
        source = SAMPLES / name
        target = (into or tmp_path / "plugins") / source.name
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        return target

    return copy


class _ArtifactFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """A minimal test-only importer: mounts an artifact's package under another name."""

    def __init__(self, mount: str, name: str, files: dict[str, bytes]) -> None:
        self.mount, self.name, self.files = mount, name, files

    def _member(self, fullname: str) -> tuple[str, bool] | None:
        if fullname != self.mount and not fullname.startswith(self.mount + "."):
            return None
        path = self.name + fullname[len(self.mount):].replace(".", "/")
        if f"{path}/__init__.py" in self.files:
            return f"{path}/__init__.py", True
        if f"{path}.py" in self.files:
            return f"{path}.py", False
        return None

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        found = self._member(fullname)
        if found is None:
            return None
        member, is_package = found
        spec = importlib.util.spec_from_loader(fullname, self, origin=member, is_package=is_package)
        if is_package:
            spec.submodule_search_locations = []
        return spec

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        member, _ = self._member(module.__name__)
        exec(compile(self.files[member], member, "exec", dont_inherit=True), module.__dict__)


@pytest.fixture
def load_artifact() -> Iterator[Callable[[Path], ModuleType]]:
    """``load_artifact(path)``: verify and import an artifact's package under a fresh name.

    The import hook and every module it made are removed after the test.
    """
    finders: list[_ArtifactFinder] = []

    def load(path: Path) -> ModuleType:
        artifact = read_artifact(path)
        finder = _ArtifactFinder(f"_hotswap_test_{artifact.name}_{next(_mounts)}", artifact.name,
                                 dict(artifact.files))
        finders.append(finder)
        sys.meta_path.insert(0, finder)
        return importlib.import_module(finder.mount)

    yield load
    for finder in finders:
        sys.meta_path.remove(finder)
        for module in [m for m in sys.modules if m == finder.mount
                       or m.startswith(finder.mount + ".")]:
            del sys.modules[module]
