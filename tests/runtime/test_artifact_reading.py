"""Reading artifact members straight from the snapshot: every zip check still refuses, and a
reload in a worker thread lets other threads run."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest
from handmade import hooks_source, pack_plugin

from hotswap_runtime import artifact
from hotswap_runtime.artifact import ArtifactError, verify_bytes


def _artifact(plugin_dir: Path) -> tuple[str, bytes]:
    path = pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo"),
                                           "data.txt": b"plain text " * 50})
    return str(path), path.read_bytes()


def _headers(raw: bytes, member: str) -> tuple[int, int]:
    """Offsets of the local and the central directory header of ``member``."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        local = archive.getinfo(member).header_offset
    name = member.encode()
    central = raw.index(b"PK\x01\x02", local + 30 + len(name))
    while raw[central + 46:central + 46 + len(name)] != name:
        central = raw.index(b"PK\x01\x02", central + 4)
    assert raw[local:local + 4] == b"PK\x03\x04"
    return local, central


def _recompressed(raw: bytes, methods: dict[str, int]) -> bytes:
    """The same members (so RECORD still matches), some stored with another method."""
    source = zipfile.ZipFile(io.BytesIO(raw))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            info.compress_type = methods.get(info.filename, info.compress_type)
            target.writestr(info, data)
    return out.getvalue()


def test_stored_and_deflated_members_read_back_as_zipfile_reads_them(plugin_dir: Path) -> None:
    """Stored and deflated members both verify and read back exactly as zipfile reads them."""
    path, raw = _artifact(plugin_dir)
    raw = _recompressed(raw, {"foo/data.txt": zipfile.ZIP_STORED})
    files = verify_bytes(path, raw).files
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        assert files == {m: archive.read(m) for m in archive.namelist() if m.startswith("foo/")}


def test_changed_stored_bytes_refused(plugin_dir: Path) -> None:
    """A stored member whose bytes were changed in place (size kept) does not verify."""
    path, raw = _artifact(plugin_dir)
    raw = bytearray(_recompressed(raw, {"foo/data.txt": zipfile.ZIP_STORED}))
    local, _ = _headers(bytes(raw), "foo/data.txt")
    raw[local + 30 + len("foo/data.txt") + 3] ^= 0x01
    with pytest.raises(ArtifactError, match=r"member 'foo/data.txt' does not match its RECORD"):
        verify_bytes(path, bytes(raw))


def test_bad_crc_of_record_refused(plugin_dir: Path) -> None:
    """RECORD (the one member no hash covers) is checked against its CRC-32."""
    path, raw = _artifact(plugin_dir)
    raw = bytearray(raw)
    local, central = _headers(bytes(raw), "foo.hsp-info/RECORD")
    for at in (local + 14, central + 16):
        raw[at] ^= 0x01
    with pytest.raises(ArtifactError, match=r"member 'foo.hsp-info/RECORD' cannot be read "
                                            r"\(Bad CRC-32"):
        verify_bytes(path, bytes(raw))


def test_corrupt_deflate_stream_refused(plugin_dir: Path) -> None:
    """A deflated member whose stream is damaged cannot be read."""
    path, raw = _artifact(plugin_dir)
    raw = bytearray(raw)
    local, _ = _headers(bytes(raw), "foo/data.txt")
    start = local + 30 + len("foo/data.txt")
    raw[start:start + 8] = b"\xff" * 8
    with pytest.raises(ArtifactError, match=r"member 'foo/data.txt' cannot be read"):
        verify_bytes(path, bytes(raw))


def test_local_header_name_mismatch_refused(plugin_dir: Path) -> None:
    """A local header naming another file than the central directory cannot be read."""
    path, raw = _artifact(plugin_dir)
    raw = bytearray(raw)
    local, _ = _headers(bytes(raw), "foo/data.txt")
    raw[local + 30:local + 30 + len("foo/data.txt")] = b"foo/evil.txt"
    with pytest.raises(ArtifactError, match=r"member 'foo/data.txt' cannot be read \(file name "
                                            r"in directory 'foo/data.txt' and header"):
        verify_bytes(path, bytes(raw))


def test_declared_size_mismatch_refused(plugin_dir: Path) -> None:
    """A member inflating to more bytes than both its headers declare cannot be read, and the
    inflate stops at the declared size (what it declares is all it may cost)."""
    path, raw = _artifact(plugin_dir)
    raw = bytearray(raw)
    local, central = _headers(bytes(raw), "foo/data.txt")
    size = struct.unpack_from("<L", raw, central + 24)[0]
    struct.pack_into("<L", raw, central + 24, size - 10)
    with pytest.raises(ArtifactError, match=r"member 'foo/data.txt' cannot be read \(its local "
                                            r"header disagrees"):
        verify_bytes(path, bytes(raw))
    struct.pack_into("<L", raw, local + 22, size - 10)
    with pytest.raises(ArtifactError, match=r"member 'foo/data.txt' cannot be read \(its deflate "
                                            rf"stream does not hold exactly the {size - 10} bytes"):
        verify_bytes(path, bytes(raw))


def test_encrypted_member_refused(plugin_dir: Path) -> None:
    """A member flagged as encrypted is refused naming it, not raised as a bare RuntimeError."""
    path, raw = _artifact(plugin_dir)
    raw = bytearray(raw)
    local, central = _headers(bytes(raw), "foo/data.txt")
    raw[local + 6] |= 0x01
    raw[central + 8] |= 0x01
    with pytest.raises(ArtifactError, match=r"member 'foo/data.txt' is encrypted"):
        verify_bytes(path, bytes(raw))


def test_big_stored_members_read_in_segments_verify_the_same(plugin_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A big artifact whose big members are stored is read member by member (no whole-file
    copy): the same files and digest as verifying its bytes in one piece, and a byte changed
    inside a big member, or before the first, is still refused."""
    import hashlib
    import os

    from hotswap_runtime.artifact import read_artifact

    blobs = {f"blob{i}.bin": os.urandom(1 << 20) for i in range(5)}
    path = pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo"), **blobs})
    raw = path.read_bytes()
    assert len(raw) > artifact._SEGMENTED_READ
    real, made = artifact._segments, []
    monkeypatch.setattr(artifact, "_segments", lambda *a: made.append(real(*a)) or made[-1])
    read = read_artifact(path)
    assert made[0] is not None and len(made[0].segments) == 12  # 5 blobs, 5 gaps, tail, dir
    whole = verify_bytes(str(path), raw)
    assert read.files == whole.files and read.sha256 == whole.sha256
    assert read.sha256 == hashlib.sha256(raw).hexdigest()
    assert all(type(data) is bytes for data in read.files.values())
    at = raw.index(blobs["blob2.bin"][:64]) + 1000
    path.write_bytes(raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1:])
    with pytest.raises(ArtifactError, match="member 'foo/blob2.bin' does not match its RECORD"):
        read_artifact(path)
    import threading

    assert not [t for t in threading.enumerate() if t.name == "hotswap-digest"]
    path.write_bytes(b"junk" + raw)
    with pytest.raises(ArtifactError, match="4 bytes of unknown data lie before the central"):
        read_artifact(path)
