"""Memory of one live version: RSS per version of a 100-module plugin against a plain import.

In a fresh process, a swapper loads the plugin once (one-time costs: the runtime's own imports,
caches), then reloads it ``--versions`` times with ``free_delay`` long enough that every
version stays alive; the RSS growth divided by that count is one version's cost. In another
fresh process, the same plugin is imported from disk (warm ``__pycache__``) once, then as many
copies under other package names; growth per copy is the plain import's cost. The two processes
take turns ``--runs`` times; the figures are medians. ``rss_per_version_ratio`` is their ratio
(goal <= 1.1). Twenty versions, so that the allocator's arenas (256 KiB to 1 MiB each) do not
decide the figure.

    .venv/bin/python bench/rss_version.py [--runs 3] [--modules 100] [--versions 20] [--json]
"""

from __future__ import annotations

import compileall
import gc
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import _util

_HOTSWAP = """
import gc, json, sys
sys.path.insert(0, {bench!r})
import _util
from hotswap_runtime import PluginManagerSwapper
plugins, builds, versions = {plugins!r}, {builds!r}, {versions}
import os
def put(index):
    tmp = os.path.join(plugins, ".p.swap")
    with open(builds[index % len(builds)], "rb") as src, open(tmp, "wb") as dst:
        dst.write(src.read())
    os.replace(tmp, os.path.join(plugins, "p.hsp"))
put(0)
swapper = PluginManagerSwapper(plugins, free_delay=3600)
swapper.load_plugins()
gc.collect()
before = _util.rss_bytes()
for n in range(1, versions + 1):
    put(n)
    swapper.reload()
gc.collect()
assert len(swapper.stats()) == versions + 1, swapper.stats()
print(json.dumps((_util.rss_bytes() - before) / versions))
"""

_PLAIN = """
import gc, importlib, json, sys
sys.path.insert(0, {bench!r})
import _util
sys.path.insert(0, {src!r})
copies = {copies!r}
importlib.import_module(copies[0])
gc.collect()
before = _util.rss_bytes()
for name in copies[1:]:
    importlib.import_module(name)
gc.collect()
print(json.dumps((_util.rss_bytes() - before) / (len(copies) - 1)))
"""


def _run(code: str) -> float:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(modules: int, versions: int, runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hotswap-rss-") as tmp:
        root = Path(tmp)
        source = _util.make_plugin(root / "src", "p", modules)
        builds = [str(_util.build(source, root / f"out-{i}", f"v{i}")) for i in range(2)]
        plugins = root / "plugins"
        plugins.mkdir()
        copies = ["p"]
        for index in range(1, versions + 1):
            name = f"p_copy{index}"
            shutil.copytree(source, root / "src" / name)
            copies.append(name)
        compileall.compile_dir(str(root / "src"), quiet=1)
        bench = str(Path(__file__).resolve().parent)
        hotswap_code = _HOTSWAP.format(bench=bench, plugins=str(plugins), builds=builds,
                                       versions=versions)
        plain_code = _PLAIN.format(bench=bench, src=str(root / "src"), copies=copies)
        per_version, per_import = [], []
        for _ in range(runs):
            per_version.append(_run(hotswap_code))
            per_import.append(_run(plain_code))
            gc.collect()
    _util.log("per version (KiB):", [round(v / 1024) for v in per_version],
              "per plain import (KiB):", [round(v / 1024) for v in per_import])
    version, plain = _util.median(per_version), _util.median(per_import)
    return {"rss_per_version_kib": version / 1024, "rss_plain_import_kib": plain / 1024,
            "rss_per_version_ratio": version / plain}


def main() -> None:
    parser = _util.parser(__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modules", type=int, default=100)
    parser.add_argument("--versions", type=int, default=20)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.modules, args.versions = 1, 5, 2
    _util.log(f"RSS of a {args.modules}-module plugin: {args.versions} live versions against "
              f"as many plain imports, {args.runs} interleaved runs")
    _util.emit(measure(args.modules, args.versions, args.runs), args.json)


if __name__ == "__main__":
    main()
