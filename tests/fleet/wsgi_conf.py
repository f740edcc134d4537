"""gunicorn configuration of ``wsgi_host``: each worker follows the channel once it is ready."""

from __future__ import annotations

import os
from typing import Any

workers = 2


def post_worker_init(worker: Any) -> None:
    """In the worker, after its fork and after it loaded the app: start its follower."""
    from wsgi_host import swapper

    from hotswap_runtime.fleet import Follower

    Follower(swapper, os.environ["HOTSWAP_CHANNEL"], cache_dir=os.environ["HOTSWAP_CACHE"],
             heartbeat=0.3).start(timeout=10)


def worker_exit(server: Any, worker: Any) -> None:
    """Stop following and free the plugins on the way out (swapper.close stops the follower)."""
    from wsgi_host import swapper

    swapper.close()
