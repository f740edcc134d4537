"""Smoke test: every benchmark script runs in quick mode and reports its figures.

Numbers are never asserted (timing belongs to bench/); this only keeps the scripts from rotting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# figures each of the web part's scripts must report (quick sizes)
EXPECTED = {
    "restart": {"restart_ms", "reload_10_http_ms", "restart_vs_reload_10"},
    "free": {"free_versions_replaced", "free_alive_after_reloads", "free_alive_after_close"},
    "under_load": {"hot_requests", "hot_failed_requests", "hot_dropped_ws", "hot_p99_ratio",
                   "hot_max_ratio", "restart_failed_requests", "restart_dropped_ws"},
    "memory": {"rss_growth_mb_12", "versions_alive_12"},
    "loop_stall": {"areload_stall_ms", "reload_stall_ms"},
    "reader": {"load_mb_per_s", "load_mb_per_s_source", "sign_verify_overhead_ms_1000"},
    "ondisk": {"files_write_ms_per_file", "files_write_ms_per_mb", "files_reuse_10_ms",
               "files_link_10_ms", "reload_files_vs_floor_10", "reload_rebuilt_files_vs_floor_10",
               "reload_cold_files_vs_floor_10"},
    "fleet_local": {"fleet_converge_s", "fleet_failed_requests", "fleet_dropped_ws",
                    "gunicorn_hup_converge_s", "gunicorn_hup_dropped_ws",
                    "uvicorn_hup_converge_s", "uvicorn_hup_dropped_ws"},
    "fleet_nats": {"nats_converge_p50_s", "nats_converge_max_s", "nats_restart_converge_p50_s",
                   "nats_restart_converge_max_s"},
}


def test_every_benchmark_runs_in_quick_mode(tmp_path: Path) -> None:
    """``bench/run.py --quick`` runs every script present; none fails, each reports figures."""
    output = tmp_path / "results.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--quick",
                           "--output", str(output)],
                          capture_output=True, text=True, cwd=REPO, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED" not in done.stdout
    results = json.loads(output.read_text())
    assert all(isinstance(value, (int, float)) for value in results.values())
    for bench, keys in EXPECTED.items():
        assert keys <= results.keys(), f"{bench}: missing {sorted(keys - results.keys())}"
    # the hot swap under (tiny) load kept every request and reloaded with fresh versions
    assert results["hot_reloads"] >= 1
    assert results["hot_reload_errors"] == 0
    for script in ("reload.py", "dispatch.py", "build.py"):
        if not (REPO / "bench" / script).exists():
            assert f"bench/{script} is not on this branch yet" in done.stdout


def test_run_refuses_an_unknown_benchmark() -> None:
    """``--only`` with a name that is no benchmark fails, listing the valid names."""
    done = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--only", "nope"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 2
    assert "unknown benchmark nope; choose from reload, restart, free" in done.stderr
