"""Fixtures of the runtime tests: an event recorder and swappers that are closed after use."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from handmade import EVENTS_MODULE, Events

from hotswap_runtime import PluginManagerSwapper


@pytest.fixture
def events() -> Iterator[Events]:
    recorder = Events()
    module = types.ModuleType(EVENTS_MODULE)
    module.hook = recorder.hook
    module.recorder = recorder
    sys.modules[EVENTS_MODULE] = module
    yield recorder
    del sys.modules[EVENTS_MODULE]


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    return folder


@pytest.fixture
def make_swapper(plugin_dir: Path) -> Iterator[Callable[..., PluginManagerSwapper]]:
    """A factory of swappers on ``plugin_dir`` (free_delay 0 by default), closed after the test."""
    made: list[PluginManagerSwapper] = []

    def factory(folder: Path | None = None, **kwargs: Any) -> PluginManagerSwapper:
        kwargs.setdefault("free_delay", 0)
        swapper = PluginManagerSwapper(folder or plugin_dir, **kwargs)
        made.append(swapper)
        return swapper

    yield factory
    for swapper in made:
        swapper.close()


