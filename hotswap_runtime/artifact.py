"""The ``.hsp`` artifact format: written by ``hotswap build``, read and verified by the runtime.

Design note: this module is the single definition of the format. The build imports it to pack
(``pack``/``write_atomically``) and ``hotswap inspect`` uses ``read_artifact`` exactly as the
runtime does, so what the build writes and what the runtime accepts cannot drift apart.
Verification parses the central directory with ``zipfile`` but reads stored and deflated
members straight from the bytes (``_read_member``: the same local-header, size and CRC checks,
without a file object per member), since it runs on every load; it calls ``yield_gil`` between
members, as the importer does between modules.

Layout of ``<name>.hsp``, a zip archive in the spirit of a wheel::

    <name>/...                                   the rewritten package: sources, --include files
    <name>/[sub/]__pycache__/<stem>.<tag>[.opt-N].pyc
                                                 hash-based (unchecked) bytecode of every .py,
                                                 for the building Python (``tag`` = cache_tag)
    <name>/_hotswap_registration.py              generated: HOOKS, LIVE_FUNCS, LIVE_TYPES dicts
    <name>.hsp-info/MANIFEST.json                see ``Manifest``
    <name>.hsp-info/RECORD                       ``path,sha256=<b64>,size`` per other member

Members are sorted (the info folder last, RECORD the very last), stored with a fixed timestamp
(1980-01-01) and mode 0644, so identical inputs give byte-identical files.

The registration module (``REGISTRATION_MODULE``) defines three dicts: ``HOOKS`` (the seven
required functions, plus ``self_test`` when the plugin has one), ``LIVE_FUNCS`` and
``LIVE_TYPES`` (live name -> object). Importing it imports the plugin's root package.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import keyword
import os
import stat
import struct
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ArtifactError

try:
    import fcntl
except ImportError:  # Windows: temporaries are not locked, and never swept
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "ARTIFACT_SUFFIX",
    "FORMAT_VERSION",
    "HOOK_CALLS",
    "REGISTRATION_MODULE",
    "REQUIRED_HOOKS",
    "OPTIONAL_HOOKS",
    "Artifact",
    "Manifest",
    "info_dir",
    "pack",
    "read_artifact",
    "record_hash",
    "verify_bytes",
    "sweep_temporaries",
    "write_atomically",
]

ARTIFACT_SUFFIX = ".hsp"
FORMAT_VERSION = 1
REGISTRATION_MODULE = "_hotswap_registration"
#: the seven functions every plugin's root package provides, with the arguments the runtime passes
REQUIRED_HOOKS: dict[str, int] = {
    "on_load": 1,
    "on_init": 1,
    "on_free": 0,
    "export": 0,
    "import_": 0,
    "invoke_func": -1,  # invoke_func(name, *params): one positional at least, then any number
    "reloadable": 0,
}
OPTIONAL_HOOKS: dict[str, int] = {"self_test": 1}
#: how the runtime calls each hook, for the build's and the runtime's signature errors
HOOK_CALLS: dict[str, str] = {
    "on_load": "on_load(data)",
    "on_init": "on_init(vault)",
    "on_free": "on_free()",
    "export": "export()",
    "import_": "import_()",
    "invoke_func": "invoke_func(name, *params)",
    "reloadable": "reloadable()",
    "self_test": "self_test(vault)",
}

MAX_TOTAL_SIZE = 256 * 1024 * 1024
MAX_MANIFEST_SIZE = 1024 * 1024
MAX_COMPRESSION_RATIO = 100
#: members smaller than this are not held to the compression ratio (a 10 KiB run of spaces is
#: no bomb, but it compresses 200:1)
RATIO_EXEMPT_SIZE = 64 * 1024
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
_MANIFEST = "MANIFEST.json"
_RECORD = "RECORD"


def info_dir(name: str) -> str:
    """The metadata folder of plugin ``name`` inside its artifact."""
    return f"{name}{ARTIFACT_SUFFIX}-info"


def record_hash(data: bytes) -> str:
    """The RECORD form of a digest: ``sha256=`` and urlsafe base64 without padding."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


@dataclass(frozen=True)
class Manifest:
    """What ``MANIFEST.json`` says of an artifact.

    ``live_funcs`` and ``live_types`` map each live name to the dotted module, inside the
    artifact, that defines it (``foo.jobs``). ``bytecode`` is ``None`` when the artifact ships
    sources only; otherwise ``{"cache_tag": ..., "magic": <hex>, "optimize": 0|1|2}``.
    """

    name: str
    build_id: str
    hotswap_version: str
    python: str
    live_prefix: str
    live_funcs: Mapping[str, str]
    live_types: Mapping[str, str]
    hooks: tuple[str, ...]
    bytecode: Mapping[str, Any] | None = None
    import_name: str = ""
    stamps: Mapping[str, str] = field(default_factory=dict)
    git_commit: str | None = None

    def to_json(self) -> bytes:
        """The manifest as the build writes it: sorted keys, two-space indent, final newline."""
        body = {
            "format": FORMAT_VERSION,
            "name": self.name,
            "build_id": self.build_id,
            "hotswap_version": self.hotswap_version,
            "python": self.python,
            "live_prefix": self.live_prefix,
            "live_funcs": dict(sorted(self.live_funcs.items())),
            "live_types": dict(sorted(self.live_types.items())),
            "hooks": sorted(self.hooks),
            "bytecode": dict(self.bytecode) if self.bytecode is not None else None,
            "import_name": self.import_name,
            "stamps": dict(sorted(self.stamps.items())),
            "git_commit": self.git_commit,
        }
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        """Parse and check a manifest; raise ``ValueError`` saying what is wrong."""
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"manifest is not valid JSON ({exc})") from None
        if not isinstance(body, dict):
            raise ValueError("manifest is not a JSON object")
        if body.get("format") != FORMAT_VERSION:
            raise ValueError(f"manifest format {body.get('format')!r} is not {FORMAT_VERSION}; "
                             "rebuild the plugin with this version of hotswap")
        strings = ("name", "build_id", "hotswap_version", "python", "live_prefix", "import_name")
        for key in strings:
            if not isinstance(body.get(key), str):
                raise ValueError(f"manifest field {key!r} is missing or not a string")
        for key in ("live_funcs", "live_types", "stamps"):
            value = body.get(key)
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ValueError(f"manifest field {key!r} is missing or not an object of strings")
        hooks = body.get("hooks")
        if not isinstance(hooks, list) or not all(isinstance(h, str) for h in hooks):
            raise ValueError("manifest field 'hooks' is missing or not a list of strings")
        bytecode = body.get("bytecode")
        if bytecode is not None and not (
            isinstance(bytecode, dict)
            and isinstance(bytecode.get("cache_tag"), str)
            and isinstance(bytecode.get("magic"), str)
            and bytecode.get("optimize") in (0, 1, 2)
        ):
            raise ValueError("manifest field 'bytecode' is not null or "
                             "{cache_tag, magic, optimize}")
        git_commit = body.get("git_commit")
        if git_commit is not None and not isinstance(git_commit, str):
            raise ValueError("manifest field 'git_commit' is not null or a string")
        return cls(
            name=body["name"],
            build_id=body["build_id"],
            hotswap_version=body["hotswap_version"],
            python=body["python"],
            live_prefix=body["live_prefix"],
            live_funcs=body["live_funcs"],
            live_types=body["live_types"],
            hooks=tuple(hooks),
            bytecode=bytecode,
            import_name=body["import_name"],
            stamps=body["stamps"],
            git_commit=git_commit,
        )


@dataclass(frozen=True)
class Artifact:
    """One artifact, read once and verified; ``files`` holds every member under ``<name>/``.

    Attributes:
        path: the absolute path it was read from.
        name: the plugin name (the file's stem, equal to the manifest's).
        sha256: hex digest of the whole file.
        manifest: the parsed manifest.
        files: member path (``foo/jobs.py``) -> contents, for every member of the package.
    """

    path: str
    name: str
    sha256: str
    manifest: Manifest
    files: Mapping[str, bytes]

    @property
    def build_id(self) -> str:
        """The manifest's ``build_id``: equal ids mean the same build."""
        return self.manifest.build_id


def _zipinfo(member: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(member, date_time=ZIP_TIMESTAMP)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, so the mode below is read back the same everywhere
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    return info


def pack(name: str, files: Mapping[str, bytes], manifest: Manifest, *,
         compresslevel: int = 6) -> bytes:
    """Return the bytes of a deterministic artifact holding ``files`` (paths under ``name/``).

    RECORD is computed here; MANIFEST.json and RECORD are written last. ``compresslevel``
    (deflate, 0-9) trades size for speed; the same level gives the same bytes.
    """
    meta = info_dir(name)
    manifest_path = f"{meta}/{_MANIFEST}"
    record_path = f"{meta}/{_RECORD}"
    members = sorted(files.items())
    members.append((manifest_path, manifest.to_json()))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for path, data in members:
        writer.writerow([path, record_hash(data), len(data)])
    writer.writerow([record_path, "", ""])
    members.append((record_path, out.getvalue().encode("utf-8")))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in members:
            archive.writestr(_zipinfo(path), data, compresslevel=compresslevel)
    return buffer.getvalue()


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A reader never sees half a file; on any failure (Ctrl-C included) the temporary is removed.
    The temporary (``.<file name>.<random>.tmp``) stays locked until it is renamed, so that
    ``sweep_temporaries`` can tell it from one a killed process left behind.
    """
    fd, tmp = _locked_temporary(path)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            os.close(fd)  # only now: the lock must cover the rename
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _locked_temporary(path: Path) -> tuple[int, str]:
    """A new temporary next to ``path``, open and locked (where ``fcntl`` exists)."""
    while True:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        if fcntl is None:
            return fd, tmp
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            mine = os.fstat(fd)
            there = os.stat(tmp)
            if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
                return fd, tmp
        except OSError:
            pass  # a sweep took it between its creation and the lock: make another
        os.close(fd)


def sweep_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries of ``path`` that ``write_atomically`` left in a killed process.

    Only ``.<file name>.*.tmp`` next to ``path``, and only those nobody holds locked: a
    temporary another process is writing right now (a concurrent build) is left alone.
    Without ``fcntl`` (Windows) nothing is removed. Returns what was removed; errors are ignored.
    """
    if fcntl is None:
        return []
    prefix = f".{path.name}."
    try:
        entries = os.listdir(path.parent)
    except OSError:
        return []
    removed: list[Path] = []
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(".tmp")):
            continue
        candidate = path.parent / entry
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held, there = os.fstat(fd), os.stat(candidate, follow_symlinks=False)
            if (stat.S_ISREG(held.st_mode)
                    and (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)):
                os.unlink(candidate)
                removed.append(candidate)
        except OSError:
            continue  # locked by a live writer, renamed meanwhile, or not ours to remove
        finally:
            os.close(fd)
    return removed


#: how long a worker thread keeps the GIL between two yields while others want it (seconds)
YIELD_INTERVAL = 0.001
#: time another thread ran within one interval that counts as "others want the GIL" (seconds)
CONTENTION = 0.0001
#: how long a worker thread keeps yielding after it last saw another thread run (seconds)
CONTENDED_FOR = 0.2
#: a window longer than this is a pause between loads, not a measure of contention (seconds)
_STALE = 0.02
#: a zip local file header: magic, versions, flags, method, time, date, crc, sizes, name and
#: extra lengths (APPNOTE 4.3.7)
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")


class _YieldState(threading.local):
    def __init__(self) -> None:
        self.wall = -1.0            # perf_counter at the start of the current window
        self.cpu = 0.0              # this thread's CPU time then
        self.contended_until = -1.0


_yield_state = _YieldState()


def yield_gil() -> None:
    """In a worker thread, let waiting threads run about every ``YIELD_INTERVAL``.

    A reload in a worker thread (``areload``) otherwise keeps the GIL for the whole switch
    interval (5 ms) each time the event loop's thread asks for it, and the loop asks twice per
    wake-up: its ticks stall ~10 ms. ``time.sleep(0)`` releases the GIL long enough for a
    waiting thread to take it, but costs ~0.1 ms, too much to pay when nobody waits (an idle
    server reloading on request). So the thread sleeps only while others want the GIL: when,
    over the last interval, its CPU time fell short of the wall time by ``CONTENTION``, another
    thread ran, and it keeps yielding every interval for ``CONTENDED_FOR``. The main thread
    never yields: a synchronous reload there blocks its caller anyway.
    """
    if threading.current_thread() is threading.main_thread():
        return
    state = _yield_state
    now = time.perf_counter()
    window = now - state.wall
    if window < YIELD_INTERVAL:
        return
    cpu = time.thread_time()
    if window <= _STALE and window - (cpu - state.cpu) >= CONTENTION:
        state.contended_until = now + CONTENDED_FOR
    if now < state.contended_until:
        time.sleep(0)
        now, cpu = time.perf_counter(), time.thread_time()
    state.wall, state.cpu = now, cpu


def _read_member(archive: zipfile.ZipFile, raw: memoryview, info: zipfile.ZipInfo) -> bytes:
    """The contents of one member, checked as ``ZipFile.read`` checks them, without its file
    objects: the local header (magic number, file name), size and CRC-32.

    Stored and deflated members (all the build writes) are read straight from ``raw``; anything
    else (other methods, encryption, patched data) goes through ``archive.read`` and its errors.
    The deflate stream must end exactly at the declared size (stricter than ``zipfile``).
    """
    method = info.compress_type
    if method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 0x61:
        return archive.read(info)
    offset = info.header_offset
    header = raw[offset:offset + _LOCAL_HEADER.size]
    if len(header) != _LOCAL_HEADER.size:
        raise zipfile.BadZipFile("Truncated file header")
    magic, _, _, flags, *_, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    if magic != b"PK\003\004":
        raise zipfile.BadZipFile("Bad magic number for file header")
    name_start = offset + _LOCAL_HEADER.size
    name_end = name_start + name_length
    encoding = "utf-8" if flags & 0x800 else "cp437"
    if bytes(raw[name_start:name_end]).decode(encoding) != info.orig_filename:
        raise zipfile.BadZipFile(f"File name in directory {info.orig_filename!r} and header "
                                 f"{bytes(raw[name_start:name_end])!r} differ.")
    start = name_end + extra_length
    chunk = raw[start:start + info.compress_size]
    if len(chunk) != info.compress_size:
        raise EOFError(f"member data of {info.filename!r} is truncated")
    if method == zipfile.ZIP_STORED:
        data = bytes(chunk)
    else:
        inflater = zlib.decompressobj(-15)
        data = inflater.decompress(chunk, info.file_size + 1)
        if not inflater.eof and len(data) <= info.file_size:
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")
    if len(data) != info.file_size:
        raise zipfile.BadZipFile(f"{info.filename!r} does not hold the {info.file_size} bytes "
                                 "its directory entry says")
    if zlib.crc32(data) != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
    return data


def _check_member_name(member: str, name: str) -> str | None:
    if member.startswith("/") or (len(member) > 1 and member[1] == ":"):
        return f"member {member!r} has an absolute path"
    if "\\" in member:
        return f"member {member!r} contains a backslash"
    if ".." in member.split("/"):
        return f"member {member!r} contains '..'"
    if not (member.startswith(f"{name}/") or member.startswith(f"{info_dir(name)}/")):
        return f"member {member!r} lies outside {name}/ and {info_dir(name)}/"
    return None


def _renamed_from(members: set[str], name: str) -> str | None:
    """The plugin whose members all of ``members`` are, when that is not ``name``, else None."""
    tops = {member.split("/", 1)[0] for member in members}
    owners = {top[: -len("-info")] for top in tops if top.endswith(f"{ARTIFACT_SUFFIX}-info")}
    if len(owners) != 1:
        return None
    owner = owners.pop()[: -len(ARTIFACT_SUFFIX)]
    if owner == name or tops != {owner, info_dir(owner)}:
        return None
    return owner


def _parse_record(raw: bytes) -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    for row in csv.reader(io.StringIO(raw.decode("utf-8"))):
        if not row:
            continue
        if len(row) != 3:
            raise ValueError(f"RECORD line {row!r} does not have 3 fields")
        path, digest, size = row
        if path in rows:
            raise ValueError(f"RECORD lists {path!r} twice")
        rows[path] = (digest, size)
    return rows


def verify_bytes(path: str, raw: bytes) -> Artifact:
    """Verify the bytes of an artifact read from ``path`` and return it.

    Raises:
        ArtifactError: listing every problem found (corrupt zip, unsafe or duplicate member
            names, symlinks, zip bombs, a RECORD or manifest that does not match).
    """
    base = os.path.basename(path)
    name = base[: -len(ARTIFACT_SUFFIX)] if base.endswith(ARTIFACT_SUFFIX) else base

    def fail(problems: Iterable[str]) -> ArtifactError:
        found = sorted(set(problems))
        text = "; ".join(found)
        return ArtifactError(
            f"artifact {path} does not verify: {text}; rebuild it with hotswap build",
            path=path, plugin=name, problems=tuple(found),
        )

    if not base.endswith(ARTIFACT_SUFFIX):
        raise fail([f"not a hotswap artifact (the file name does not end in {ARTIFACT_SUFFIX})"])
    if not name.isidentifier() or keyword.iskeyword(name):
        raise fail([f"plugin name {name!r} taken from the file name is not a Python identifier"])
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile as exc:
        if raw.startswith(b"PK\x03\x04"):  # a zip whose end is gone: a copy cut short
            raise fail([f"the file is truncated: it starts as a zip but its end is missing "
                        f"({exc})"]) from exc
        raise fail([f"not a hotswap artifact ({exc})"]) from exc
    except Exception as exc:  # truncated central directories raise assorted errors
        raise fail([f"not a hotswap artifact ({type(exc).__name__}: {exc})"]) from exc
    problems: list[str] = []
    infos = archive.infolist()
    seen: set[str] = set()
    total = 0
    for info in infos:
        member = info.filename
        if member in seen:
            problems.append(f"member {member!r} appears twice")
        seen.add(member)
        issue = _check_member_name(member, name)
        if issue:
            problems.append(issue)
        if stat.S_ISLNK(info.external_attr >> 16):
            problems.append(f"member {member!r} is a symlink")
        if info.is_dir():
            problems.append(f"member {member!r} is a directory entry")
        total += info.file_size
        if (info.file_size > RATIO_EXEMPT_SIZE
                and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)):
            problems.append(f"member {member!r} has a compression ratio over "
                            f"{MAX_COMPRESSION_RATIO} (zip bomb?)")
    renamed = _renamed_from(seen, name)
    if renamed is not None:
        # one line instead of one "lies outside" per member: the fix is the same for all
        problems = [p for p in problems if " lies outside " not in p]
        problems.append(f"the file is {base!r} but everything in it lies outside {name}/ and "
                        f"{info_dir(name)}/: it holds plugin {renamed!r}; rename it back to "
                        f"{renamed}{ARTIFACT_SUFFIX} (do not rename artifacts)")
    if total > MAX_TOTAL_SIZE:
        problems.append(f"uncompressed contents of {total} bytes exceed {MAX_TOTAL_SIZE} "
                        "(zip bomb?)")
    if problems:
        raise fail(problems)

    meta = info_dir(name)
    manifest_path, record_path = f"{meta}/{_MANIFEST}", f"{meta}/{_RECORD}"
    if manifest_path not in seen:
        problems.append(f"{manifest_path} is missing")
    elif archive.getinfo(manifest_path).file_size > MAX_MANIFEST_SIZE:
        problems.append(f"{manifest_path} is larger than {MAX_MANIFEST_SIZE} bytes")
    if record_path not in seen:
        problems.append(f"{record_path} is missing")
    if problems:
        raise fail(problems)

    contents: dict[str, bytes] = {}
    view = memoryview(raw)
    try:
        for info in infos:
            contents[info.filename] = _read_member(archive, view, info)
            yield_gil()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError,
            zlib.error) as exc:
        raise fail([f"member {info.filename!r} cannot be read ({exc})"]) from exc

    try:
        record = _parse_record(contents[record_path])
    except (UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise fail([f"RECORD is malformed ({exc})"]) from exc
    for member, data in contents.items():
        if member == record_path:
            continue
        entry = record.get(member)
        if entry is None:
            problems.append(f"member {member!r} is not listed in RECORD")
        elif entry != (record_hash(data), str(len(data))):
            problems.append(f"member {member!r} does not match its RECORD hash and size")
        yield_gil()
    for member in record:
        if member not in contents:
            problems.append(f"RECORD lists {member!r}, which is absent")
    manifest: Manifest | None = None
    try:
        manifest = Manifest.from_json(contents[manifest_path])
    except ValueError as exc:
        problems.append(str(exc))
    if manifest is not None and manifest.name != name:
        problems.append(f"manifest names plugin {manifest.name!r}, but the file is {base!r}; "
                        "do not rename artifacts")
    if problems or manifest is None:
        raise fail(problems)
    files = {m: d for m, d in contents.items() if m.startswith(f"{name}/")}
    if f"{name}/__init__.py" not in files:
        raise fail([f"{name}/__init__.py is missing"])
    return Artifact(
        path=path,
        name=name,
        sha256=hashlib.sha256(raw).hexdigest(),
        manifest=manifest,
        files=files,
    )


def read_artifact(path: str | os.PathLike[str]) -> Artifact:
    """Read the artifact at ``path`` once, into memory, and verify it.

    Raises:
        ArtifactError: the file cannot be read, or does not verify.
    """
    text = os.path.abspath(os.fspath(path))
    try:
        with open(text, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ArtifactError(
            f"artifact {text} cannot be read ({exc.strerror or exc}); check that it exists "
            "and is readable",
            path=text,
        ) from exc
    return verify_bytes(text, raw)
