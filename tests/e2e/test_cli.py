"""End to end: the real ``hotswap`` CLI on real plugin folders."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from hotswap_build.cli import main
from hotswap_runtime.artifact import read_artifact


def test_build_then_import_the_artifact(sample, tmp_path: Path, load_artifact) -> None:
    """The artifact verifies, carries the stamp, and its package imports under any name."""
    plugin = sample("good/hello")
    out = tmp_path / "bin"
    result = CliRunner().invoke(main, ["build", str(plugin), str(out), "--",
                                       "-X", "CompileTimeString=abc"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == 'Building plugin "hello"...'
    assert lines[-1] == str(out / "hello.hsp")
    artifact = read_artifact(out / "hello.hsp")
    assert artifact.manifest.stamps == {"CompileTimeString": "abc"}
    package = load_artifact(out / "hello.hsp")
    assert package.invoke_func("greet", "bob") == "HELLO BOB (ABC)"
    assert package.invoke_func("job", "x") == "X"
    assert package.invoke_func("lazy") == "LAZY"
    registration = __import__(f"{package.__name__}._hotswap_registration", fromlist=["_"])
    assert registration.LIVE_FUNCS == {"live_run": package.jobs.live_run}
    assert registration.LIVE_TYPES == {"Live_Job": package.jobs.Live_Job}
    assert set(registration.HOOKS) == {"on_load", "on_init", "on_free", "export", "import_",
                                       "invoke_func", "reloadable"}
