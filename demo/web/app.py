"""The web demo's ASGI application: Starlette routes that dispatch into hot-swappable plugins.

Routes:

- ``GET /``: the loaded plugins (name, stamp, build id), the reload counter and the host state;
- ``GET /p/<plugin>/<action>``: ``plugin.invoke_func(action, Call)``, its result as JSON;
- ``WS /ws/<plugin>``: each text message ``m`` is answered with
  ``plugin.invoke_func("ws", Call, m)`` as JSON. Each connection leases the manager that was
  current when it opened (``swapper.lease``), so a conversation keeps talking to the version
  it started on across reloads while new connections get the new one; its version is freed
  once its last connection closes. ``/ws/<plugin>?follow=1`` follows the newest version
  instead (the plugin is looked up again for every message);
- ``GET /chat``: a page for a browser tab that talks to ``/ws/greeter`` and shows which
  version answers (open two tabs, reload between them: each keeps its own version);
- ``POST /admin/reload``: reloads the plugins (``swapper.areload``: the loop keeps serving)
  and returns the Details; refused (403) unless the client is on a loopback address.
- ``GET /admin/plan``: the dry run (``swapper.plan()``: nothing imported, no hook run), and
  ``POST /admin/rollback``: back to the plugins the last reload replaced (``swapper.rollback()``,
  409 when there is nothing to roll back to); both loopback-only like the reload route.

Design: the host owns everything that must outlive a reload — the ``HostState`` (counters,
sessions), the swapper, the open connections — and plugins only ever receive it as an argument.
Each request reads ``swapper.current()`` once, so it runs entirely on one version even when a
reload swaps the manager meanwhile. ``SIGUSR1`` reloads too (``areload_on_signal``). Every
``$HOTSWAP_DEMO_INTERVAL`` seconds (default 2) a heartbeat logs each plugin's stamp, so a
reload shows in the log as in the other demos.

``create_app_from_env`` is the factory for ``uvicorn --factory`` (used by the benchmark to
compare a hot swap with ``uvicorn --reload``); ``python -m demo.web.host`` is the usual way in.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ipaddress
import logging
import os
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from hotswap_runtime import HotswapError, Plugin, PluginManagerSwapper
from hotswap_runtime.fleet import Follower
from hotswap_runtime.triggers import areload_on_signal

from .shared import Call, HostState

__all__ = ["CACHE_ENV", "CHANNEL_ENV", "FLEET_HEARTBEAT_ENV", "INTERVAL_ENV", "PLUGIN_DIR_ENV",
           "create_app", "create_app_from_env", "heartbeat_interval"]

#: the plugin folder ``create_app_from_env`` serves
PLUGIN_DIR_ENV = "HOTSWAP_WEB_PLUGIN_DIR"
#: seconds between heartbeats (the same variable as the other demos)
INTERVAL_ENV = "HOTSWAP_DEMO_INTERVAL"
#: the fleet channel each worker of ``create_app_from_env`` follows (a folder or nats:// URL)
CHANNEL_ENV = "HOTSWAP_WEB_CHANNEL"
#: the followers' artifact cache (one per host: the workers share it)
CACHE_ENV = "HOTSWAP_WEB_CACHE"
#: seconds between two status reports of each worker
FLEET_HEARTBEAT_ENV = "HOTSWAP_WEB_FLEET_HEARTBEAT"
#: longest a worker's start-up waits for its first release before serving without plugins
FIRST_RELEASE_WAIT = 10.0

logger = logging.getLogger("demo.web")


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:   # not an address (a unix socket path, a test client's name)
        return False


def heartbeat_interval() -> float:
    """Seconds between heartbeats: ``$HOTSWAP_DEMO_INTERVAL`` or 2.

    Raises:
        SystemExit: the variable is set to something other than a positive number.
    """
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    try:
        value = float(raw) if raw else 2.0
    except ValueError:
        value = -1.0
    if not value > 0:
        raise SystemExit(f"error: {INTERVAL_ENV}={raw!r} is not a positive number of seconds; "
                         f"unset it or give e.g. {INTERVAL_ENV}=0.5")
    return value


CHAT_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>hotswap chat</title></head>
<body style="font-family: sans-serif">
<h1>greeter over a websocket</h1>
<p>This tab's websocket leases the version it connected on: after a reload it still talks to
it, while a tab opened later talks to the new one.</p>
<form id="form"><input id="text" value="hi" autofocus> <button>send</button></form>
<pre id="log"></pre>
<script>
const log = document.getElementById("log");
const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws/greeter");
ws.onopen = () => { log.textContent += "connected\n"; };
ws.onmessage = (event) => {
  const reply = JSON.parse(event.data);
  log.textContent += `version ${reply.version}: ${reply.echo} (message ${reply.messages})\n`;
};
ws.onclose = () => { log.textContent += "closed\n"; };
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  ws.send(document.getElementById("text").value);
};
</script>
</body></html>
"""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(plugin_dir: str | os.PathLike[str] | None, *, state: HostState | None = None,
               free_delay: float = 5.0, reload_signal: bool = True,
               on_ready: Callable[[], None] | None = None, channel: str | None = None,
               cache_dir: str | os.PathLike[str] | None = None,
               fleet_heartbeat: float = 2.0) -> Starlette:
    """Make the ASGI app serving the plugins built into ``plugin_dir``, or the releases of
    ``channel``.

    The plugins are loaded at start-up (the lifespan's start), with the host state as the
    ``data`` of every ``on_load``; the swapper is closed (every ``on_free`` runs) at shutdown.
    With ``channel``, the lifespan starts a ``Follower`` instead (in each worker process, after
    the fork): the worker loads the channel's release, reports to it, and takes every new
    release through ``areload``.

    Args:
        plugin_dir: the folder of ``*.hsp`` artifacts (None with ``channel``).
        state: the host state to serve; a fresh ``HostState`` by default.
        free_delay: seconds before a replaced version is freed.
        reload_signal: reload on ``SIGUSR1`` too (not with ``channel``: the follower reloads).
        on_ready: called once the plugins are loaded and the reload trigger installed.
        channel: a fleet channel (a folder or a ``nats://`` URL) to follow.
        cache_dir: the follower's artifact cache (shared by the workers of this host).
        fleet_heartbeat: seconds between two status reports of the follower.
    """
    if plugin_dir is None and channel is None:
        raise ValueError("create_app needs a plugin_dir or a channel")
    host_state = state if state is not None else HostState()
    interval = heartbeat_interval()
    if plugin_dir is None:   # the follower points the swapper at each release's folder
        plugin_dir = Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir())
    swapper = PluginManagerSwapper(plugin_dir, logger=logging.getLogger("hotswap"),
                                   free_delay=free_delay)
    follower: Follower | None = None

    def find(name: str) -> tuple[Plugin | None, str]:
        manager = swapper.current()
        if manager is None:
            return None, "no plugins are loaded"
        plugin = manager.find_plugin(name)
        if plugin is None:
            loaded = ", ".join(p.name for p in manager.plugins()) or "none"
            return None, f'no plugin "{name}"; loaded: {loaded}'
        return plugin, ""

    async def invoke(plugin: Plugin, action: str, call: Call, *extra: Any) -> Any:
        result = plugin.invoke_func(action, call, *extra)
        if inspect.isawaitable(result):
            result = await result
        return result

    def describe(manager: Any) -> list[dict[str, Any]]:
        plugins = []
        for plugin in manager.plugins() if manager is not None else []:
            try:
                stamp = plugin.lookup("CompileTimeString")
            except LookupError:
                stamp = None
            plugins.append({"name": plugin.name, "version": stamp, "build_id": plugin.build_id})
        return plugins

    async def index(request: Request) -> Response:
        # the sessions still pinned to an older version show here with their plugins
        leases = [{"name": lease.name, "plugins": describe(lease.manager)}
                  for lease in swapper.leases()]
        return JSONResponse({"plugins": describe(swapper.current()), "leases": leases,
                             "reloads": swapper.reload_counter,
                             "pid": os.getpid(),
                             "revision": follower.status().revision if follower else None,
                             **host_state.snapshot()})

    async def call_plugin(request: Request) -> Response:
        name, action = request.path_params["plugin"], request.path_params["action"]
        host_state.count("requests")
        plugin, why = find(name)
        if plugin is None:
            return _error(404, why)
        session = host_state.session(request.cookies.get("sid"))
        call = Call(action, dict(request.query_params), session, host_state,
                    swapper.reload_counter)
        try:
            result = await invoke(plugin, action, call)
        except LookupError as exc:
            return _error(404, str(exc))
        except Exception as exc:
            logger.exception("plugin %s failed on action %s", plugin.name, action)
            return _error(500, f'plugin "{plugin.name}" failed on "{action}": '
                               f"{type(exc).__name__}: {exc}")
        response = JSONResponse(result)
        response.set_cookie("sid", session.id, httponly=True, samesite="strict")
        response.headers["x-hotswap-worker"] = str(os.getpid())  # which worker answered
        return response

    async def websocket(ws: WebSocket) -> None:
        name = ws.path_params["plugin"]
        follow = ws.query_params.get("follow") == "1"
        await ws.accept()
        session = host_state.session(None, kind="ws")
        host_state.count("websockets")
        lease = None
        if not follow:  # the conversation stays on the version it connected on
            client = f"{ws.client.host}:{ws.client.port}" if ws.client is not None else session.id
            try:
                lease = swapper.lease(f"ws {client} /ws/{name}")
            except HotswapError as exc:
                await ws.send_json({"error": f"no plugins to talk to: {exc}"})
                await ws.close()
                host_state.end_session(session.id)
                return
        try:
            while True:
                text = await ws.receive_text()
                host_state.count("ws_messages")
                if lease is not None:
                    plugin = lease.manager.find_plugin(name)
                    why = f'no plugin "{name}" in the version this websocket connected on'
                else:
                    plugin, why = find(name)   # again for every message: the newest answers
                if plugin is None:
                    await ws.send_json({"error": why})
                    continue
                call = Call("ws", {}, session, host_state, swapper.reload_counter)
                try:
                    reply = await invoke(plugin, "ws", call, text)
                except Exception as exc:
                    logger.exception("plugin %s failed on a websocket message", plugin.name)
                    reply = {"error": f'plugin "{plugin.name}" failed: {type(exc).__name__}: {exc}'}
                await ws.send_json(reply)
        except WebSocketDisconnect:
            pass
        finally:
            if lease is not None:
                lease.release()  # its version may go now, once no other session holds it
            host_state.end_session(session.id)

    async def chat(request: Request) -> Response:
        return HTMLResponse(CHAT_PAGE)

    async def admin_reload(request: Request) -> Response:
        client = request.client.host if request.client is not None else None
        if not _is_loopback(client):
            logger.warning("refused POST /admin/reload from %s: not a loopback address", client)
            return _error(403, f"reload refused for client {client}: /admin/reload only accepts "
                               "loopback clients; call it from the host itself "
                               "(curl -X POST http://127.0.0.1:<port>/admin/reload)")
        started = time.perf_counter()
        try:
            details = await swapper.areload(host_state)
        except HotswapError as exc:
            logger.error("reload on POST /admin/reload failed; the previous plugins keep "
                         "serving: %s", exc)
            return _error(500, f"reload failed, the previous plugins keep serving: {exc}")
        elapsed = time.perf_counter() - started
        logger.info("reload on POST /admin/reload: %s", str(details) or "no plugins found")
        host_state.count("reloads")
        return JSONResponse({"details": {Path(k).name: v for k, v in details.items()},
                             "reloads": swapper.reload_counter,
                             "reload_ms": round(elapsed * 1000, 3)})

    def refuse(request: Request, route: str) -> Response | None:
        """403 unless the client is on a loopback address (every /admin route)."""
        client = request.client.host if request.client is not None else None
        if _is_loopback(client):
            return None
        logger.warning("refused %s %s from %s: not a loopback address", request.method, route,
                       client)
        return _error(403, f"{route} refused for client {client}: it only accepts loopback "
                           f"clients; call it from the host itself (http://127.0.0.1:<port>{route})")

    async def admin_plan(request: Request) -> Response:
        refused = refuse(request, "/admin/plan")
        if refused is not None:
            return refused
        try:  # reads and verifies every artifact: off the loop
            plan = await asyncio.to_thread(swapper.plan)
        except HotswapError as exc:
            return _error(500, f"plan failed: {exc}")
        return JSONResponse({"plan": {Path(k).name if k.endswith(".hsp") else k: v
                                      for k, v in plan.items()}})

    async def admin_rollback(request: Request) -> Response:
        refused = refuse(request, "/admin/rollback")
        if refused is not None:
            return refused
        try:  # waits for a reload in progress, if any: off the loop
            details = await asyncio.to_thread(swapper.rollback)
        except HotswapError as exc:
            logger.error("rollback on POST /admin/rollback refused: %s", exc)
            return _error(409, f"rollback refused, the current plugins keep serving: {exc}")
        host_state.count("reloads")
        return JSONResponse({"details": {Path(k).name: v for k, v in details.items()},
                             "reloads": swapper.reload_counter})

    async def heartbeat(interval: float) -> None:
        # every few seconds, each plugin's stamp as its current version reports it
        while True:
            await asyncio.sleep(interval)
            manager = swapper.current()
            stamps = []
            for plugin in manager.plugins() if manager is not None else []:
                try:
                    stamps.append(f"{plugin.name} {plugin.invoke_func('version')}")
                except Exception as exc:
                    stamps.append(f"{plugin.name} ({type(exc).__name__}: {exc})")
            counters = host_state.snapshot()["counters"]
            logger.info("heartbeat: %s; %d requests, %d websocket messages, %d reloads",
                        ", ".join(stamps) or "no plugins", counters.get("requests", 0),
                        counters.get("ws_messages", 0), swapper.reload_counter)

    async def fleet_status(request: Request) -> Response:
        if follower is None:
            return _error(404, "this host follows no channel; start it with --channel")
        return JSONResponse(follower.status().to_json())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal follower
        stop_signal = None
        if channel is not None:
            follower = Follower(swapper, channel, data=host_state, cache_dir=cache_dir,
                                heartbeat=fleet_heartbeat)
            if await follower.astart(timeout=FIRST_RELEASE_WAIT):
                logger.info("following %s as %s: revision %s is live", channel,
                            follower.instance, follower.status().revision)
            else:
                logger.warning("following %s as %s: no release is live yet; serving without "
                               "plugins until one is published", channel, follower.instance)
        else:
            details = swapper.load_plugins(host_state)
            logger.info("loaded plugins from %s: %s", plugin_dir, str(details) or "none found")
            if reload_signal and hasattr(signal, "SIGUSR1"):
                stop_signal = areload_on_signal(swapper, host_state)
        beat = asyncio.create_task(heartbeat(interval), name="demo-web-heartbeat")
        try:
            if on_ready is not None:
                on_ready()
            yield
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            if stop_signal is not None:
                await stop_signal()
            swapper.close()   # stops the follower first

    app = Starlette(routes=[
        Route("/", index),
        Route("/chat", chat),
        Route("/p/{plugin}/{action}", call_plugin),
        WebSocketRoute("/ws/{plugin}", websocket),
        Route("/admin/reload", admin_reload, methods=["POST"]),
        Route("/admin/plan", admin_plan),
        Route("/admin/rollback", admin_rollback, methods=["POST"]),
        Route("/fleet", fleet_status),
    ], lifespan=lifespan)
    app.state.swapper = swapper
    app.state.host_state = host_state
    return app


def create_app_from_env() -> Starlette:
    """The app for ``uvicorn --factory demo.web.app:create_app_from_env`` (and for gunicorn:
    ``gunicorn -k uvicorn_worker.UvicornWorker 'demo.web.app:create_app_from_env()'``).

    With ``$HOTSWAP_WEB_CHANNEL`` set, each worker follows that channel (artifact cache
    ``$HOTSWAP_WEB_CACHE``, reports every ``$HOTSWAP_WEB_FLEET_HEARTBEAT`` seconds, default 2);
    otherwise it serves the plugin folder named by ``$HOTSWAP_WEB_PLUGIN_DIR`` (default
    ``demo/web/bin``).

    Raises:
        SystemExit: that folder does not exist, or the heartbeat is not a positive number.
    """
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s [{os.getpid()}] %(levelname)s %(name)s: %(message)s")
    channel = os.environ.get(CHANNEL_ENV)
    if channel:
        raw = os.environ.get(FLEET_HEARTBEAT_ENV) or "2"
        try:
            beat = float(raw)
        except ValueError:
            beat = -1.0
        if not beat > 0:
            raise SystemExit(f"error: {FLEET_HEARTBEAT_ENV}={raw!r} is not a positive number of "
                             f"seconds; unset it or give e.g. {FLEET_HEARTBEAT_ENV}=1")
        return create_app(None, channel=channel, cache_dir=os.environ.get(CACHE_ENV) or None,
                          fleet_heartbeat=beat)
    folder = Path(os.environ.get(PLUGIN_DIR_ENV) or Path(__file__).parent / "bin")
    if not folder.is_dir():
        raise SystemExit(f"error: plugin folder {folder} does not exist; build the plugins "
                         f"first (demo/web/run.sh does) or set {PLUGIN_DIR_ENV}")
    return create_app(folder)
