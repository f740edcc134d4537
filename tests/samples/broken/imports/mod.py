sub = __import__("imports.sub", fromlist=["util"])
from .. import elsewhere
if sub:
    def live_check():
        return sub.util.x
