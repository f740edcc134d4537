import json


def f():
    import beta.api
    from beta import thing
    return thing
