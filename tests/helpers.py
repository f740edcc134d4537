"""Small helpers shared by the test folders: no-op plugin source, polling."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: the seven hooks of SPEC section 2, each doing nothing: a plugin that builds and loads
NOOP_HOOKS = """\
def on_load(data): pass
def on_init(vault): pass
def on_free(): pass
def export(): pass
def import_(): pass
def invoke_func(name, *params): pass
def reloadable(): return True
"""


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``predicate`` until it is true and return its value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)
