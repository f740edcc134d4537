"""End to end: the real ``hotswap`` CLI on real plugin folders."""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import io
import json
import marshal
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

import hotswap_build
from hotswap_build.cli import main
from hotswap_runtime.artifact import Manifest, pack, read_artifact


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


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_verbose_lists_names_files_and_timings(sample, tmp_path: Path) -> None:
    """-v prints the live names with their modules, the generated files and a timing table."""
    plugin = sample("good/hello")
    out = tmp_path / "bin"
    result = invoke("build", "-v", str(plugin), str(out), "--", "-X", "CompileTimeString=abc")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:8] == [
        'Building plugin "hello"...',
        "Sources: 4 files, 0 from the cache",
        "Live functions (1):",
        "  live_run  hello.jobs",
        "Live types (1):",
        "  Live_Job  hello.jobs",
        "Generated files (1):",
        f"  {out / 'hello.hsp'}",
    ]
    assert lines[8] == "Timings (scan, rewrite and compile summed over worker processes):"
    stages = [line.split()[0] for line in lines[9:-1]]
    assert stages == ["scan", "rewrite", "compile", "pack", "total"]
    assert lines[-1] == str(out / "hello.hsp")


def test_leave_temps_keeps_the_build_tree(sample, tmp_path: Path) -> None:
    """--leaveTemps prints the kept tree, which holds the rewritten package and registration."""
    plugin = sample("good/hello")
    out = tmp_path / "bin"
    result = invoke("build", "--leaveTemps", str(plugin), str(out))
    assert result.exit_code == 0, result.output
    kept = result.stdout.splitlines()[-2]
    assert kept.startswith("Build tree kept at ")
    tree = Path(kept.removeprefix("Build tree kept at "))
    try:
        assert (tree / "hello" / "_hotswap_registration.py").is_file()
        assert "from . import jobs" in (tree / "hello" / "__init__.py").read_text()
        assert (out / "hello.hsp").is_file()
    finally:
        shutil.rmtree(tree)


def test_no_package_stops_after_the_tree(sample, tmp_path: Path) -> None:
    """--no-package writes no artifact; the tree's path is the last line."""
    plugin = sample("good/hello")
    out = tmp_path / "bin"
    result = invoke("build", "--no-package", str(plugin), str(out))
    assert result.exit_code == 0, result.output
    tree = Path(result.stdout.splitlines()[-1])
    try:
        assert (tree / "hello" / "jobs.py").is_file()
        assert not out.exists()
    finally:
        shutil.rmtree(tree)


def test_include_and_exclude_pick_data_files(sample, tmp_path: Path) -> None:
    """--include adds matching files by base name, --exclude drops some of those again."""
    plugin = sample("good/hello")
    (plugin / "sub" / "notes.txt").write_text("notes")
    (plugin / "sub" / "skip.txt").write_text("skip")
    out = tmp_path / "bin"
    result = invoke("build", "--include", r"\.txt$", "--exclude", "^skip", str(plugin), str(out))
    assert result.exit_code == 0, result.output
    files = read_artifact(out / "hello.hsp").files
    assert files["hello/greeting.txt"] == b"hi from a data file\n"
    assert files["hello/sub/notes.txt"] == b"notes"
    assert "hello/sub/skip.txt" not in files
    assert "hello/test_hello.py" not in files
    # the runtime mounts the package under another name: resources follow __package__
    assert b'resources.files(__package__).joinpath("greeting.txt")' in files["hello/__init__.py"]
    plain = invoke("build", str(plugin), str(tmp_path / "plain"))
    assert plain.exit_code == 0
    assert not [m for m in read_artifact(tmp_path / "plain" / "hello.hsp").files
                if m.endswith(".txt")]


@pytest.mark.parametrize(("flags", "level"), [((), 0), (("-O",), 1), (("-OO",), 2)])
def test_optimisation_level_of_the_bytecode(sample, tmp_path: Path, flags, level) -> None:
    """-O and -OO change the stored bytecode, its file names and the manifest."""
    plugin = sample("good/hello")
    out = tmp_path / "bin"
    result = invoke("build", str(plugin), str(out), "--", *flags)
    assert result.exit_code == 0, result.output
    artifact = read_artifact(out / "hello.hsp")
    assert artifact.manifest.bytecode == {
        "cache_tag": sys.implementation.cache_tag,
        "magic": importlib.util.MAGIC_NUMBER.hex(),
        "optimize": level,
    }
    pyc = importlib.util.cache_from_source("hello/jobs.py", optimization=level or "")
    data = artifact.files[pyc]
    assert data[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(data[4:8], "little") == 0b01  # hash-based, unchecked
    assert data[8:16] == importlib.util.source_hash(artifact.files["hello/jobs.py"])
    code = marshal.loads(data[16:])
    assert code.co_filename == "hello/jobs.py"
    root = marshal.loads(artifact.files[importlib.util.cache_from_source(
        "hello/__init__.py", optimization=level or "")][16:])
    assert ("__doc__" in root.co_names) == (level < 2)


def test_help(tmp_path: Path) -> None:
    """-h shows every public flag and the build flags."""
    result = invoke("build", "-h")
    assert result.exit_code == 0
    for flag in ("--debug", "--exclude", "--include", "--leaveTemps", "--livePrefix",
                 "--package / --no-package", "--staticLinking", "-v, --verbose", "-h, --help",
                 "-X NAME=VALUE", "-O | -OO"):
        assert flag in result.stdout
    assert invoke("-h").exit_code == 0


def test_live_prefix_is_case_insensitive(tmp_path: Path) -> None:
    """--livePrefix picks other names, matched case-insensitively; live_ names become plain."""
    plugin = sample_plugin(tmp_path)
    (plugin / "mod.py").write_text("def HOT_a(): pass\nclass hot_B: pass\ndef live_c(): pass\n")
    out = tmp_path / "bin"
    result = invoke("build", "--livePrefix", "hot_", str(plugin), str(out))
    assert result.exit_code == 0, result.output
    manifest = read_artifact(out / "foo.hsp").manifest
    assert manifest.live_funcs == {"HOT_a": "foo.mod"}
    assert manifest.live_types == {"hot_B": "foo.mod"}
    assert manifest.live_prefix == "hot_"


def sample_plugin(root: Path, name: str = "foo") -> Path:
    plugin = root / name
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text(HOOKS)
    return plugin


HOOKS = """\
CompileTimeString = "dev"
def on_load(data): pass
def on_init(vault): pass
def on_free(): pass
def export(): pass
def import_(): pass
def invoke_func(name, *params): return CompileTimeString
def reloadable(): return True
"""


def test_rebuild_is_byte_identical(tmp_path: Path, monkeypatch) -> None:
    """The same inputs give the same bytes, with or without the cache; from another folder, the
    same build id and members, only the manifest's source_dir differs (map_sources needs it)."""
    first = sample_plugin(tmp_path / "a")
    second = sample_plugin(tmp_path / "b")
    for plugin in (first, second):
        (plugin / "jobs.py").write_text("from foo import x\ndef live_a(): pass\n")
        (plugin / "x.py").write_text("x = 1\n")
    assert invoke("build", str(first), str(tmp_path / "one")).exit_code == 0
    assert invoke("build", str(first), str(tmp_path / "two")).exit_code == 0
    monkeypatch.setenv("HOTSWAP_CACHE_DIR", str(tmp_path / "fresh-cache"))
    assert invoke("build", str(second), str(tmp_path / "three")).exit_code == 0
    one = (tmp_path / "one" / "foo.hsp").read_bytes()
    assert (tmp_path / "two" / "foo.hsp").read_bytes() == one
    moved, here = (read_artifact(tmp_path / folder / "foo.hsp") for folder in ("three", "one"))
    assert moved.build_id == here.build_id and moved.files == here.files
    assert (moved.manifest.source_dir, here.manifest.source_dir) == (str(second), str(first))
    # jobs.py was rewritten (from foo import x -> from . import x): what the build read is kept
    assert set(here.manifest.source_hashes) == {"foo/jobs.py"}
    assert here.manifest.source_hashes["foo/jobs.py"] == hashlib.sha256(
        (first / "jobs.py").read_bytes()).hexdigest()
    assert invoke("build", str(first), str(tmp_path / "four"), "--", "-X",
                  "CompileTimeString=x").exit_code == 0
    changed = read_artifact(tmp_path / "four" / "foo.hsp")
    assert changed.build_id != read_artifact(tmp_path / "one" / "foo.hsp").build_id


def test_manifest_and_record(tmp_path: Path) -> None:
    """MANIFEST.json says what the format lists and RECORD lists every other member with hash and size."""
    plugin = sample_plugin(tmp_path / "src")
    (plugin / "jobs.py").write_text("def live_a(): pass\nclass Live_B: pass\n")
    out = tmp_path / "bin"
    assert invoke("build", str(plugin), str(out), "--", "-X", "CompileTimeString=s").exit_code == 0
    with zipfile.ZipFile(out / "foo.hsp") as archive:
        names = archive.namelist()
        assert names == sorted(names[:-2]) + ["foo.hsp-info/MANIFEST.json", "foo.hsp-info/RECORD"]
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        manifest = json.loads(archive.read("foo.hsp-info/MANIFEST.json"))
        record = archive.read("foo.hsp-info/RECORD").decode()
        rows = list(csv.reader(io.StringIO(record)))
        for path, digest, size in rows[:-1]:
            data = archive.read(path)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == "sha256=" + expected.decode()
            assert int(size) == len(data)
        assert rows[-1] == ["foo.hsp-info/RECORD", "", ""]
        assert {r[0] for r in rows} == set(names)
    assert manifest["name"] == "foo"
    assert len(manifest["build_id"]) == 32
    assert manifest["hotswap_version"] == hotswap_build.__version__
    assert manifest["python"] == platform.python_version()
    assert manifest["live_prefix"] == "live_"
    assert manifest["live_funcs"] == {"live_a": "foo.jobs"}
    assert manifest["live_types"] == {"Live_B": "foo.jobs"}
    assert manifest["stamps"] == {"CompileTimeString": "s"}
    assert manifest["import_name"] == "foo"
    assert manifest["git_commit"] is None
    assert "time" not in json.dumps(manifest)


def test_git_commit_is_recorded_when_in_a_work_tree(tmp_path: Path) -> None:
    """Inside a git work tree the commit is noted; it does not change the build id."""
    if shutil.which("git") is None:
        pytest.fail("git is needed by this test")
    plugin = sample_plugin(tmp_path / "repo")
    outside = invoke("build", str(plugin), str(tmp_path / "before"))
    assert outside.exit_code == 0
    git = ["git", "-C", str(tmp_path / "repo"), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert invoke("build", str(plugin), str(tmp_path / "after")).exit_code == 0
    after = read_artifact(tmp_path / "after" / "foo.hsp").manifest
    assert after.git_commit == head
    assert after.build_id == read_artifact(tmp_path / "before" / "foo.hsp").manifest.build_id


def test_inspect_text_and_json(sample, tmp_path: Path) -> None:
    """inspect verifies the artifact and prints the manifest, readable or as JSON."""
    plugin = sample("good/hello")
    out = tmp_path / "bin"
    assert invoke("build", str(plugin), str(out), "--", "-X", "CompileTimeString=z").exit_code == 0
    artifact = read_artifact(out / "hello.hsp")
    text = invoke("inspect", str(out / "hello.hsp"))
    assert text.exit_code == 0, text.output
    assert f"Build id:        {artifact.build_id}" in text.stdout.splitlines()
    assert "  live_run  (hello.jobs)" in text.stdout.splitlines()
    assert "  CompileTimeString = 'z'" in text.stdout.splitlines()
    assert f"Sources:         {plugin}" in text.stdout.splitlines()  # what map_sources maps to
    assert text.stdout.splitlines()[-1] == "Verified:        ok"
    raw = invoke("inspect", "--json", str(out / "hello.hsp"))
    assert raw.exit_code == 0
    body = json.loads(raw.stdout)
    assert body["manifest"]["build_id"] == artifact.build_id
    assert body["sha256"] == artifact.sha256
    assert body["files"]["hello/jobs.py"] == len(artifact.files["hello/jobs.py"])


def test_inspect_refuses_corrupt_and_foreign_files(sample, tmp_path: Path) -> None:
    """A tampered member and a file that is no zip each fail with one Error: line."""
    plugin = sample("good/hello")
    out = tmp_path / "bin"
    assert invoke("build", str(plugin), str(out)).exit_code == 0
    original = out / "hello.hsp"
    with zipfile.ZipFile(original) as source, \
            zipfile.ZipFile(tmp_path / "hello.hsp", "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "hello/jobs.py":
                data = data.replace(b"shout(text)", b"shout(text)  # evil")
            target.writestr(info, data)
    tampered = invoke("inspect", str(tmp_path / "hello.hsp"))
    assert tampered.exit_code == 1
    assert tampered.stderr.splitlines() == [
        f"Error: artifact {tmp_path / 'hello.hsp'} does not verify: bytecode "
        "'hello/__pycache__/jobs.cpython-311.pyc' was not compiled from the shipped source (its "
        "source hash differs); member 'hello/jobs.py' does not match its RECORD hash and size; "
        "rebuild it with hotswap build".replace("cpython-311", sys.implementation.cache_tag)]
    foreign = tmp_path / "notes.hsp"
    foreign.write_text("hello")
    result = invoke("inspect", str(foreign))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: artifact {foreign} does not verify: not a hotswap artifact (not a zip "
        "archive); rebuild it with hotswap build"]
    assert "Traceback" not in result.stderr
    manifest = Manifest(name="bare", build_id="0", hotswap_version="0", python="3", live_prefix="x",
                        live_funcs={}, live_types={}, hooks=("on_load", "on_init"))
    (tmp_path / "bare.hsp").write_bytes(pack("bare", {"bare/__init__.py": b""}, manifest))
    bare = invoke("inspect", str(tmp_path / "bare.hsp"))
    assert bare.stderr.splitlines() == [
        f"Error: artifact {tmp_path / 'bare.hsp'} does not verify: missing functions: export, "
        "import_, invoke_func, on_free, reloadable; rebuild it with hotswap build"]
    missing = invoke("inspect", str(tmp_path / "gone.hsp"))
    assert missing.exit_code == 1
    assert missing.stderr.splitlines() == [
        f"Error: artifact {tmp_path / 'gone.hsp'} cannot be read (No such file or directory); "
        "check that it exists and is readable"]



def test_inspect_names_truncated_and_misnamed_files(sample, tmp_path: Path) -> None:
    """A cut-short artifact is called truncated, and a file not ending in .hsp is no artifact."""
    out = tmp_path / "bin"
    assert invoke("build", str(sample("good/hello")), str(out)).exit_code == 0
    raw = (out / "hello.hsp").read_bytes()
    cut = tmp_path / "hello.hsp"
    cut.write_bytes(raw[: len(raw) // 2])
    result = invoke("inspect", str(cut))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: artifact {cut} does not verify: the file is truncated: it starts as a zip but its "
        "end is missing; rebuild it with hotswap build"]
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    result = invoke("inspect", str(text))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: artifact {text} does not verify: not a hotswap artifact (the file name does not "
        "end in .hsp); rebuild it with hotswap build"]


def test_the_real_command_line(sample, tmp_path: Path) -> None:
    """The installed `hotswap` script builds; its last stdout line names the artifact."""
    plugin = sample("good/hello")
    script = Path(sys.executable).with_name("hotswap")
    done = subprocess.run([str(script), "build", "-v", str(plugin), str(tmp_path / "bin"), "--",
                           "-X", "CompileTimeString=abc"], capture_output=True, text=True,
                          check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == str(tmp_path / "bin" / "hello.hsp")
    relative = subprocess.run([str(script), "build", "plugins/hello", "rel"], capture_output=True,
                              text=True, check=False, cwd=tmp_path)
    assert relative.stdout.splitlines()[-1] == "rel/hello.hsp"
    static = subprocess.run([str(script), "build", "--staticLinking", "plugins/hello", "plugins"],
                            capture_output=True, text=True, check=False, cwd=tmp_path)
    assert static.returncode == 0, static.stderr
    assert static.stdout.splitlines() == ['Generating static code for plugin "hello"...',
                                          "plugins/hotswap_static_plugin_hello.py"]
    assert (tmp_path / "plugins" / "hotswap_static_plugins.py").is_file()
    failed = subprocess.run([str(script), "build", "plugins/nothere", "bin"],
                            capture_output=True, text=True, check=False, cwd=tmp_path)
    assert failed.returncode == 1
    assert failed.stderr == ('Error: plugin folder "plugins/nothere" does not exist; check the '
                             "<pluginDir> argument\n")


def test_own_root_package_imported_by_name(tmp_path: Path, load_artifact, monkeypatch) -> None:
    """import md, import md.util, their aliases and __import__("md.x"), at any depth and in any
    scope, bind the mounted version's modules, never a host package of the same name."""
    plugin = sample_plugin(tmp_path, "md")
    with (plugin / "__init__.py").open("a") as handle:
        handle.write("import md\nitself = md\n")
    (plugin / "util.py").write_text("VALUE = 'mounted'\n")
    (plugin / "cli.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import md\n"
        "def run():\n    import md.util\n    return md, md.util.VALUE\n")
    (plugin / "sub").mkdir()
    (plugin / "sub" / "__init__.py").write_text("")
    (plugin / "sub" / "deep.py").write_text(
        "import os, md.util as u; import md as root\n"
        "class Holder:\n    import md.cli\n"
        "dunder = __import__('md.util')\n")
    decoy = ModuleType("md")
    monkeypatch.setitem(sys.modules, "md", decoy)  # the host's own "md", which must stay unused
    out = tmp_path / "bin"
    result = invoke("build", str(plugin), str(out))
    assert result.exit_code == 0, result.output
    package = load_artifact(out / "md.hsp")
    mount = package.__name__
    assert package.itself is package
    deep = importlib.import_module(f"{mount}.sub.deep")
    util = sys.modules[f"{mount}.util"]
    assert deep.u is util and deep.root is package and deep.dunder is package
    assert deep.Holder.md is package and package.cli is sys.modules[f"{mount}.cli"]
    assert package.cli.run() == (package, "mounted")
    assert sys.modules["md"] is decoy and not hasattr(decoy, "util")
