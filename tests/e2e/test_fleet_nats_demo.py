"""make demo-fleet-nats end to end: two machines (three workers) follow a real NATS server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_nats_fleet_walkthrough(tmp_path: Path) -> None:
    """The tour exits 0: v1 then v2 reach the three workers of both machines, the broken
    build's canary refuses it and the rollout rolls back naming it, nobody served it."""
    done = subprocess.run([sys.executable, "-m", "demo.fleet.walkthrough", "--keep", str(tmp_path / "work")],
                          cwd=ROOT, capture_output=True, text=True, timeout=220)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "    3/3 on 1, ok" in out and "    3/3 on 2, ok" in out and "    3/3 on 4, ok" in out
    assert "    rolled back: revision 4 has the artifacts of 2" in out
    assert "self_test failed: AssertionError: greet('canary') gave 'helo canary, from greeting v3'" in out
    served = [line for line in out.splitlines() if " serving: " in line and "keeps serving" not in line]
    assert len([line for line in served if line.endswith("from greeting v2")]) == 3
    assert not [line for line in served if "v3" in line]
