"""alpha, the bottom of the trine chain: beta imports it.

``demo/trine/reload.sh`` rebuilds alpha alone; the runtime then gives beta and gamma, which
depend on it, fresh versions wired to the new alpha. Nothing else is rebuilt.
"""

CompileTimeString = "v1"


class Alpha:
    def path(self):
        return f"alpha {CompileTimeString}"


def on_load(data):
    print(f"alpha {CompileTimeString}: on_load", flush=True)


def on_init(vault):
    pass


def on_free():
    print(f"alpha {CompileTimeString}: on_free", flush=True)


def export():
    return Alpha()


def import_():
    return None


def invoke_func(name, *params):
    raise LookupError(f'plugin "alpha": no function {name!r}')


def reloadable():
    return True
