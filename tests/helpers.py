"""Small helpers shared by the test folders: no-op plugin source, polling."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

#: the seven hooks of the plugin contract (README), each doing nothing: a plugin that builds and loads
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


def this_python_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default ``os.environ``) for a subprocess that must use the Python running the
    tests: its bin folder (with its ``hotswap`` console script) first on ``PATH``, and, in a
    venv, ``VIRTUAL_ENV`` naming it (``demo/_lib.sh`` prefers that venv to the checkout's
    ``.venv``), so the demos' shell scripts run under this Python whatever venv pytest runs in."""
    out = dict(os.environ if env is None else env)
    bin_dir = os.path.dirname(sys.executable)
    out["PATH"] = os.pathsep.join(filter(None, [bin_dir, out.get("PATH")]))
    if sys.prefix != sys.base_prefix:
        out["VIRTUAL_ENV"] = sys.prefix
    else:
        out.pop("VIRTUAL_ENV", None)
    return out
