"""The live things of the kitchen plugin: found by their ``live_`` prefix, kept in the vault.

The host looks them up by name in the current manager's vault (``vault.live_types["Live_Order"]``,
``vault.live_funcs["live_cook"]``), so the newest version handles every job, whichever
version scheduled it.
"""

from dataclasses import dataclass, field

from demo.livex.shared import Receipt

from . import CompileTimeString


@dataclass
class Live_Order:
    number: int
    dish: str
    quantity: int = 1
    notes: list[str] = field(default_factory=list)


def live_cook(order: Live_Order) -> Receipt:
    return Receipt(handled_by=CompileTimeString,
                   text=f"order {order.number}: {order.quantity} x {order.dish}")
