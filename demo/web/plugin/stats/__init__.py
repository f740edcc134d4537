"""stats: reports the host's counters and sessions, which live in the host and survive reloads.

``/p/stats/summary`` returns them; a websocket on ``/ws/stats`` answers each message with them.
"""

from __future__ import annotations

from typing import Any

from demo.web.shared import Call

CompileTimeString = "dev"


def on_load(data: Any) -> None:
    pass


def on_init(vault: Any) -> None:
    pass


def on_free() -> None:
    pass


def export() -> None:
    return None


def import_() -> None:
    return None


def reloadable() -> bool:
    return True


async def _summary(call: Call) -> dict[str, Any]:
    # an async action: the host awaits whatever invoke_func returns
    return {**call.state.snapshot(), "reloads": call.reloads, "version": CompileTimeString}


def invoke_func(name: str, *params: Any) -> Any:
    if name in ("summary", "ws"):
        return _summary(params[0])
    if name == "version":
        return CompileTimeString
    raise LookupError(f'plugin "stats" has no action "{name}"; try summary')
