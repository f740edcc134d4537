"""The french plugin of the hello demo: says hello on every heartbeat of the host.

The seven functions below are the whole plugin contract. ``CompileTimeString`` is stamped by
the build: ``hotswap build demo/hello/plugin/french demo/hello/bin -- -X CompileTimeString=v2``.
"""

from demo.hello.shared import Heartbeat

CompileTimeString = "v1"

GREETING = "Bonjour, le monde !"


def on_load(data):
    print(f"french {CompileTimeString}: on_load({data!r})", flush=True)


def on_init(vault):
    print(f"french {CompileTimeString}: on_init", flush=True)


def on_free():
    print(f"french {CompileTimeString}: on_free", flush=True)


def export():
    return None


def import_():
    return None


def invoke_func(name, *params):
    if name == "heartbeat":
        beat: Heartbeat = params[0]
        beat.say("french", CompileTimeString, GREETING)
        return None
    raise LookupError(f'plugin "french": no function {name!r}; try "heartbeat"')


def reloadable():
    return True
