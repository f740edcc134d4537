"""A good plugin written with relative imports and hooks imported from a submodule."""

from .hooks import export, import_, on_free, on_init, on_load, reloadable
from .jobs import Live_Task, live_task

VERSION = "1"


def invoke_func(name, *params):
    return live_task(*params)


def self_test(vault):
    assert live_task(1) == 2
