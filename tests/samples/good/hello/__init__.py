"""A small good plugin: the seven hooks, a live function and type, self-imports."""

from importlib import resources

from hello import jobs
from hello.sub.util import shout
import hello.sub.util as util

CompileTimeString = "dev"
GREETING: str = "hello"
calls = []


def on_load(data):
    calls.append(("on_load", data))


def on_init(vault):
    calls.append(("on_init", vault))


def on_free():
    calls.append(("on_free",))


def export():
    return None


def import_():
    return None


def invoke_func(name, *params):
    if name == "greet":
        return shout(f"{GREETING} {params[0]} ({CompileTimeString})")
    if name == "job":
        return jobs.live_run(*params)
    if name == "lazy":
        from hello.sub import util as lazy

        return lazy.shout("lazy")
    if name == "util":
        return util.shout("util")
    if name == "data":
        return resources.files("hello").joinpath("greeting.txt").read_text()
    raise KeyError(name)


def reloadable():
    return True
