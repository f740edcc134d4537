"""The greeter's words: a submodule, reloaded with its package."""

from __future__ import annotations


def greeting(name: str) -> str:
    """The greeting for ``name``."""
    return f"hello, {name}"
