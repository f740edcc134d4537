"""The fib plugin of the slink demo: computes a Fibonacci number on every heartbeat.

Linked statically (``hotswap build --staticLinking``), this file is the code that runs: put a
breakpoint on the loop in ``fib`` below (in your IDE, or add a ``breakpoint()`` line)
and the debugger stops here, in the plugin's own file. See demo/slink/README.md.
"""

from demo.slink.shared import Answer

CompileTimeString = "v1"


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def on_load(data):
    # statically linked, this module has its real name; hot-loaded, its version's mount name
    how = ("hot-loaded as " + __name__ if __name__.startswith("_hotswap_")
           else "static linking: running from source")
    print(f"fib {CompileTimeString}: on_load ({how})", flush=True)


def on_init(vault):
    pass


def on_free():
    print(f"fib {CompileTimeString}: on_free", flush=True)


def export():
    return None


def import_():
    return None


def invoke_func(name, *params):
    if name == "fib":
        (n,) = params
        return Answer("fib", CompileTimeString, n, fib(n))
    raise LookupError(f'plugin "fib": no function {name!r}; try "fib"')


def reloadable():
    return True
