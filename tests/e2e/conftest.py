"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from web_host import PLUGINS


@pytest.fixture
def build_web(build_plugin: Callable[..., object], tmp_path: Path) -> Callable[[str], Path]:
    """``build_web(stamp)``: build both web demo plugins into tmp_path/bin with that stamp."""
    out = tmp_path / "bin"

    def run(stamp: str) -> Path:
        for name in ("greeter", "stats"):
            build_plugin(PLUGINS / name, out, stamps={"CompileTimeString": stamp})
        return out

    return run
