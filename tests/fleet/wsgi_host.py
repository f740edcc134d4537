"""A WSGI app for gunicorn's sync workers: each worker's swapper follows a release channel,
started by gunicorn's ``post_worker_init`` (``wsgi_conf.py``), the way README "Fleet" shows
for a server without a lifespan.

    HOTSWAP_CHANNEL=... HOTSWAP_CACHE=... gunicorn -w 2 -c wsgi_conf.py wsgi_host:app

``GET /`` answers ``{"pid": ..., "tag": ...}``: the worker and the stamp of its ``alpha``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

from hotswap_runtime import PluginManagerSwapper

# made when a worker loads the app (no --preload: after the fork)
swapper = PluginManagerSwapper(tempfile.mkdtemp(prefix="wsgi-host-"), free_delay=0.2)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    manager = swapper.current()
    plugin = manager.find_plugin("alpha") if manager is not None else None
    body = json.dumps({"pid": os.getpid(),
                       "tag": plugin.invoke_func("tag") if plugin is not None else None}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
