"""make demo-fleet end to end: four web demo workers (gunicorn, uvicorn --workers) follow a channel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
def test_fleet_walkthrough_with_four_workers(server: str, tmp_path: Path) -> None:
    """The tour exits 0: v2 reaches all four workers under load, the failing canary is rolled
    back naming it, a manual rollback returns to v1, and the load saw nothing fail."""
    done = subprocess.run([sys.executable, "-m", "demo.web.fleet", "--server", server,
                           "--keep", str(tmp_path / "work")],
                          cwd=ROOT, capture_output=True, text=True, timeout=220)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "    4/4 on 1, ok" in out and "    4/4 on 2, ok" in out and "    4/4 on 5, ok" in out
    assert "    rolled back: revision 4 has the artifacts of 2" in out
    assert 'on_load failed: RuntimeError: greeter v3 cannot reach its database' in out
    assert ", 0 failed; " in out and ", 0 dropped; the websocket was answered by v1 -> v2 -> v1" in out
