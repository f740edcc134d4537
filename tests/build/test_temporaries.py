"""A killed ``hotswap build`` leaves no temporary for good; a concurrent build's is left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from helpers import NOOP_HOOKS

from hotswap_runtime.artifact import read_artifact

# a build whose rename waits: it has written its temporary and holds it, as a build does midway
PAUSED_BUILD = """\
import os, sys
real_replace = os.replace
def paused_replace(src, dst):
    if str(dst).endswith(".hsp"):  # not the build cache's files
        print("written", flush=True)
        sys.stdin.readline()
    real_replace(src, dst)
os.replace = paused_replace
from hotswap_build.cli import main
sys.argv = ["hotswap", "build", sys.argv[1], sys.argv[2]]
main()
"""


def _start_paused_build(plugin: Path, out: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", PAUSED_BUILD, str(plugin), str(out)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env=os.environ.copy())
    assert process.stdout is not None
    for line in process.stdout:  # the CLI's own progress lines come first
        if line == "written\n":
            break
    else:
        raise AssertionError("the paused build ended before writing its temporary")
    return process


def _build(plugin: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from hotswap_build.cli import main; main()", "build", str(plugin),
                           str(out)], capture_output=True, text=True, timeout=120)


def _temporaries(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp"))


def _plugin(tmp_path: Path, stamp: str) -> Path:
    plugin = tmp_path / "src" / "a"
    plugin.mkdir(parents=True, exist_ok=True)
    (plugin / "__init__.py").write_text(NOOP_HOOKS + f"STAMP = {stamp!r}\n")
    return plugin


def test_the_next_build_sweeps_what_a_killed_build_left(tmp_path: Path) -> None:
    """A build killed while writing leaves ``.a.hsp.*.tmp``; the next build of a removes it."""
    out = tmp_path / "out"
    plugin = _plugin(tmp_path, "one")
    killed = _start_paused_build(plugin, out)
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    assert len(_temporaries(out)) == 1 and _temporaries(out)[0].startswith(".a.hsp.")
    other = out / ".b.hsp.x1y2.tmp"  # another artifact's: not this build's to judge
    other.write_bytes(b"")
    done = _build(_plugin(tmp_path, "two"), out)
    assert done.returncode == 0, done.stderr
    assert _temporaries(out) == [other.name]
    assert read_artifact(out / "a.hsp").files["a/__init__.py"].endswith(b"STAMP = 'two'\n")


def test_a_concurrent_build_keeps_its_temporary(tmp_path: Path) -> None:
    """Two builds of one artifact at once: the second never removes the first's temporary."""
    out = tmp_path / "out"
    plugin = _plugin(tmp_path, "one")
    first = _start_paused_build(plugin, out)
    try:
        held = _temporaries(out)
        assert len(held) == 1
        done = _build(_plugin(tmp_path, "two"), out)
        assert done.returncode == 0, done.stderr
        assert _temporaries(out) == held
        assert read_artifact(out / "a.hsp").files["a/__init__.py"].endswith(b"STAMP = 'two'\n")
        first.communicate("\n", timeout=60)
        assert first.returncode == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    assert _temporaries(out) == []
    # the first build renamed last: its artifact (read before the change) is what is there
    assert read_artifact(out / "a.hsp").files["a/__init__.py"].endswith(b"STAMP = 'one'\n")
