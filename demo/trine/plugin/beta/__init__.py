"""beta, the middle of the trine chain: imports alpha, exported to gamma."""

from demo.trine.shared import AlphaApi

CompileTimeString = "v1"


class Deps:
    alpha: AlphaApi     # set by the runtime to alpha's export()


deps = Deps()


class Beta:
    def path(self):
        return f"beta {CompileTimeString} -> {deps.alpha.path()}"


def on_load(data):
    print(f"beta {CompileTimeString}: on_load, wired to {deps.alpha.path()}", flush=True)


def on_init(vault):
    pass


def on_free():
    print(f"beta {CompileTimeString}: on_free", flush=True)


def export():
    return Beta()


def import_():
    return deps


def invoke_func(name, *params):
    raise LookupError(f'plugin "beta": no function {name!r}')


def reloadable():
    return True
