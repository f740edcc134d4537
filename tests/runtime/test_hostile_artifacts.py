"""Hostile artifacts (issue 15): each test reproduces an attack a security review found and
checks it is now refused naming the artifact, without blocking, exhausting memory or running
the hostile code; the old version keeps serving."""

from __future__ import annotations

import importlib.util
import io
import json
import marshal
import os
import struct
import sys
import threading
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from handmade import first_load_refused, hooks_source, pack_plugin

from hotswap_runtime import HotswapError
from hotswap_runtime import artifact as artifact_module
from hotswap_runtime.artifact import (
    MAX_FILE_SIZE,
    ArtifactError,
    Manifest,
    pack,
    read_artifact,
    record_hash,
    verify_bytes,
)

MIB = 1024 * 1024


def _foo(plugin_dir: Path, **extra: str | bytes) -> Path:
    return pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo"), **extra})


def _with_member(path: Path, member: str, data: bytes, method: int) -> None:
    with zipfile.ZipFile(path, "a", compression=method) as archive:
        archive.writestr(member, data)


def _declare_size(raw: bytes, member: str, size: int) -> bytes:
    """``raw`` with ``member``'s uncompressed size, in both its headers, set to ``size``."""
    out = bytearray(raw)
    name = member.encode()
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        local = archive.getinfo(member).header_offset
    struct.pack_into("<L", out, local + 22, size)
    central = raw.index(b"PK\x01\x02")
    while raw[central + 46:central + 46 + len(name)] != name:
        central = raw.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<L", out, central + 24, size)
    return bytes(out)


def _peak_while(action) -> int:
    """Peak bytes Python allocated while ``action`` ran."""
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("method,kind", [(zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "LZMA")])
def test_bzip2_and_lzma_members_refused_before_decompression(plugin_dir: Path, method: int,
                                                             kind: str, make_swapper, events) -> None:
    """A member of another method, declaring 100 bytes but inflating to 8 MiB, is refused by its
    method before a byte is decompressed: no memory spike, from read_artifact, plan() and a
    load (the old version keeps serving)."""
    path = _foo(plugin_dir)
    swapper = make_swapper()
    swapper.load_plugins()
    old = swapper.current()
    _with_member(path, "foo/bomb.bin", b"\0" * (8 * MIB), method)
    path.write_bytes(_declare_size(path.read_bytes(), "foo/bomb.bin", 100))
    refused = f"member 'foo/bomb.bin' is compressed with {kind}; only stored and deflated " \
              "members are read"

    def read() -> None:
        with pytest.raises(ArtifactError, match=refused):
            read_artifact(path)

    def plan() -> None:
        assert refused in swapper.plan()[str(path)]

    def reload() -> None:
        with pytest.raises(ArtifactError, match=refused):
            swapper.reload()

    for action in (read, plan, reload):
        assert _peak_while(action) < 2 * MIB, action.__name__
    assert swapper.current() is old


def test_deflate_bomb_inflates_no_more_than_it_declares(plugin_dir: Path) -> None:
    """A deflated member declaring 100 bytes but holding 8 MiB costs 100 bytes, then is refused."""
    path = _foo(plugin_dir)
    _with_member(path, "foo/bomb.bin", b"\0" * (8 * MIB), zipfile.ZIP_DEFLATED)
    raw = _declare_size(path.read_bytes(), "foo/bomb.bin", 100)

    def read() -> None:
        with pytest.raises(ArtifactError, match="member 'foo/bomb.bin' cannot be read"):
            verify_bytes(str(path), raw)

    assert _peak_while(read) < len(raw) + 2 * MIB


def test_many_small_members_cannot_add_up_to_a_bomb(plugin_dir: Path, make_swapper, events) -> None:
    """Members each under the per-member ratio limit, 64 KiB of zeros apiece, add up to more
    than 100 times the file: refused as a whole (it verified before)."""
    files = {f"blob{i}.bin": b"\0" * (64 * 1024) for i in range(200)}
    path = _foo(plugin_dir, **files)
    assert path.stat().st_size * 100 < 200 * 64 * 1024
    error = first_load_refused(make_swapper)
    assert f"artifact {path} does not verify" in str(error)
    assert "times the file's" in str(error) and "(zip bomb?)" in str(error)


def test_file_over_the_limit_refused_before_it_is_read(plugin_dir: Path, make_swapper, events) -> None:
    """A 64 GiB sparse artifact is refused from its size, not read (a MemoryError before)."""
    path = plugin_dir / "huge.hsp"
    with open(path, "wb") as handle:
        handle.truncate(64 * 1024 * MIB)
    error = first_load_refused(make_swapper)
    assert isinstance(error, ArtifactError)
    assert str(error).startswith(f"artifact {path} is {64 * 1024 * MIB} bytes, over the "
                                 f"{MAX_FILE_SIZE} bytes an artifact may have")
    plan = make_swapper().plan()
    assert plan[str(path)].startswith(f"error: artifact {path} is ")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_and_folder_named_hsp_are_errors_naming_them(plugin_dir: Path, make_swapper,
                                                          events) -> None:
    """A FIFO or a folder named like an artifact is an error naming it, and never blocks; the
    running plugin it replaced keeps serving (it was silently dropped before)."""
    _foo(plugin_dir)
    swapper = make_swapper()
    swapper.load_plugins()
    old = swapper.current()
    (plugin_dir / "foo.hsp").unlink()
    os.mkfifo(plugin_dir / "foo.hsp")
    outcome: list[BaseException] = []

    def reload() -> None:
        try:
            swapper.reload()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            outcome.append(exc)

    worker = threading.Thread(target=reload, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "reading a FIFO blocked the reload"
    assert isinstance(outcome[0], ArtifactError)
    assert str(outcome[0]).startswith(f"artifact {plugin_dir / 'foo.hsp'} is a FIFO (named pipe), "
                                      "not a regular file")
    assert swapper.current() is old
    (plugin_dir / "foo.hsp").unlink()
    (plugin_dir / "foo.hsp").mkdir()
    with pytest.raises(ArtifactError, match=rf"artifact {plugin_dir / 'foo.hsp'} is a folder"):
        swapper.reload()
    assert swapper.current() is old
    assert "is a folder, not a regular file" in swapper.plan()[str(plugin_dir / "foo.hsp")]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_swapped_in_after_the_check_never_blocks(plugin_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A FIFO swapped in between the type check and the open is opened without blocking and
    refused from the open file itself."""
    fifo = plugin_dir / "foo.hsp"
    os.mkfifo(fifo)
    real = artifact_module._refuse_file
    calls: list[str] = []

    def first_check_passes(path: str, info: os.stat_result) -> None:
        calls.append(path)
        if len(calls) > 1:  # the check on the open file: the real one
            real(path, info)

    monkeypatch.setattr(artifact_module, "_refuse_file", first_check_passes)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            read_artifact(fifo)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            outcome.append(exc)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the open so the thread ends, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail("opening a FIFO blocked")
    assert len(calls) == 2 and "is a FIFO (named pipe)" in str(outcome[0])


def test_junk_before_the_first_member_refused(plugin_dir: Path) -> None:
    """Bytes prepended to a valid artifact (zipfile still reads it) are refused."""
    path = _foo(plugin_dir)
    raw = b"#!/bin/sh\necho hidden\n" + path.read_bytes()
    assert zipfile.ZipFile(io.BytesIO(raw)).read("foo/__init__.py")
    with pytest.raises(ArtifactError, match="22 bytes of unknown data lie before the central directory"):
        verify_bytes(str(path), raw)


def test_junk_after_the_central_directory_refused(plugin_dir: Path) -> None:
    """Bytes appended after the end record (or hidden as a zip comment) are refused."""
    path = _foo(plugin_dir)
    raw = path.read_bytes()
    with pytest.raises(ArtifactError, match="15 bytes follow the end of the central directory"):
        verify_bytes(str(path), raw + b"hidden payload!")
    commented = raw[:-2] + struct.pack("<H", 7) + b"comment"
    with pytest.raises(ArtifactError, match="7 bytes follow the end of the central directory"):
        verify_bytes(str(path), commented)


def _pyc(source: bytes, member: str, hashed: bytes) -> bytes:
    code = compile(source, member, "exec", dont_inherit=True)
    return (importlib.util.MAGIC_NUMBER + (1).to_bytes(4, "little")
            + importlib.util.source_hash(hashed) + marshal.dumps(code))


def _swap_pyc(path: Path, member: str, pyc: bytes) -> None:
    """Rewrite the artifact at ``path`` with ``member`` replaced and RECORD updated to match."""
    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    members = {info.filename: source.read(info) for info in source.infolist()}
    members[member] = pyc
    name = path.stem
    manifest = Manifest.from_json(members[f"{name}.hsp-info/MANIFEST.json"])
    files = {m: d for m, d in members.items() if m.startswith(f"{name}/")}
    path.write_bytes(pack(name, files, manifest))


def test_bytecode_of_other_code_refused(plugin_dir: Path, make_swapper, events) -> None:
    """A harmless .py shipped with the .pyc of other code (RECORD updated to match) does not run:
    the pyc's source hash is not that of the shipped source."""
    harmless = hooks_source("foo")
    path = _foo(plugin_dir)
    evil = harmless.replace('STAMP = "v1"', 'STAMP = "evil"').encode()
    member = f"foo/__pycache__/__init__.{sys.implementation.cache_tag}.pyc"
    _swap_pyc(path, member, _pyc(evil, "foo/__init__.py", evil))
    error = first_load_refused(make_swapper)
    assert f"bytecode {member!r} was not compiled from the shipped source" in str(error)
    assert str(path) in str(error)


def test_timestamp_pyc_refused(plugin_dir: Path) -> None:
    """A pyc for this Python must be hash-based: a timestamp pyc carries no source hash."""
    path = _foo(plugin_dir)
    member = f"foo/__pycache__/__init__.{sys.implementation.cache_tag}.pyc"
    source = hooks_source("foo").encode()
    code = compile(source, "foo/__init__.py", "exec", dont_inherit=True)
    pyc = importlib.util.MAGIC_NUMBER + b"\0" * 12 + marshal.dumps(code)
    _swap_pyc(path, member, pyc)
    with pytest.raises(ArtifactError, match="is not a hash-based pyc"):
        read_artifact(path)


def _with_manifest(path: Path, manifest: bytes) -> bytes:
    """The artifact's bytes with MANIFEST.json replaced (RECORD updated to match)."""
    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    out = io.BytesIO()
    manifest_path = "foo.hsp-info/MANIFEST.json"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == manifest_path:
                data = manifest
            elif info.filename.endswith("/RECORD"):
                lines = [line for line in data.decode().splitlines()
                         if not line.startswith(manifest_path + ",")]
                lines.insert(-1, f"{manifest_path},{record_hash(manifest)},{len(manifest)}")
                data = ("\n".join(lines) + "\n").encode()
            target.writestr(info.filename, data)
    return out.getvalue()


def test_manifest_nested_deep_refused_naming_the_artifact(plugin_dir: Path) -> None:
    """A manifest nested 5,000 deep is refused naming the artifact (a RecursionError before)."""
    path = _foo(plugin_dir)
    text = read_artifact(path).manifest.to_json().decode()
    text = text.replace('"stamps": {}', '"stamps": ' + "[" * 5000 + "]" * 5000)
    raw = _with_manifest(path, text.encode())
    with pytest.raises(ArtifactError, match=rf"artifact {path} does not verify: manifest is "
                                            "nested deeper than 32 levels"):
        verify_bytes(str(path), raw)


def test_manifest_over_a_mebibyte_refused(plugin_dir: Path) -> None:
    path = _foo(plugin_dir)
    body = json.loads(read_artifact(path).manifest.to_json())
    body["stamps"] = {"big": "x" * (2 * MIB)}
    raw = _with_manifest(path, json.dumps(body).encode())
    with pytest.raises(ArtifactError, match="MANIFEST.json is larger than 1048576 bytes"):
        verify_bytes(str(path), raw)


def test_manifest_not_written_by_the_build_refused(plugin_dir: Path) -> None:
    """Valid JSON with every field, but not the JSON the build writes (an extra field, other
    spacing) is refused."""
    path = _foo(plugin_dir)
    body = json.loads(read_artifact(path).manifest.to_json())
    for text in (json.dumps({**body, "extra": 1}, indent=2, sort_keys=True) + "\n",
                 json.dumps(body)):
        with pytest.raises(ArtifactError, match="manifest is not the JSON hotswap build writes"):
            verify_bytes(str(path), _with_manifest(path, text.encode()))


def test_failed_reload_on_hostile_file_keeps_old_version(plugin_dir: Path, make_swapper,
                                                         events) -> None:
    """Every refusal above is a HotswapError at reload, with the old version still serving."""
    path = _foo(plugin_dir)
    swapper = make_swapper()
    swapper.load_plugins()
    old = swapper.current()
    path.write_bytes(b"junk" + path.read_bytes())
    with pytest.raises(HotswapError, match=str(path)):
        swapper.reload()
    assert swapper.current() is old
    assert old.find_plugin("foo").invoke_func("stamp") == "v1"


_PLANTER = '''
import sys, types
from hotswap_runtime.importer import mount_name

def _plant():
    load = int(__name__.rsplit("_", 1)[1])   # this load's number, shared by every fresh plugin
    evil = types.ModuleType(mount_name("b", load) + ".jobs")
    evil.answer = lambda: "evil"
    sys.modules[evil.__name__] = evil
'''


def _victim(plugin_dir: Path) -> None:
    pack_plugin(plugin_dir, "b", {
        "__init__.py": hooks_source("b").replace(
            'if name == "stamp":', 'if name == "answer":\n        return jobs.answer()\n    if name == "stamp":')
        + "\nfrom . import jobs\n",
        "jobs.py": "def answer():\n    return 'real'\n",
    })


@pytest.mark.parametrize("when", ["import", "on_load"])
def test_a_plugin_cannot_plant_a_module_under_another_plugins_name(plugin_dir: Path, make_swapper,
                                                                   events, when: str) -> None:
    """Plugin a puts a module under b's mounted name in the same load, before b imports it or
    after (from a hook): the load is refused naming b, and nothing of it stays."""
    _victim(plugin_dir)
    planter = _PLANTER + ("\n_plant()\n" if when == "import" else "")
    extra = "" if when == "import" else (
        "\n_real_on_load = on_load\ndef on_load(data):\n    _plant()\n    _real_on_load(data)\n")
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a") + planter + extra})
    before = set(sys.modules)
    error = first_load_refused(make_swapper)
    assert error.plugin == "b"
    assert "under its mounted name did not come from its artifact" in str(error)
    assert ".jobs" in str(error)
    assert not [key for key in set(sys.modules) - before if key.startswith("_hotswap_")]


def test_plugins_that_plant_nothing_load(plugin_dir: Path, make_swapper, events) -> None:
    _victim(plugin_dir)
    pack_plugin(plugin_dir, "a", {"__init__.py": hooks_source("a") + _PLANTER})
    swapper = make_swapper()
    swapper.load_plugins()
    assert swapper.current().find_plugin("b").invoke_func("answer") == "real"


def test_a_claimed_build_id_with_other_code_is_a_fresh_version(plugin_dir: Path, make_swapper,
                                                               events) -> None:
    """New code carrying the running version's build_id is loaded (it was reported unchanged
    and never ran); the same contents are still unchanged, whatever the manifest says besides."""
    path = pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo")}, build_id="same")
    swapper = make_swapper()
    swapper.load_plugins()
    pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo", stamp="v2")},
                build_id="same")
    assert swapper.plan() == {str(path): "ok"}
    assert swapper.reload()[str(path)] == "ok"
    assert swapper.current().find_plugin("foo").invoke_func("stamp") == "v2"
    # same files and build id, another manifest (a git commit recorded): unchanged
    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    members = {info.filename: source.read(info) for info in source.infolist()}
    manifest = Manifest.from_json(members["foo.hsp-info/MANIFEST.json"])
    files = {m: d for m, d in members.items() if m.startswith("foo/")}
    from dataclasses import replace

    path.write_bytes(pack("foo", files, replace(manifest, git_commit="abc123")))
    assert swapper.plan() == {str(path): "unchanged"}
    assert swapper.reload()[str(path)] == "unchanged"


def test_a_member_repeated_is_named_once(plugin_dir: Path) -> None:
    """Three copies of one member are one problem, said once, not one line per copy."""
    path = _foo(plugin_dir)
    _with_member(path, "foo/x.py", b"X = 1\n", zipfile.ZIP_STORED)
    for _ in range(2):
        with pytest.warns(UserWarning, match="Duplicate name"):
            _with_member(path, "foo/x.py", b"X = 1\n", zipfile.ZIP_STORED)
    with pytest.raises(ArtifactError) as info:
        read_artifact(path)
    assert info.value.problems == ("member 'foo/x.py' appears twice",)
