"""What each version's files on disk cost (SPEC 4, "Files on disk").

    .venv/bin/python bench/ondisk.py [--quick] [--json]

Figures:

- ``files_write_ms_per_file`` / ``files_write_ms_per_mb``: writing an artifact's package into
  the runtime folder the first time (files 0444 in 0555 folders, sealed, renamed into place),
  from the 1000-module plugin; ``files_write_{n}_ms`` for the whole plugin of n modules.
- ``files_reuse_{n}_ms``: a later load of the same artifact: its sealed copy checked (an
  ``lstat`` per file) and the version's folder made (one symlink).
- ``reload_{n}_files_ms``, ``floor_{n}_files_ms`` and ``reload_files_vs_floor_{n}``: a reload
  against a warm-``__pycache__`` import of the same modules, as ``bench/reload.py`` measures it
  (alternating two builds, so the shared copy is reused), here for 1000 modules too.
- ``reload_cold_files_vs_floor_{n}``: the same with nothing kept for reuse, so every reload
  writes its folder from scratch (a new artifact on a host that never saw it).

Measures only; asserts nothing. The runtime folder is a fresh one under the system temp dir.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import reload as reload_bench  # noqa: E402
from _plugins import build_stamped, make_plugin  # noqa: E402

from hotswap_runtime import ondisk  # noqa: E402
from hotswap_runtime.artifact import read_artifact  # noqa: E402


def write_costs(artifact: Path, runtime: Path, rounds: int) -> tuple[float, float, int, int]:
    """Median seconds to write the package the first time, and to reuse it; files and bytes."""
    files = dict(read_artifact(artifact).files)
    writes, reuses = [], []
    folder = ondisk.RuntimeFolder(runtime)
    try:
        for n in range(rounds):
            sha = f"{n:064x}"  # a name never written before: the write is cold
            start = time.perf_counter()
            first = folder.materialize("bench", 2 * n, sha, files)
            writes.append(time.perf_counter() - start)
            start = time.perf_counter()
            second = folder.materialize("bench", 2 * n + 1, sha, files)
            reuses.append(time.perf_counter() - start)
            folder.release(first)
            folder.release(second)
    finally:
        folder.close()
    return (statistics.median(writes), statistics.median(reuses), len(files),
            sum(len(data) for data in files.values()))


def reload_vs_floor(root: Path, name: str, cold: bool) -> tuple[float, float]:
    """``bench/reload.py``'s interleaved measure; ``cold``: nothing is kept for reuse."""
    kept = ondisk.KEEP_ENTRIES
    ondisk.KEEP_ENTRIES = 0 if cold else kept
    try:
        return reload_bench.measure(root / "src", root / ("cold" if cold else "warm"), name)
    finally:
        ondisk.KEEP_ENTRIES = kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes; numbers mean nothing")
    parser.add_argument("--json", action="store_true", help="print one JSON object of figures")
    args = parser.parse_args()
    sizes = (10,) if args.quick else (100, 1000)
    rounds = 3 if args.quick else 9
    if args.quick:
        reload_bench.ROUNDS = 3
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for modules in sizes:
            name = f"disk{modules}"
            make_plugin(root / "src", name, modules)
            built = root / "built" / f"{name}.hsp"
            built.parent.mkdir(parents=True, exist_ok=True)
            built.write_bytes(build_stamped(root / "src" / name, root / "builds", "w"))
            write, reuse, count, size = write_costs(built, root / "runtime", rounds)
            figures[f"files_write_{modules}_ms"] = write * 1e3
            figures[f"files_reuse_{modules}_ms"] = reuse * 1e3
            figures[f"files_{modules}_count"] = count
            figures[f"files_{modules}_mb"] = size / 2**20
            figures["files_write_ms_per_file"] = write * 1e3 / count
            figures["files_write_ms_per_mb"] = write * 1e3 / (size / 2**20)
            took, base = reload_vs_floor(root, name, cold=False)
            figures[f"reload_{modules}_files_ms"] = took * 1e3
            figures[f"floor_{modules}_files_ms"] = base * 1e3
            figures[f"reload_files_vs_floor_{modules}"] = took / base
            took, base = reload_vs_floor(root, name, cold=True)
            figures[f"reload_cold_files_vs_floor_{modules}"] = took / base
    if args.json:
        print(json.dumps(figures))
        return
    for key, value in figures.items():
        print(f"{key:<36} {value:10.3f}")


if __name__ == "__main__":
    main()
