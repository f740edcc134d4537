"""gunicorn's sync workers (WSGI, no lifespan) follow a channel from post_worker_init."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from fleet_support import wait_until

from hotswap_runtime.fleet import ops
from hotswap_runtime.fleet.nats_server import free_port

HERE = Path(__file__).parent


@pytest.mark.timeout(120)
def test_gunicorn_sync_workers_follow_from_post_worker_init(channel_url: str, releases,
                                                            tmp_path: Path) -> None:
    """Two sync workers, each an instance of its own: both report, both take a new release,
    and each answers with it; the master follows nothing."""
    ops.publish(channel_url, releases("v1"))
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("gunicorn")), "-c", str(HERE / "wsgi_conf.py"),
             "--chdir", str(HERE), "-b", f"127.0.0.1:{port}", "wsgi_host:app"],
            env={**os.environ, "HOTSWAP_CHANNEL": channel_url, "HOTSWAP_CACHE": str(tmp_path / "cache")},
            stdout=subprocess.DEVNULL, stderr=err)
    try:
        def both_on(revision: int) -> ops.Gate | None:
            result = ops.gate(channel_url, revision)
            return result if result.ok and len(result.live) == 2 else None

        gate = wait_until(lambda: both_on(1), timeout=30, what=f"two workers on 1:\n{log.read_text()}")
        pids = {row.status.pid for row in gate.live}
        assert proc.pid not in pids
        ops.publish(channel_url, releases("v2"))
        wait_until(lambda: both_on(2), timeout=30, what=f"two workers on 2:\n{log.read_text()}")
        answers: set[tuple[int, str]] = set()

        def every_worker_answered() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as reply:
                body = json.loads(reply.read())
            answers.add((body["pid"], body["tag"]))
            return {pid for pid, _ in answers} == pids

        wait_until(every_worker_answered, timeout=30, what="an answer from each worker")
        assert answers == {(pid, "v2") for pid in pids}
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, log.read_text()
