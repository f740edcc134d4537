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


def reloadable():
    return True
