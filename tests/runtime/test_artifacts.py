"""Artifacts that must be refused at load, with nothing changed."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from handmade import first_load_refused, hooks_source, pack_plugin

from hotswap_runtime.artifact import ArtifactError


def _rewrite(path: Path, change) -> None:
    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = change(info, source.read(info))
            if data is not None:
                target.writestr(info, data)
    path.write_bytes(out.getvalue())


def test_truncated_and_corrupt(plugin_dir: Path, events, make_swapper) -> None:
    """A truncated artifact and a file that is no zip are refused naming the artifact."""
    path = pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo")})
    path.write_bytes(path.read_bytes()[:200])
    error = first_load_refused(make_swapper)
    assert isinstance(error, ArtifactError) and str(path) in str(error)
    path.write_bytes(b"hello, not a zip")
    assert "not a hotswap artifact" in str(first_load_refused(make_swapper))


def test_tampered_refused_even_with_same_build_id(plugin_dir: Path, events, make_swapper) -> None:
    """A member changed after the build fails verification, even when build_id matches the running one."""
    path = pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo")})
    swapper = make_swapper()
    swapper.load_plugins()
    old = swapper.current()
    _rewrite(path, lambda info, data: data.replace(b'"v1"', b'"v9"') if info.filename == "foo/__init__.py" else data)
    with pytest.raises(ArtifactError, match="'foo/__init__.py' does not match its RECORD hash"):
        swapper.reload()
    assert swapper.current() is old


def test_path_traversal_member(plugin_dir: Path, events, make_swapper) -> None:
    """A member escaping the package folder is refused naming it."""
    path = pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo")})
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("foo/../evil.py", "x = 1")
    assert "contains '..'" in str(first_load_refused(make_swapper))


def test_zip_bomb(plugin_dir: Path, events, make_swapper) -> None:
    """A member compressing more than 100:1 is refused as a zip bomb."""
    path = pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo")})
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("foo/bomb.txt", b"\0" * (2 * 1024 * 1024))
    assert "zip bomb" in str(first_load_refused(make_swapper))


def test_renamed_artifact(plugin_dir: Path, events, make_swapper) -> None:
    """An artifact renamed after the build is refused: its manifest names another plugin."""
    pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo")}, file_name="bar")
    assert "lies outside bar/ and bar.hsp-info/" in str(first_load_refused(make_swapper))


def test_renamed_artifact_reported_once_with_its_real_name(plugin_dir: Path, events, make_swapper) -> None:
    """A renamed artifact gets one problem naming the plugin it holds, not one per member."""
    path = pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo")}, file_name="bar")
    assert str(first_load_refused(make_swapper)) == (
        f"artifact {path} does not verify: the file is 'bar.hsp' but everything in it lies "
        "outside bar/ and bar.hsp-info/: it holds plugin 'foo'; rename it back to foo.hsp (do not "
        "rename artifacts); rebuild it with hotswap build")


def test_missing_functions_sorted(plugin_dir: Path, events, make_swapper) -> None:
    """A hand-made artifact lacking hooks is refused listing them, sorted."""
    pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo")},
                hooks=["on_load", "on_init", "invoke_func", "import_", "reloadable"])
    error = first_load_refused(make_swapper)
    assert str(error) == ('plugin "foo": missing functions: export, on_free; define them in its root '
                          "package (foo/__init__.py) and rebuild it")
    assert error.plugin == "foo"


def test_unusable_signature(plugin_dir: Path, events, make_swapper) -> None:
    """A hook whose signature cannot take the runtime's call is refused naming plugin and hook."""
    source = hooks_source("foo") + "def on_load(data, extra):\n    pass\ndef invoke_func(name):\n    pass\n"
    pack_plugin(plugin_dir, "foo", {"__init__.py": source})
    error = first_load_refused(make_swapper)
    assert str(error) == ('plugin "foo": invoke_func(name) cannot be called as invoke_func(name, '
                          "*params); on_load(data, extra) cannot be called as on_load(data); fix the "
                          "signature and rebuild it")
    assert events.log == []


def test_import_error_in_plugin(plugin_dir: Path, events, make_swapper) -> None:
    """A plugin whose import raises fails naming the plugin and the import step."""
    pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo") + "import no_such_module_xyz\n"})
    error = first_load_refused(make_swapper)
    assert error.step == "import"
    assert str(error).startswith('plugin "foo": importing it failed: ModuleNotFoundError')


def test_duplicate_live_names(plugin_dir: Path, events, make_swapper) -> None:
    """A live function and a live type of the same name in two plugins fail naming both."""
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", extra="def live_x():\n    pass\n")})
    pack_plugin(plugin_dir, "b", {"__init__.py": hooks_source("b", extra="class live_x:\n    pass\n")})
    error = first_load_refused(make_swapper)
    assert str(error) == 'live name "live_x" is defined by plugins "a" and "b"; rename one of them'
    assert events.hooks("on_free") == ["b", "a"]


def test_duplicate_live_names_blame_a_plugin_that_clashes(plugin_dir: Path, events, make_swapper) -> None:
    """The error's .plugin is one of the clashing plugins, not another plugin that defines live names."""
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a", extra="def live_a():\n    pass\n")})
    pack_plugin(plugin_dir, "b", {"__init__.py": hooks_source("b", extra="def live_x():\n    pass\n")})
    pack_plugin(plugin_dir, "c", {"__init__.py": hooks_source("c", extra="def live_x():\n    pass\n")})
    error = first_load_refused(make_swapper)
    assert str(error) == 'live name "live_x" is defined by plugins "b" and "c"; rename one of them'
    assert (error.plugin, error.step) == ("b", "vault")
