def live_thing():
    pass


class Live_Other:
    pass
