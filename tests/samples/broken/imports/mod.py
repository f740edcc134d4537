import imports.sub.util
import imports as me
from .. import elsewhere


def f():
    return imports.sub.util.x
