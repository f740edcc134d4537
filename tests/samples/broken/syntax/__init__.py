from .hooks import on_load, on_init, on_free, export, import_, reloadable


def invoke_func(name, *params):
    pass
