"""What each version's files on disk cost (README "Under the hood", files on disk).

    .venv/bin/python bench/ondisk.py [--quick] [--json]

Figures:

- ``files_write_ms_per_file`` / ``files_write_ms_per_mb``: writing an artifact's package into
  the runtime folder the first time (files 0444 in 0555 folders, sealed, renamed into place),
  from the 1000-module plugin; ``files_write_{n}_ms`` for the whole plugin of n modules.
- ``files_reuse_{n}_ms``: a later load of the same artifact: its sealed copy checked (an
  ``lstat`` per file) and the version's folder made (one symlink).
- ``files_link_{n}_ms``: a new artifact whose files all equal those of the running version's
  copy (the limit of a small rebuild): every file a hard link.
- ``reload_{n}_files_ms``, ``floor_{n}_files_ms`` and ``reload_files_vs_floor_{n}``: a reload
  against a warm-``__pycache__`` import of the same modules, as ``bench/reload.py`` measures it
  (alternating two builds, so the shared copy is reused), here for 1000 modules too.
- ``reload_rebuilt_files_vs_floor_{n}``: the same with nothing kept for reuse, so every reload
  makes a new copy, linking the files equal to the running version's (the edit-rebuild-reload
  loop: here the root module differs).
- ``reload_cold_files_vs_floor_{n}``: nothing kept and nothing linked: every reload writes
  every file (a new artifact on a host that never saw it).

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
import reload as reload_bench
from _plugins import build_stamped, make_plugin

from hotswap_runtime import ondisk
from hotswap_runtime.artifact import read_artifact


def write_costs(artifact: Path, runtime: Path, rounds: int) -> dict[str, float]:
    """Median seconds to write the package the first time, to reuse it, and to make a copy of
    another artifact with the same files (all links); how many files, how many bytes."""
    files = dict(read_artifact(artifact).files)
    writes, reuses, links = [], [], []
    folder = ondisk.RuntimeFolder(runtime)
    try:
        for n in range(rounds):
            sha, other = f"{2 * n:064x}", f"{2 * n + 1:064x}"  # never written before
            start = time.perf_counter()
            first = folder.materialize("bench", 3 * n, sha, files)
            writes.append(time.perf_counter() - start)
            start = time.perf_counter()
            second = folder.materialize("bench", 3 * n + 1, sha, files)
            reuses.append(time.perf_counter() - start)
            start = time.perf_counter()
            third = folder.materialize("bench", 3 * n + 2, other, files)
            links.append(time.perf_counter() - start)
            for made in (first, second, third):
                folder.release(made)
    finally:
        folder.close()
    return {"write": statistics.median(writes), "reuse": statistics.median(reuses),
            "link": statistics.median(links), "count": len(files),
            "bytes": sum(len(data) for data in files.values())}


def reload_vs_floor(root: Path, name: str, how: str) -> tuple[float, float]:
    """``bench/reload.py``'s interleaved measure. ``how``: ``warm`` (copies kept for reuse),
    ``rebuilt`` (nothing kept: a new copy each time, linked to the running one where equal) or
    ``cold`` (nothing kept, nothing linked)."""
    kept, base = ondisk.KEEP_ENTRIES, ondisk.RuntimeFolder._base
    if how != "warm":
        ondisk.KEEP_ENTRIES = 0
    if how == "cold":
        ondisk.RuntimeFolder._base = lambda self, name: None  # type: ignore[method-assign]  # cold: no base
    try:
        return reload_bench.measure(root / "src", root / how, name)
    finally:
        ondisk.KEEP_ENTRIES, ondisk.RuntimeFolder._base = kept, base  # type: ignore[method-assign]  # restore


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
            cost = write_costs(built, root / "runtime", rounds)
            figures[f"files_write_{modules}_ms"] = cost["write"] * 1e3
            figures[f"files_reuse_{modules}_ms"] = cost["reuse"] * 1e3
            figures[f"files_link_{modules}_ms"] = cost["link"] * 1e3
            figures[f"files_{modules}_count"] = cost["count"]
            figures[f"files_{modules}_mb"] = cost["bytes"] / 2**20
            figures["files_write_ms_per_file"] = cost["write"] * 1e3 / cost["count"]
            figures["files_write_ms_per_mb"] = cost["write"] * 1e3 / (cost["bytes"] / 2**20)
            took, base = reload_vs_floor(root, name, "warm")
            figures[f"reload_{modules}_files_ms"] = took * 1e3
            figures[f"floor_{modules}_files_ms"] = base * 1e3
            figures[f"reload_files_vs_floor_{modules}"] = took / base
            for how in ("rebuilt", "cold"):
                took, base = reload_vs_floor(root, name, how)
                figures[f"reload_{how}_files_vs_floor_{modules}"] = took / base
    if args.json:
        print(json.dumps(figures))
        return
    for key, value in figures.items():
        print(f"{key:<36} {value:10.3f}")


if __name__ == "__main__":
    main()
