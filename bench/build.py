"""Benchmark ``hotswap build`` against ``python -m compileall -q -f`` on synthetic plugins.

Generates plugins of 10, 100 and 1000 modules (about 100 lines each; every 5th module defines
live functions and a live type, every 4th imports a sibling module through the plugin's own
absolute name, so the rewrite has work to do) and prints, for each size, the median wall time of:

- ``compileall``: ``python -m compileall -q -f <plugin>``;
- ``cold``: ``hotswap build`` with an empty per-file cache;
- ``one-file``: ``hotswap build`` again after changing one module (warm cache);

and the ratios of the two builds to compileall. Every timing runs the real command line in a
fresh process, start-up included (with ``PYTHONDONTWRITEBYTECODE`` unset, so hotswap's own
modules load from bytecode as in an installed copy). It prints numbers only; it asserts nothing.

    .venv/bin/python bench/build.py [--runs 5] [--sizes 10,100,1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOOKS = '''\
"""Synthetic plugin {name}."""

CompileTimeString = "dev"


def on_load(data):
    pass


def on_init(vault):
    pass


def on_free():
    pass


def export():
    return None


def import_():
    return None


def invoke_func(name, *params):
    return name


def reloadable():
    return True
'''


def module_source(plugin: str, index: int, count: int) -> str:
    lines = [f'"""Module {index} of a synthetic plugin."""', "", "import json",
             "import os", "from dataclasses import dataclass", ""]
    if index % 4 == 1 and count > 1:
        lines.append(f"from {plugin}.mod_{(index + 1) % count:04d} import helper_0")
        lines.append("")
    lines += ["", "@dataclass", f"class Record{index}:", "    key: str", "    value: int = 0", "",
              "    def describe(self) -> str:", "        return f'{self.key}={self.value}'", ""]
    for f in range(8):
        lines += [
            "",
            f"def helper_{f}(items, factor={f + 1}):",
            f'    """Helper {f}: a little arithmetic and some branching."""',
            "    total = 0",
            "    for position, item in enumerate(items):",
            "        if position % 2:",
            "            total += item * factor",
            "        else:",
            "            total -= item // factor",
            "    return {'total': total, 'path': os.path.join('a', str(total))}",
        ]
    if index % 5 == 0:
        lines += ["", "", f"def live_handle_{index}(job):",
                  "    return json.dumps({'job': job})", "",
                  "", f"class Live_Job{index}:", "    pass"]
    while len(lines) < 100:
        lines.append(f"# padding line {len(lines)}")
    return "\n".join(lines) + "\n"


def make_plugin(root: Path, count: int) -> Path:
    name = f"synth{count}"
    plugin = root / name
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text(HOOKS.format(name=name))
    for index in range(count):
        (plugin / f"mod_{index:04d}.py").write_text(module_source(name, index, count))
    return plugin


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="10,100,1000")
    args = parser.parse_args()
    hotswap = str(Path(sys.executable).with_name("hotswap"))
    work = Path(tempfile.mkdtemp(prefix="hotswap-bench-"))
    try:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median of {args.runs} runs")
        print(f"{'modules':>8} {'compileall':>11} {'cold':>8} {'one-file':>9} "
              f"{'cold/ca':>8} {'one/ca':>7}")
        for count in (int(s) for s in args.sizes.split(",")):
            plugin = make_plugin(work / f"p{count}", count)
            out = work / f"out{count}"
            env = dict(os.environ)
            # measure an installed hotswap, whose own modules have their bytecode cached
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            compileall = [timed([sys.executable, "-m", "compileall", "-q", "-f", str(plugin)],
                                env) for _ in range(args.runs)]
            for cache in plugin.rglob("__pycache__"):
                shutil.rmtree(cache)
            cold = []
            for run in range(args.runs):
                env["HOTSWAP_CACHE_DIR"] = str(work / f"cache-{count}-{run}")
                cold.append(timed([hotswap, "build", str(plugin), str(out)], env))
            one = []
            target = plugin / "mod_0001.py"
            original = target.read_text()
            for run in range(args.runs):
                target.write_text(original + f"\nCHANGED = {run}\n")
                one.append(timed([hotswap, "build", str(plugin), str(out)], env))
            target.write_text(original)
            ca, c, o = (statistics.median(x) for x in (compileall, cold, one))
            print(f"{count:>8} {ca:>10.3f}s {c:>7.3f}s {o:>8.3f}s {c / ca:>7.2f}x {o / ca:>6.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
