"""Source text shared by tests that write plugin folders of their own."""

#: the seven hooks of SPEC section 2, each doing nothing: a plugin that builds and loads
NOOP_HOOKS = """\
def on_load(data): pass
def on_init(vault): pass
def on_free(): pass
def export(): pass
def import_(): pass
def invoke_func(name, *params): pass
def reloadable(): return True
"""
