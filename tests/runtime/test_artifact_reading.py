"""Reading artifact members straight from the snapshot: every zip check still refuses, and a
reload in a worker thread lets other threads run."""

from __future__ import annotations

import io
import struct
import threading
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


def _yields(monkeypatch: pytest.MonkeyPatch, steps: list[tuple[float, float]],
            main: bool = False) -> list[float]:
    """Call ``yield_gil`` at each (wall clock, thread CPU time) in ``steps``, in a worker thread
    (or the main one); the wall times at which it slept."""
    clock = [0.0, 0.0]
    slept: list[float] = []
    monkeypatch.setattr(artifact.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(artifact.time, "thread_time", lambda: clock[1])
    monkeypatch.setattr(artifact.time, "sleep", lambda seconds: slept.append(clock[0]))

    def run() -> None:
        for wall, cpu in steps:
            clock[0], clock[1] = wall, cpu
            artifact.yield_gil()

    if main:
        run()
    else:
        worker = threading.Thread(target=run)
        worker.start()
        worker.join()
    return slept


MS = 0.001


def test_worker_thread_alone_never_yields(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker thread that had the CPU all along (nobody else ran) never pays for a sleep."""
    steps = [(1.0 + i * MS / 2, i * MS / 2) for i in range(400)]
    assert _yields(monkeypatch, steps) == []


def test_worker_thread_yields_while_others_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once another thread ran within an interval, the worker sleeps(0) once per interval for
    CONTENDED_FOR, then stops while nobody else runs."""
    lost = artifact.CONTENTION * 2   # another thread held the GIL that long in the first window
    steps = [(1.0, 0.0), (1.0 + MS + lost, MS)]
    step = 1.01 * MS
    steps += [(1.0 + MS + lost + i * step, MS + i * step) for i in range(1, 400)]
    slept = _yields(monkeypatch, steps)
    assert slept[0] == 1.0 + MS + lost
    assert len(slept) == pytest.approx(artifact.CONTENDED_FOR / step, abs=2)
    assert slept[-1] - slept[0] <= artifact.CONTENDED_FOR


def test_pause_between_loads_is_no_contention(monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle gap between two loads (no calls for a while) does not make the worker yield."""
    steps = [(1.0, 0.0), (1.0 + MS, MS), (5.0, 2 * MS), (5.0 + MS, 3 * MS), (5.0 + 2 * MS, 4 * MS)]
    assert _yields(monkeypatch, steps) == []


def test_main_thread_never_yields(monkeypatch: pytest.MonkeyPatch) -> None:
    """The main thread (a synchronous reload) never sleeps, even while others run."""
    steps = [(1.0 + i * MS, 0.0) for i in range(50)]
    assert _yields(monkeypatch, steps, main=True) == []
