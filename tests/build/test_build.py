"""The in-process pipeline: cache, worker processes, lazy imports and templates."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import NOOP_HOOKS

import hotswap_build.build as build_module
from hotswap_build.cache import cache_dir
from hotswap_build.render import templates_dir


def make_plugin(root: Path, modules: int) -> Path:
    plugin = root / "big"
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text(NOOP_HOOKS)
    for index in range(modules):
        (plugin / f"m{index:03d}.py").write_text(
            f"from big.m{(index + 1) % modules:03d} import f as g\n"
            f"def f(): return {index}\n"
            + (f"def live_f{index}(): return g()\n" if index % 3 == 0 else ""))
    return plugin


def test_cache_folder_comes_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    """HOTSWAP_CACHE_DIR wins; otherwise the cache lives under ~/.cache/hotswap/build."""
    monkeypatch.setenv("HOTSWAP_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("HOTSWAP_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "hotswap" / "build"


def test_rebuild_after_one_change_processes_one_file(tmp_path: Path, build_plugin,
                                                     monkeypatch) -> None:
    """Unchanged files come from the cache; a changed one is processed again; output matches."""
    plugin = make_plugin(tmp_path, 6)
    first = build_plugin(plugin, tmp_path / "one")
    processed: list[str] = []
    original = build_module._process_file

    def counting(ctx, source, statement_cache=None):
        processed.append(ctx.rel)
        return original(ctx, source, statement_cache)

    monkeypatch.setattr(build_module, "_process_file", counting)
    again = build_plugin(plugin, tmp_path / "two")
    assert processed == []
    assert again.artifact.read_bytes() == first.artifact.read_bytes()
    (plugin / "m002.py").write_text("def f(): return 'changed'\n")
    build_plugin(plugin, tmp_path / "three")
    assert processed == ["m002.py"]
    assert not list((tmp_path / "three").glob("*cache*"))


def test_a_corrupt_cache_is_ignored(tmp_path: Path, build_plugin) -> None:
    """Garbage in the cache folder never breaks a build; it is rebuilt."""
    plugin = make_plugin(tmp_path, 3)
    first = build_plugin(plugin, tmp_path / "one")
    for path in cache_dir().rglob("*"):
        if path.is_file():
            path.write_bytes(b"\x80garbage")
    second = build_plugin(plugin, tmp_path / "two")
    assert second.artifact.read_bytes() == first.artifact.read_bytes()


def test_worker_processes_give_the_same_artifact(tmp_path: Path, build_plugin,
                                                 monkeypatch) -> None:
    """A big plugin is spread over worker processes; the artifact is the same as in-process."""
    import concurrent.futures

    plugin = make_plugin(tmp_path, 50)
    pools = []
    real_pool = concurrent.futures.ProcessPoolExecutor

    def spy(*args, **kwargs):
        pools.append(kwargs)
        return real_pool(*args, **kwargs)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", spy)
    parallel = build_plugin(plugin, tmp_path / "parallel")
    assert len(pools) == 1
    assert len(parallel.live_funcs) == 17
    monkeypatch.setattr(build_module, "PARALLEL_THRESHOLD", 10**9)
    monkeypatch.setenv("HOTSWAP_CACHE_DIR", str(tmp_path / "other-cache"))
    serial = build_plugin(plugin, tmp_path / "serial")
    assert serial.artifact.read_bytes() == parallel.artifact.read_bytes()


def test_threaded_callers_build_in_process(tmp_path: Path, build_plugin, monkeypatch) -> None:
    """With other threads running, no worker process is forked; the artifact is the same."""
    plugin = make_plugin(tmp_path, 50)
    forked = build_plugin(plugin, tmp_path / "forked")
    monkeypatch.setenv("HOTSWAP_CACHE_DIR", str(tmp_path / "other-cache"))
    monkeypatch.setattr("concurrent.futures.ProcessPoolExecutor", None)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        threaded = build_plugin(plugin, tmp_path / "threaded")
    finally:
        stop.set()
        thread.join()
    assert threaded.artifact.read_bytes() == forked.artifact.read_bytes()


def test_libcst_and_jinja2_are_imported_only_when_needed(tmp_path: Path, build_plugin) -> None:
    """Starting the CLI imports neither; a rebuild from the cache imports neither either."""
    plugin = make_plugin(tmp_path, 3)
    build_plugin(plugin, tmp_path / "warm")
    probe = (
        "import sys\n"
        "import hotswap_build.cli\n"
        "assert 'libcst' not in sys.modules and 'jinja2' not in sys.modules\n"
        "from hotswap_build.build import build\n"
        f"build({str(plugin)!r}, {str(tmp_path / 'out')!r})\n"
        "print(sorted(m for m in ('libcst', 'jinja2') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_templates_are_found() -> None:
    """The registration templates are found in the checkout or the installed package."""
    assert (templates_dir() / "registration.py.j2").is_file()
    assert (templates_dir() / "static_plugin.py.j2").is_file()
    assert (templates_dir() / "static_plugins.py.j2").is_file()


def test_self_test_is_listed_when_present(sample, tmp_path: Path, build_plugin,
                                          load_artifact) -> None:
    """An optional self_test hook lands in the manifest's hooks and in HOOKS."""
    result = build_plugin(sample("good/world"), tmp_path / "bin")
    assert "self_test" in result.hooks
    package = load_artifact(result.artifact)
    registration = __import__(f"{package.__name__}._hotswap_registration", fromlist=["_"])
    assert registration.HOOKS["self_test"] is package.self_test
    assert registration.HOOKS["on_load"] is package.hooks.on_load


@pytest.mark.parametrize("prefix", ["live_", "LIVE_"])
def test_live_names_map_to_their_modules(tmp_path: Path, build_plugin, prefix: str) -> None:
    """BuildResult lists each live name with the module inside the artifact that defines it."""
    plugin = make_plugin(tmp_path, 4)
    result = build_plugin(plugin, tmp_path / "bin", live_prefix=prefix)
    assert result.live_funcs == {"live_f0": "big.m000", "live_f3": "big.m003"}
    assert result.live_types == {}
    assert result.build_id is not None and result.name == "big"


def test_cache_entry_write_failure_leaves_no_temporary(tmp_path: Path, monkeypatch) -> None:
    """A cache entry whose rename fails is skipped without a temporary file left beside it."""
    from hotswap_build.cache import read_entry, write_entry

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("hotswap_runtime.artifact.os.replace", refuse)
    entry = tmp_path / "cache" / "entry"
    write_entry(entry, b"body")
    assert list(entry.parent.iterdir()) == []
    monkeypatch.undo()
    write_entry(entry, b"body")
    assert read_entry(entry) == b"body"


def test_rebuild_deflates_only_what_changed(tmp_path: Path, build_plugin, monkeypatch) -> None:
    """The cache keeps each member deflated: a one-file rebuild packs without compressing the
    unchanged files again, and the artifact is byte for byte what packing from scratch gives."""
    import hotswap_runtime.artifact as artifact_module
    from hotswap_build.pack import COMPRESS_LEVEL

    plugin = make_plugin(tmp_path, 20)
    build_plugin(plugin, tmp_path / "out")
    packed: list[int] = []
    real = artifact_module.deflate

    def counting(data: bytes, compresslevel: int) -> bytes:
        packed.append(len(data))
        return real(data, compresslevel)

    monkeypatch.setattr(artifact_module, "deflate", counting)
    (plugin / "m004.py").write_text("def f(): return 'changed'\n")
    result = build_plugin(plugin, tmp_path / "out")
    # pack compresses the registration module and its pyc, MANIFEST.json and RECORD; m004.py
    # and its pyc were deflated as they were compiled (into the cache), the rest came from it
    assert len(packed) == 4
    monkeypatch.setattr(artifact_module, "deflate", real)
    artifact = artifact_module.read_artifact(result.artifact)
    again = artifact_module.pack(artifact.name, artifact.files, artifact.manifest,
                                 compresslevel=COMPRESS_LEVEL)
    assert again == result.artifact.read_bytes()
