def live_fine():
    pass
