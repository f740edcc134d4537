"""Run every benchmark, print one table, write the figures to ``bench/results.json``.

    .venv/bin/python bench/run.py [--quick] [--only reload,under_load] [--output PATH]

``make bench`` runs it. Each benchmark runs in its own subprocess, so one that is missing or
fails cannot take the others down: it shows as a ``missing`` or ``failed`` row and gives no
figure (nothing is ever made up). A script that accepts ``--json`` prints one JSON object of
flat ``key -> number``; for the others the runner reads their table. ``--quick`` runs every
script with tiny sizes (the smoke test does; its numbers mean nothing) and writes nothing unless
``--output`` is given. The results file holds numbers only: flat keys, comparable across commits.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def parse_build(text: str) -> dict[str, float]:
    """``bench/build.py``'s table: modules, compileall, cold, one-file, cold/ca, one/ca."""
    out: dict[str, float] = {}
    row = re.compile(rf"^\s*(\d+)\s+({NUMBER})s\s+({NUMBER})s\s+({NUMBER})s\s+({NUMBER})x\s+"
                     rf"({NUMBER})x\s*$")
    for line in text.splitlines():
        match = row.match(line)
        if match:
            n = match.group(1)
            out[f"build_compileall_{n}_s"] = float(match.group(2))
            out[f"build_cold_{n}_s"] = float(match.group(3))
            out[f"rebuild_one_file_{n}_s"] = float(match.group(4))
            out[f"build_vs_compileall_{n}"] = float(match.group(5))
            out[f"rebuild_vs_compileall_{n}"] = float(match.group(6))
    return out


def parse_reload(text: str) -> dict[str, float]:
    """``bench/reload.py``'s table: modules, reload ms, floor ms, ratio."""
    out: dict[str, float] = {}
    row = re.compile(rf"^\s*(\d+)\s+({NUMBER})\s+({NUMBER})\s+({NUMBER})x\s*$")
    for line in text.splitlines():
        match = row.match(line)
        if match:
            n = match.group(1)
            out[f"reload_{n}_ms"] = float(match.group(2))
            out[f"floor_{n}_ms"] = float(match.group(3))
            out[f"reload_vs_floor_{n}"] = float(match.group(4))
    return out


def parse_dispatch(text: str) -> dict[str, float]:
    """``bench/dispatch.py``'s lines: ``<statement>  <ns> ns  <ratio>x``, direct call first."""
    out: dict[str, float] = {}
    for match in re.finditer(rf"^(.*?)\s+({NUMBER}) ns\s+({NUMBER})x\s*$", text, re.MULTILINE):
        label, ns, ratio = match.group(1), float(match.group(2)), float(match.group(3))
        if label.startswith("direct"):
            out["dispatch_direct_ns"] = ns
        elif "live_funcs" in label:
            out["dispatch_live_ns"] = ns
            out["dispatch_live_ratio"] = ratio
        elif "invoke_func" in label:
            out["dispatch_invoke_ns"] = ns
            out["dispatch_invoke_ratio"] = ratio
    return out


def parse_live(text: str) -> dict[str, float]:
    """``bench/live.py``'s lines: ``<name>  <value> µs (median)``."""
    out: dict[str, float] = {}
    for match in re.finditer(rf"^(\S+)\s+({NUMBER}) µs", text, re.MULTILINE):
        key = re.sub(r"\W+", "_", match.group(1)).strip("_").lower()
        out[f"live_{key}_us"] = float(match.group(2))
    return out


def parse_pairs(text: str) -> dict[str, float]:
    """Generic: every ``snake_case_key <sep> number`` pair, where sep is spaces, ``:`` or ``=``."""
    pairs = re.finditer(rf"\b([a-z][a-z0-9]*_[a-z0-9_]+)\b\s*[:=]?\s+({NUMBER})", text)
    return {m.group(1): float(m.group(2)) for m in pairs}


@dataclass(frozen=True)
class Bench:
    """One benchmark script and how to run and read it."""

    name: str
    script: str
    owner: str
    full: tuple[str, ...] = ()    # arguments of a full run
    quick: tuple[str, ...] = ()   # arguments of a quick run, for a script without --quick
    parse: Callable[[str], dict[str, float]] = parse_pairs
    timeout: float = 1800.0


BENCHES = [
    Bench("reload", "reload.py", "runtime", parse=parse_reload),
    Bench("restart", "restart.py", "web"),
    Bench("free", "free.py", "web"),
    Bench("dispatch", "dispatch.py", "runtime", parse=parse_dispatch),
    Bench("under_load", "under_load.py", "web"),
    Bench("memory", "memory.py", "web"),
    Bench("loop_stall", "loop_stall.py", "web"),
    Bench("build", "build.py", "build", full=("--runs", "3"),
          quick=("--runs", "1", "--sizes", "10"), parse=parse_build),
    Bench("live", "live.py", "live", parse=parse_live),
    Bench("staged", "staged.py", "staged"),
    Bench("doctor", "doctor.py", "leakproof"),
    Bench("contended", "contended.py", "runtime"),
    Bench("rss_version", "rss_version.py", "runtime"),
    Bench("one_of_n", "one_of_n.py", "runtime"),
    Bench("ondisk", "ondisk.py", "runtime"),
    Bench("reader", "reader.py", "trust", quick=("--quick",)),
    Bench("fleet_local", "fleet_local.py", "fleet"),
    Bench("fleet_nats", "fleet_nats.py", "fleet"),
]

# the goals of issue 6: key -> (comparison, bound)
GOALS: dict[str, tuple[str, float]] = {
    "hot_failed_requests": ("==", 0),
    "hot_dropped_ws": ("==", 0),
    "hot_p99_ratio": ("<=", 1.5),
    "hot_max_ratio": ("<=", 5.0),
    "restart_vs_reload_10": (">=", 50.0),
    "rss_growth_mb_1000": ("<", 2.0),
    "versions_alive_1000": ("<=", 2),
    "areload_stall_ms": ("<", 10.0),
    "free_alive_after_close": ("==", 0),
    # issue 7
    "inflight_check_ms": ("<", 20.0),
    # issue 14: in flight on every loop, leases
    "dispatch_invoke_ratio": ("<=", 7.0),
    "lease_ns": ("<=", 1000.0),
    "rollback_us": ("<", 1000.0),
    # issue 8: the leak doctor
    "doctor_stats_pending_ms": ("<", 1.0),
    "doctor_stats_freed_ms": ("<", 1.0),
    "doctor_explain_1_freed_ms": ("<", 1000.0),
    # issue 12: the floor holds with each version's folder written
    "reload_vs_floor_100": ("<=", 1.15),
    "reload_files_vs_floor_100": ("<=", 1.15),
    # issue 13: a reload costs what changed
    "reload_one_of_1_ratio": ("<=", 1.3),
    "reload_one_of_10_ratio": ("<=", 1.3),
    "reload_one_of_100_ratio": ("<=", 1.3),
    "reload_one_of_300_ratio": ("<=", 1.3),
    "reload_contended_ratio": ("<=", 12.0),
    "rss_per_version_ratio": ("<=", 1.1),
    "rebuild_one_file_1000_s": ("<=", 0.3),
    "load_mb_per_s": (">=", 800.0),
    # issue 15: signing costs one check, and the hardened reader keeps reloads at the floor
    "sign_verify_overhead_ms_1000": ("<", 2.0),
    # issue 16: four workers take a release together, losing nothing
    "fleet_converge_s": ("<", 1.0),
    "fleet_failed_requests": ("==", 0),
    "fleet_dropped_ws": ("==", 0),
    # issue 17: 50 followers on one NATS server take a release
    "nats_converge_max_s": ("<", 2.0),
    "nats_restart_converge_max_s": ("<", 2.0),   # the same after a SIGKILL and restart
}


@dataclass
class Outcome:
    """What running one benchmark gave."""

    bench: Bench
    status: str                       # ok, missing, failed
    figures: dict[str, float] = field(default_factory=dict)
    note: str = ""
    seconds: float = 0.0


def _accepts(bench: Bench, path: Path, option: str) -> bool:
    """Whether the script takes ``option``: ours all do, and so do the scripts built on
    ``_util.parser``; the others' source is read, not run with ``--help`` (a script without
    argparse would run its whole benchmark)."""
    if bench.owner == "web":
        return True
    text = path.read_text(encoding="utf-8")
    if option in ("--quick", "--json") and "_util.parser(" in text:
        return True  # the shared parser takes both
    pattern = rf"""add_argument\(\s*['"]{re.escape(option)}['"]"""
    return re.search(pattern, text) is not None


def run_bench(bench: Bench, quick: bool) -> Outcome:
    """Run one benchmark script in a subprocess and collect its figures."""
    path = BENCH / bench.script
    if not path.exists():
        return Outcome(bench, "missing", note=f"bench/{bench.script} is not on this branch yet "
                                               f"(the {bench.owner} part)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    argv = [sys.executable, str(path)]
    if quick:
        argv += ["--quick"] if _accepts(bench, path, "--quick") else list(bench.quick)
    else:
        argv += list(bench.full)
    as_json = _accepts(bench, path, "--json")
    if as_json:
        argv.append("--json")
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env,
                              timeout=120 if quick else bench.timeout)
    except subprocess.TimeoutExpired:
        return Outcome(bench, "failed", note=f"timed out: {' '.join(argv[1:])}",
                       seconds=time.perf_counter() - started)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return Outcome(bench, "failed", note=f"exit {done.returncode}: {tail}", seconds=seconds)
    figures: dict[str, float] = {}
    if as_json:
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        try:
            raw = json.loads(lines[-1]) if lines else {}
        except json.JSONDecodeError:
            raw = {}
        figures = {k: float(v) for k, v in raw.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
    else:
        figures = bench.parse(done.stdout)
    if not figures:
        return Outcome(bench, "failed", note="ran, but printed no figure the runner can read",
                       seconds=seconds)
    return Outcome(bench, "ok", figures, seconds=seconds)


def _verdict(key: str, value: float) -> tuple[str, str]:
    goal = GOALS.get(key)
    if goal is None:
        return "", ""
    op, bound = goal
    met = {"==": value == bound, "<=": value <= bound, "<": value < bound,
           ">=": value >= bound}[op] and not math.isnan(value)
    return f"{op} {bound:g}", "met" if met else "MISSED"


def table(outcomes: list[Outcome]) -> str:
    """One table: bench, figure, value, goal, verdict; a row per missing or failed bench."""
    rows = [("bench", "figure", "value", "goal", "")]
    for outcome in outcomes:
        name = outcome.bench.name
        if outcome.status != "ok":
            rows.append((name, outcome.status.upper(), "-", "", outcome.note))
            continue
        for key, value in outcome.figures.items():
            goal, verdict = _verdict(key, value)
            rows.append((name, key, f"{value:.4g}", goal, verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2]),
                 row[3].ljust(widths[3]), row[4]]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (smoke test); writes no results file unless --output")
    parser.add_argument("--only", default="",
                        help="comma-separated benchmarks to run: "
                             + ", ".join(b.name for b in BENCHES))
    parser.add_argument("--output", type=Path, default=None,
                        help="results file [default: bench/results.json; none with --quick]")
    args = parser.parse_args(argv)
    chosen = BENCHES
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - {b.name for b in BENCHES})
        if unknown:
            parser.error(f"unknown benchmark {', '.join(unknown)}; choose from "
                         + ", ".join(b.name for b in BENCHES))
        chosen = [b for b in BENCHES if b.name in wanted]
    output = args.output if args.output is not None else (
        None if args.quick else BENCH / "results.json")
    print(f"hotswap benchmarks{' (quick: numbers mean nothing)' if args.quick else ''}: "
          f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    outcomes = []
    for bench in chosen:
        print(f"running {bench.name} (bench/{bench.script})...", file=sys.stderr, flush=True)
        outcome = run_bench(bench, args.quick)
        print(f"  {outcome.status} in {outcome.seconds:.1f} s {outcome.note}".rstrip(),
              file=sys.stderr, flush=True)
        outcomes.append(outcome)
    print(table(outcomes))
    results = {k: v for o in outcomes for k, v in o.figures.items()}
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(results)} figures to {output}")
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
