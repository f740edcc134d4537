"""The kitchen plugin of the livex demo: takes orders now, cooks them later, in any version.

Each heartbeat, ``invoke_func("take_order", queue, number)`` schedules an order as live data.
The order is cooked a few seconds later by ``live_cook`` and unwrapped into ``Live_Order`` of
whatever version is current *then* (both live, see ``orders.py``): an order taken by version
v1 and cooked after a reload is cooked by v2. Try adding a field with a default to
``Live_Order``, rebuild with ``demo/livex/reload.sh``, and watch pending v1 orders get it.
"""

from hotswap_runtime import live

from demo.livex.shared import JobQueue

CompileTimeString = "v1"

# after CompileTimeString: orders.py reads the stamp from this package
from . import orders  # noqa: E402  # after the stamp, as said above

DISHES = ("soup", "salad", "curry", "pie")


def take_order(queue: JobQueue, number: int) -> int:
    order = orders.Live_Order(number=number, dish=DISHES[number % len(DISHES)],
                              quantity=1 + number % 3)
    return queue.schedule("live_cook", "Live_Order", live.wrap(order),
                          scheduled_by=CompileTimeString)


def on_load(data):
    print(f"kitchen {CompileTimeString}: open", flush=True)


def on_init(vault):
    pass


def on_free():
    print(f"kitchen {CompileTimeString}: on_free", flush=True)


def export():
    return None


def import_():
    return None


def invoke_func(name, *params):
    if name == "take_order":
        return take_order(*params)
    raise LookupError(f'plugin "kitchen": no function {name!r}; try "take_order"')


def reloadable():
    return True
