"""The pages plugin of the extension demo: fills the host's ``Router`` with two pages.

The host hands every manager a fresh ``Router`` as ``vault.extension``; ``on_init`` fills it,
so after a reload the new router serves the new version's pages.
"""

import datetime

from demo.extension.shared import Router

CompileTimeString = "v1"


def hello_page():
    return f"Hello from pages {CompileTimeString}"


def time_page():
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%H:%M:%S} UTC, served by pages {CompileTimeString}"


def on_load(data):
    pass


def on_init(vault):
    router: Router = vault.extension
    router.add("/hello", hello_page, plugin="pages")
    router.add("/time", time_page, plugin="pages")
    print(f"pages {CompileTimeString}: registered /hello and /time", flush=True)


def on_free():
    print(f"pages {CompileTimeString}: on_free", flush=True)


def export():
    return None


def import_():
    return None


def invoke_func(name, *params):
    raise LookupError(f'plugin "pages": no function {name!r}; it serves through the router')


def reloadable():
    return True
