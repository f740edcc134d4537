"""Fuzzing the artifact reader (issue 15): valid artifacts mutated at random — bytes, zip header
fields, RECORD lines, the manifest — must each give a clean load or an ``ArtifactError`` /
``HotswapError`` naming the artifact: never another exception, a hang or a memory spike.

The budget is a hypothesis settings profile: ``hotswap-ci`` (the default, about 30 s in all on
this machine) and ``hotswap-fuzz`` (``make fuzz``: many more examples). Choose with
``HOTSWAP_FUZZ_PROFILE``. No example database is written (deterministic CI, no files in the
tree); a failure prints the example that reproduces it.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from handmade import hooks_source, pack_plugin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotswap_runtime import HotswapError, PluginManagerSwapper
from hotswap_runtime.artifact import ArtifactError, record_hash, verify_bytes
from hotswap_runtime.signing import SigningKey, generate_key

settings.register_profile("hotswap-ci", max_examples=1000, deadline=None, database=None,
                          derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
settings.register_profile("hotswap-fuzz", parent=settings.get_profile("hotswap-ci"),
                          max_examples=20_000, derandomize=False)
PROFILE = settings.get_profile(os.environ.get("HOTSWAP_FUZZ_PROFILE", "hotswap-ci"))

#: what reading a mutated 10 KB artifact may allocate at most (bombs are bounded far below)
MEMORY_LIMIT = 32 * 1024 * 1024


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A valid, signed artifact with modules, a subpackage, bytecode and a data file."""
    folder = tmp_path_factory.mktemp("fuzz")
    key = folder / "key"
    generate_key(key)
    path = pack_plugin(folder / "plugins", "foo", {
        "__init__.py": hooks_source("foo") + "from . import jobs\n",
        "jobs.py": "def live_run(x):\n    return x * 2\n\nclass Live_Job:\n    pass\n",
        "sub/__init__.py": "VALUE = 1\n",
        "data.txt": b"plain text " * 40,
        "blob.bin": os.urandom(300),
    })
    raw = path.read_bytes()
    source = zipfile.ZipFile(io.BytesIO(raw))
    members = {info.filename: source.read(info) for info in source.infolist()}
    from hotswap_runtime.artifact import Manifest, pack

    manifest = Manifest.from_json(members["foo.hsp-info/MANIFEST.json"])
    files = {m: d for m, d in members.items() if m.startswith("foo/")}
    raw = pack("foo", files, manifest, sign=SigningKey.load(key).sign_record)
    path.write_bytes(raw)
    verify_bytes(str(path), raw)
    return path, raw


def _check(path: Path, raw: bytes) -> None:
    """The property: a clean load, or an error naming the artifact; bounded memory."""
    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.append(verify_bytes(str(path), raw))
        except ArtifactError as exc:
            assert str(path) in str(exc), exc
            assert exc.path == str(path)
            outcome.append(exc)

    tracemalloc.start()
    try:
        read()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_LIMIT, f"reading allocated {peak} bytes"
    if isinstance(outcome[0], ArtifactError):
        return
    # it verified: it must also load (or fail as a HotswapError), through the real swapper
    folder = path.parent / "load"
    folder.mkdir(exist_ok=True)
    (folder / path.name).write_bytes(raw)
    swapper = PluginManagerSwapper(folder, free_delay=0)
    try:
        swapper.load_plugins()
    except HotswapError as exc:
        # the load's own errors name the plugin (their .plugin) or the artifact file
        assert exc.plugin == "foo" or str(folder / path.name) in str(exc), exc
    finally:
        swapper.close()


def _zip_offsets(raw: bytes) -> list[tuple[int, int]]:
    """(local header offset, central header offset) of every member."""
    infos = zipfile.ZipFile(io.BytesIO(raw)).infolist()
    central = raw.index(b"PK\x01\x02")
    out = []
    for info in infos:
        out.append((info.header_offset, central))
        name_length, extra_length, comment_length = struct.unpack_from("<3H", raw, central + 28)
        central += 46 + name_length + extra_length + comment_length
    return out


@given(data=st.data())
@settings(PROFILE)
def test_random_bytes_changed(base, data) -> None:
    path, raw = base
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(mutated) - 1))
        mutated[at] = data.draw(st.integers(0, 255))
    _check(path, bytes(mutated))


@given(data=st.data())
@settings(PROFILE)
def test_bytes_cut_inserted_or_appended(base, data) -> None:
    path, raw = base
    at = data.draw(st.integers(0, len(raw)))
    junk = data.draw(st.binary(max_size=64))
    kind = data.draw(st.sampled_from(["cut", "insert", "replace-tail"]))
    if kind == "cut":
        mutated = raw[:at] + raw[at + data.draw(st.integers(1, 200)):]
    elif kind == "insert":
        mutated = raw[:at] + junk + raw[at:]
    else:
        mutated = raw[:at] + junk
    _check(path, mutated)


#: (offset in the header, struct format) of the fields worth lying about
_LOCAL_FIELDS = [(4, "<H"), (6, "<H"), (8, "<H"), (14, "<L"), (18, "<L"), (22, "<L"), (26, "<H"),
                 (28, "<H")]
_CENTRAL_FIELDS = [(8, "<H"), (10, "<H"), (16, "<L"), (20, "<L"), (24, "<L"), (28, "<H"),
                   (30, "<H"), (32, "<H"), (38, "<L"), (42, "<L")]
_END_FIELDS = [(4, "<H"), (6, "<H"), (8, "<H"), (10, "<H"), (12, "<L"), (16, "<L"), (20, "<H")]


@given(data=st.data())
@settings(PROFILE)
def test_zip_header_fields_lie(base, data) -> None:
    """Methods (bzip2, LZMA...), flags, sizes, offsets, name and extra lengths set at random."""
    path, raw = base
    mutated = bytearray(raw)
    offsets = _zip_offsets(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["local", "central", "end"]))
        if kind == "end":
            header, fields = len(raw) - 22, _END_FIELDS
        else:
            local, central = data.draw(st.sampled_from(offsets))
            header, fields = (local, _LOCAL_FIELDS) if kind == "local" else (central, _CENTRAL_FIELDS)
        at, fmt = data.draw(st.sampled_from(fields))
        limit = 0xFFFF if fmt == "<H" else 0xFFFFFFFF
        value = data.draw(st.one_of(st.sampled_from([0, 1, 8, 12, 14, 93, 0x800, limit]),
                                    st.integers(0, limit)))
        struct.pack_into(fmt, mutated, header + at, value)
    _check(path, bytes(mutated))


def _repacked(raw: bytes, replace: dict[str, bytes]) -> bytes:
    """The same members (deflated by zipfile), some replaced."""
    source = zipfile.ZipFile(io.BytesIO(raw))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, replace.get(info.filename, source.read(info)))
    return out.getvalue()


@given(data=st.data())
@settings(PROFILE)
def test_record_lines_edited(base, data) -> None:
    path, raw = base
    record = zipfile.ZipFile(io.BytesIO(raw)).read("foo.hsp-info/RECORD").decode()
    lines = record.splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["drop", "duplicate", "swap-hash", "size", "garbage",
                                        "path", "fields"]))
        path_, digest, size = (lines[i].split(",") + ["", "", ""])[:3]
        if op == "drop":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap-hash":
            j = data.draw(st.integers(0, len(lines) - 1))
            lines[i] = ",".join([path_, lines[j].split(",")[1] if "," in lines[j] else "", size])
        elif op == "size":
            lines[i] = ",".join([path_, digest, data.draw(st.sampled_from(["", "-1", "0", "9" * 30,
                                                                           "x", str(size) + " "]))])
        elif op == "garbage":
            lines.insert(i, data.draw(st.text(max_size=40)))
        elif op == "path":
            new = data.draw(st.sampled_from(["/etc/passwd", "foo/../x", "foo\\x", "bar/x",
                                             "foo.hsp-info/SIGNATURE", "foo/sub"]))
            lines[i] = ",".join([new, digest, size])
        else:
            lines[i] = ",".join([path_] * data.draw(st.integers(0, 5)))
        if not lines:
            break
    _check(path, _repacked(raw, {"foo.hsp-info/RECORD": ("\n".join(lines) + "\n").encode()}))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10),
                                                                      children, max_size=4),
    max_leaves=20)


@given(data=st.data())
@settings(PROFILE)
def test_manifest_edited(base, data) -> None:
    """Fields removed, retyped or added, written as the build would or otherwise, deeply nested
    or huge; RECORD updated to match so the manifest itself is what is judged."""
    path, raw = base
    manifest_path = "foo.hsp-info/MANIFEST.json"
    body = json.loads(zipfile.ZipFile(io.BytesIO(raw)).read(manifest_path))
    key = data.draw(st.sampled_from([*sorted(body), "extra"]))
    op = data.draw(st.sampled_from(["set", "drop", "deep"]))
    if op == "drop":
        body.pop(key, None)
    elif op == "deep":
        depth = data.draw(st.integers(30, 3000))
        body[key] = json.loads("[" * min(depth, 900) + "]" * min(depth, 900))
    else:
        body[key] = data.draw(_JSON)
    canonical = data.draw(st.booleans())
    text = (json.dumps(body, indent=2, sort_keys=True) + "\n") if canonical else json.dumps(body)
    if op == "deep" and depth > 900:  # deeper than json can write: made by hand
        text = text.replace('"' + key + '": [', '"' + key + '": ' + "[" * (depth - 899), 1)
        text = text.replace("]", "]" * (depth - 899), 1)
    manifest = text.encode()
    record = zipfile.ZipFile(io.BytesIO(raw)).read("foo.hsp-info/RECORD").decode().splitlines()
    record = [f"{manifest_path},{record_hash(manifest)},{len(manifest)}"
              if line.startswith(manifest_path + ",") else line for line in record]
    _check(path, _repacked(raw, {manifest_path: manifest,
                                 "foo.hsp-info/RECORD": ("\n".join(record) + "\n").encode()}))
