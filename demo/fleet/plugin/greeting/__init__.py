"""greeting: the plugin every worker of the fleet demo serves; it shows its stamp.

Built with ``-X CompileTimeString=v1`` (``v2``...), so each worker's log and ``hotswap status``
show which release it runs. ``self_test`` runs in every worker before a release goes live:
a build that greets wrongly is refused there, and the old one keeps serving.
"""

CompileTimeString = "dev"


def greet(name: str) -> str:
    return f"hello {name}, from greeting {CompileTimeString}"


def on_load(data):
    pass


def on_init(vault):
    pass


def on_free():
    pass


def export():
    return None


def import_():
    return None


def invoke_func(name, *params):
    if name == "greet":
        return greet(*params)
    raise LookupError(f"greeting has no function {name!r}")


def reloadable():
    return True


def self_test(vault):
    answer = greet("canary")
    if not answer.startswith("hello canary"):
        raise AssertionError(f"greet('canary') gave {answer!r}, not a greeting")
