from hello.sub.util import shout


def live_run(text):
    return shout(text)


class Live_Job:
    def __init__(self, text):
        self.text = text
