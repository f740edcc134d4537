"""The hotswap demos: one folder per demo, each a host, a shared module, plugins and scripts.

Run them from the repository root (``demo/hello/run.sh``, then ``demo/hello/reload.sh`` in a
second terminal); ``make demo`` walks through ``hello`` unattended. ``demo.common`` holds the
few lines every host needs (logging, the heartbeat interval, a pid file, clean shutdown).
"""
