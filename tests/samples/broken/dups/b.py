import os


class live_thing:
    pass
