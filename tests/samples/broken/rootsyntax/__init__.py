def on_load(data):
    pass

def on_init(vault)
    pass
