def on_load(data): pass
def on_init(vault): pass
def on_free(): pass
def export(): pass
def import_(): pass
def reloadable(:
    return True
