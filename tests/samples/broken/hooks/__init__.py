from os.path import join as export


def on_load():
    pass


def on_init(vault, extra):
    pass


def invoke_func(name):
    pass


class reloadable:
    pass


async def import_():
    pass
