"""gamma, the top of the trine chain: imports beta; the host calls it every heartbeat."""

from demo.trine.shared import BetaApi

CompileTimeString = "v1"


class Deps:
    beta: BetaApi       # set by the runtime to beta's export()


deps = Deps()


def on_load(data):
    print(f"gamma {CompileTimeString}: on_load, wired to {deps.beta.path()}", flush=True)


def on_init(vault):
    pass


def on_free():
    print(f"gamma {CompileTimeString}: on_free", flush=True)


def export():
    return None


def import_():
    return deps


def invoke_func(name, *params):
    if name == "path":
        return f"gamma {CompileTimeString} -> {deps.beta.path()}"
    raise LookupError(f'plugin "gamma": no function {name!r}; try "path"')


def reloadable():
    return True
