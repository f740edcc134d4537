"""The flagship demo: a Starlette web app whose routes and websocket dispatch into plugins.

``python -m demo.web.host`` serves it on 127.0.0.1; ``demo/web/run.sh`` builds the plugins and
starts it; ``demo/web/reload.sh`` rebuilds them with a new stamp and reloads them while the
server keeps serving every request and websocket.
"""
