"""greeter: answers ``/p/greeter/hello?name=…`` and echoes websocket messages, showing its stamp.

Rebuild it with ``-X CompileTimeString=…`` (``demo/web/reload.sh`` does) and every response,
the open websockets' included, shows the new stamp after the reload.
"""

from __future__ import annotations

import logging
from typing import Any

from demo.web.shared import Call

from .phrases import greeting

CompileTimeString = "dev"

log = logging.getLogger(__name__)


def on_load(data: Any) -> None:
    log.info("greeter %s loaded", CompileTimeString)


def on_init(vault: Any) -> None:
    pass


def on_free() -> None:
    log.info("greeter %s freed", CompileTimeString)


def export() -> None:
    return None


def import_() -> None:
    return None


def reloadable() -> bool:
    return True


def _hello(call: Call) -> dict[str, Any]:
    name = call.params.get("name", "world")
    return {"message": greeting(name), "version": CompileTimeString,
            "greetings": call.state.count("greetings")}


def _ws(call: Call, text: str) -> dict[str, Any]:
    call.session.data["messages"] = call.session.data.get("messages", 0) + 1
    return {"echo": text, "version": CompileTimeString,
            "messages": call.session.data["messages"]}


def invoke_func(name: str, *params: Any) -> Any:
    if name == "hello":
        return _hello(*params)
    if name == "ws":
        return _ws(*params)
    if name == "version":
        return CompileTimeString
    raise LookupError(f'plugin "greeter" has no action "{name}"; try hello')
