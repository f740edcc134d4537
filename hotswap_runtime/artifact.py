"""The ``.hsp`` artifact format: written by ``hotswap build``, read and verified by the runtime.

Design note: this module is the single definition of the format. The build imports it to pack
(``pack``/``write_atomically``) and ``hotswap inspect`` uses ``read_artifact`` exactly as the
runtime does, so what the build writes and what the runtime accepts cannot drift apart.

Design note on reading hostile bytes: the file's type and size are checked on the open file
before a byte is read (opened non-blocking: a FIFO never blocks), then each byte is read once:
in one call, or, for a big file with big stored members, member by member straight into the
bytes the artifact keeps (``_Source``), so big data is never copied out of a file buffer.
The zip is parsed here, not by ``zipfile``: the end record must end the file and the members
must tile it from byte 0 to the central directory (nothing prepended, hidden or appended); only
stored and deflated members are accepted, refused by method before any decompression; every
size limit is checked against the *declared* sizes and inflating never produces more than a
member declares, so the declared sizes bound the memory a file can cost. The whole-file sha256
runs on another thread for big files (hashlib releases the GIL) while members are inflated and
checked against RECORD here; RECORD's sha256 per member replaces the zip CRC-32 pass (RECORD
and SIGNATURE, which no hash covers, keep their CRC check). Bytecode for this Python must be a
hash-based pyc of the shipped source. ``yielding.yield_gil`` runs between members, as the importer
does between modules.

Layout of ``<name>.hsp``, a zip archive in the spirit of a wheel::

    <name>/...                                   the rewritten package: sources, --include files
    <name>/[sub/]__pycache__/<stem>.<tag>[.opt-N].pyc
                                                 hash-based (unchecked) bytecode of every .py,
                                                 for the building Python (``tag`` = cache_tag)
    <name>/_hotswap_registration.py              generated: HOOKS, LIVE_FUNCS, LIVE_TYPES dicts
    <name>.hsp-info/MANIFEST.json                see ``Manifest``
    <name>.hsp-info/RECORD                       ``path,sha256=<b64>,size`` per other member
    <name>.hsp-info/SIGNATURE                    optional: Ed25519 over sha256(RECORD), see signing

Members are sorted (the info folder last, RECORD then SIGNATURE last), with a fixed timestamp
(1980-01-01) and mode 0644, so identical inputs give byte-identical files.

The registration module (``REGISTRATION_MODULE``) defines three dicts: ``HOOKS`` (the seven
required functions, plus ``self_test`` when the plugin has one), ``LIVE_FUNCS`` and
``LIVE_TYPES`` (live name -> object). Importing it imports the plugin's root package.
"""

from __future__ import annotations

import _imp
import base64
import bisect
import csv
import hashlib
import importlib.util
import inspect
import io
import json
import keyword
import os
import queue
import re
import stat
import struct
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FunctionType
from typing import TYPE_CHECKING, Any

from .errors import ArtifactError
from .signing import Signature, parse_signature
from .yielding import yield_gil

if TYPE_CHECKING:
    from .signing import TrustedKeys

try:
    import fcntl
except ImportError:  # Windows: temporaries are not locked, and never swept
    fcntl = None  # type: ignore[assignment]  # no such module on Windows

__all__ = [
    "ARTIFACT_SUFFIX",
    "FORMAT_VERSION",
    "HOOK_CALLS",
    "REGISTRATION_MODULE",
    "REQUIRED_HOOKS",
    "OPTIONAL_HOOKS",
    "Artifact",
    "HookParams",
    "INVOKE_FUNC_COUNTS",
    "hook_arg_counts",
    "Manifest",
    "deflate",
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
    "invoke_func": -1,  # invoke_func(name, *params): see INVOKE_FUNC_COUNTS
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
#: the calls ``invoke_func(name, *params)`` must bind, by number of positional arguments: the
#: name alone, and the name with three params. ``*params`` is any number, which a signature
#: check can only sample: this accepts ``*params`` or defaults covering three (a host's usual
#: calls) and refuses a function that takes the name only or one fixed extra.
INVOKE_FUNC_COUNTS = (1, 4)


@dataclass(frozen=True)
class HookParams:
    """The shape of a function's parameters, enough to tell which hook calls it accepts.

    The one hook-signature rule: ``hotswap build`` reads the shape from the source (``ast``)
    and the runtime from the function's code object, and both ask ``takes_hook``, so a plugin
    the build accepts loads and one it refuses would fail to load.

    Attributes:
        positional: positional parameters (positional-only ones included).
        required: positional parameters without a default.
        varargs: whether it has ``*args``.
        required_kwonly: keyword-only parameters without a default.
    """

    positional: int
    required: int
    varargs: bool
    required_kwonly: tuple[str, ...] = ()

    @classmethod
    def of(cls, fn: FunctionType) -> HookParams:
        """The shape of a plain function, from its code object (many times cheaper than
        ``inspect.signature``, which matters on every load)."""
        code = fn.__code__
        kwonly = code.co_varnames[code.co_argcount:code.co_argcount + code.co_kwonlyargcount]
        defaults = fn.__kwdefaults__ or {}
        return cls(
            positional=code.co_argcount,
            required=code.co_argcount - len(fn.__defaults__ or ()),
            varargs=bool(code.co_flags & inspect.CO_VARARGS),
            required_kwonly=tuple(name for name in kwonly if name not in defaults),
        )

    def binds(self, count: int) -> bool:
        """Whether a call with ``count`` positional arguments (and no keyword) binds."""
        return (not self.required_kwonly and self.required <= count
                and (count <= self.positional or self.varargs))

    def takes_hook(self, hook: str) -> bool:
        """Whether the runtime's call of ``hook`` (``HOOK_CALLS``) binds."""
        return all(self.binds(count) for count in hook_arg_counts(hook))


def hook_arg_counts(hook: str) -> tuple[int, ...]:
    """The numbers of positional arguments the runtime calls ``hook`` with."""
    nargs = REQUIRED_HOOKS[hook] if hook in REQUIRED_HOOKS else OPTIONAL_HOOKS[hook]
    return INVOKE_FUNC_COUNTS if nargs < 0 else (nargs,)

MAX_TOTAL_SIZE = 256 * 1024 * 1024
#: an artifact file larger than this is refused before it is read
MAX_FILE_SIZE = 256 * 1024 * 1024
MAX_MANIFEST_SIZE = 1024 * 1024
MAX_MANIFEST_DEPTH = 32
#: of a member (beyond ``RATIO_EXEMPT_SIZE``) and of the whole artifact: uncompressed / file size
MAX_COMPRESSION_RATIO = 100
#: members smaller than this are not held to the compression ratio (a 10 KiB run of spaces is
#: no bomb, but it compresses 200:1)
RATIO_EXEMPT_SIZE = 64 * 1024
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
_MANIFEST = "MANIFEST.json"
_RECORD = "RECORD"
_SIGNATURE = "SIGNATURE"

# The zip structures (APPNOTE 4.3.7, 4.3.12, 4.3.16): magic, then little-endian fields.
#: local header: magic, version needed, flags, method, time, date, crc, sizes, name, extra length
_LOCAL = struct.Struct("<4s5H3L2H")
#: central directory entry: magic, made by, needed, flags, method, time, date, crc, sizes,
#: name/extra/comment lengths, disk, internal attributes, external attributes, local offset
_CENTRAL = struct.Struct("<4s6H3L5H2L")
#: end record: magic, disk, directory disk, entries here, entries, directory size and offset,
#: comment length
_END = struct.Struct("<4s4H2LH")
_LOCAL_MAGIC, _CENTRAL_MAGIC, _END_MAGIC = b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"
_STORED, _DEFLATED = 0, 8
_METHODS = {12: "bzip2", 14: "LZMA", 9: "deflate64", 93: "zstandard", 95: "xz", 98: "PPMd"}
_ENCRYPTED, _DESCRIPTOR, _UTF8 = 0x0001 | 0x0040, 0x0008, 0x0800
_VERSION = 20                      # zip 2.0: deflate
_MADE_BY = (3 << 8) | _VERSION     # unix, so the mode below reads back the same everywhere
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01, time 00:00:00 (ZIP_TIMESTAMP)
_FILE_MODE = (stat.S_IFREG | 0o644) << 16
#: from this size the whole-file digest runs on its own thread (starting one costs ~0.1 ms)
_THREADED_DIGEST = 1 << 20
#: files from this size are read in segments when they hold stored members of at least
#: ``_DIRECT_READ`` bytes, each read straight into the bytes the artifact keeps (no copy)
_SEGMENTED_READ = 4 << 20
_DIRECT_READ = 256 << 10
#: opening never blocks (a FIFO swapped in) and never leaks into a child process
_OPEN_FLAGS = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
#: a JSON string, so brackets inside strings do not count towards the nesting depth
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text: str, limit: int) -> int:
    """How deeply the JSON ``text`` nests arrays and objects, counting up to ``limit + 1``
    (found without parsing it, so a hostile document cannot exhaust the parser's stack)."""
    depth = deepest = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def info_dir(name: str) -> str:
    """The metadata folder of plugin ``name`` inside its artifact."""
    return f"{name}{ARTIFACT_SUFFIX}-info"


def record_hash(data: bytes) -> str:
    """The RECORD form of a digest: ``sha256=`` and urlsafe base64 without padding."""
    return _record_form(hashlib.sha256(data).digest())


def _record_form(digest: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


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
    source_dir: str | None = None
    source_hashes: Mapping[str, str] = field(default_factory=dict)

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
        # only when known, so a manifest without them (older builds) is still canonical
        if self.source_dir is not None:
            body["source_dir"] = self.source_dir
        if self.source_hashes:
            body["source_hashes"] = dict(sorted(self.source_hashes.items()))
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        """Parse and check a manifest; raise ``ValueError`` saying what is wrong.

        It must be exactly the JSON the build writes (``to_json``), at most
        ``MAX_MANIFEST_SIZE`` bytes and nested at most ``MAX_MANIFEST_DEPTH`` deep.
        """
        if len(raw) > MAX_MANIFEST_SIZE:
            raise ValueError(f"manifest is larger than {MAX_MANIFEST_SIZE} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"manifest is not valid UTF-8 ({exc})") from None
        if json_depth(text, MAX_MANIFEST_DEPTH) > MAX_MANIFEST_DEPTH:
            raise ValueError(f"manifest is nested deeper than {MAX_MANIFEST_DEPTH} levels")
        try:
            body = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
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
        # absent from artifacts built before map_sources existed
        source_dir = body.get("source_dir")
        if source_dir is not None and not isinstance(source_dir, str):
            raise ValueError("manifest field 'source_dir' is not null or a string")
        source_hashes = body.get("source_hashes", {})
        if not isinstance(source_hashes, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in source_hashes.items()
        ):
            raise ValueError("manifest field 'source_hashes' is not an object of strings")
        manifest = cls(
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
            source_dir=source_dir,
            source_hashes=source_hashes,
        )
        if manifest.to_json() != raw:
            raise ValueError("manifest is not the JSON hotswap build writes (extra fields, "
                             "other spacing or order)")
        return manifest


@dataclass(frozen=True)
class Artifact:
    """One artifact, read once and verified; ``files`` holds every member under ``<name>/``.

    Attributes:
        path: the absolute path it was read from.
        name: the plugin name (the file's stem, equal to the manifest's).
        sha256: hex digest of the whole file.
        manifest: the parsed manifest.
        files: member path (``foo/jobs.py``) -> contents, for every member of the package.
        content: hex digest of RECORD apart from the manifest's line: equal contents mean the
            same code and data (what ``unchanged`` compares, with the build id).
        record_digest: sha256 of the RECORD bytes, what a ``SIGNATURE`` signs.
        signature: the parsed ``SIGNATURE`` member, or None when unsigned (checked against keys
            only when ``read_artifact`` was given ``trusted_keys``).
        signed_by: the trusted key id whose signature verified, or None.
        identity: (device, inode, size, st_mtime_ns, st_ctime_ns) of the file read, from the
            open file itself; None when verified from bytes.
    """

    path: str
    name: str
    sha256: str
    manifest: Manifest
    files: Mapping[str, bytes]
    content: str = ""
    record_digest: bytes = b""
    signature: Signature | None = None
    signed_by: str | None = None
    identity: tuple[int, int, int, int, int] | None = None

    @property
    def build_id(self) -> str:
        """The manifest's ``build_id``: equal ids mean the same build."""
        return self.manifest.build_id


def _zip_name(member: str) -> tuple[bytes, int]:
    """A member name as zip stores it, and the flag bit 11 when it is UTF-8 (not ASCII)."""
    try:
        return member.encode("ascii"), 0
    except UnicodeEncodeError:
        return member.encode("utf-8"), _UTF8


def _csv_field(text: str) -> str:
    """``text`` as a CSV field: quoted when it holds a comma, a quote or a line break (``csv``
    itself leaves a lone carriage return unquoted, which its reader then takes for a line end)."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def deflate(data: bytes, compresslevel: int) -> bytes:
    """``data`` raw-deflated as ``pack`` deflates a member at ``compresslevel``, so a build can
    cache it and hand it back to ``pack``."""
    compressor = zlib.compressobj(compresslevel, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def pack(name: str, files: Mapping[str, bytes], manifest: Manifest, *,
         compresslevel: int = 6, sign: Callable[[bytes], bytes] | None = None,
         deflated: Mapping[str, bytes] | None = None) -> bytes:
    """Return the bytes of a deterministic artifact holding ``files`` (paths under ``name/``).

    RECORD is computed here; MANIFEST.json and RECORD are written last, then ``SIGNATURE`` when
    ``sign`` is given (called with the RECORD bytes, it returns the member; see ``signing``).
    Each member is deflated at ``compresslevel`` (0-9), or stored when deflate would not make
    it smaller (incompressible data loads at the speed of one hash, without an inflate pass);
    the same inputs give the same bytes. ``deflated`` maps members to
    ``deflate(files[member], compresslevel)`` made earlier (the build's cache), used instead
    of compressing them again: the result is byte for byte the same.
    """
    meta = info_dir(name)
    manifest_path = f"{meta}/{_MANIFEST}"
    record_path = f"{meta}/{_RECORD}"
    members = sorted(files.items())
    members.append((manifest_path, manifest.to_json()))
    lines = [f"{_csv_field(path)},{record_hash(data)},{len(data)}\n" for path, data in members]
    lines.append(f"{_csv_field(record_path)},,\n")
    record = "".join(lines).encode("utf-8")
    members.append((record_path, record))
    if sign is not None:
        members.append((f"{meta}/{_SIGNATURE}", sign(record)))
    ready = deflated or {}
    chunks: list[bytes] = []
    central: list[bytes] = []
    offset = 0
    for path, data in members:
        encoded, flags = _zip_name(path)
        packed = ready.get(path)
        if packed is None:
            packed = deflate(data, compresslevel)
        method, body = (_DEFLATED, packed) if len(packed) < len(data) else (_STORED, data)
        crc = zlib.crc32(data)
        local = _LOCAL.pack(_LOCAL_MAGIC, _VERSION, flags, method, 0, _DOS_DATE, crc, len(body),
                            len(data), len(encoded), 0)
        central.append(_CENTRAL.pack(_CENTRAL_MAGIC, _MADE_BY, _VERSION, flags, method, 0,
                                     _DOS_DATE, crc, len(body), len(data), len(encoded), 0, 0, 0,
                                     0, _FILE_MODE, offset) + encoded)
        chunks += (local, encoded, body)
        offset += len(local) + len(encoded) + len(body)
    directory = b"".join(central)
    if len(members) > 0xFFFF or offset + len(directory) > 0xFFFFFFFF:
        raise ValueError(f"plugin {name!r} has too many or too large files for an artifact")
    end = _END.pack(_END_MAGIC, 0, 0, len(members), len(members), len(directory), offset, 0)
    return b"".join([*chunks, directory, end])


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


#: codes of the member-name problems (``_check_member_name``)
_ABSOLUTE, _BACKSLASH, _DOTDOT, _OUTSIDE = "absolute", "backslash", "dotdot", "outside"


def _check_member_name(member: str, name: str) -> tuple[str, str] | None:
    """(code, text) of what is wrong with the member name ``member`` of plugin ``name``."""
    if member.startswith("/") or (len(member) > 1 and member[1] == ":"):
        return _ABSOLUTE, f"member {member!r} has an absolute path"
    if "\\" in member:
        return _BACKSLASH, f"member {member!r} contains a backslash"
    if ".." in member.split("/"):
        return _DOTDOT, f"member {member!r} contains '..'"
    if not (member.startswith(f"{name}/") or member.startswith(f"{info_dir(name)}/")):
        return _OUTSIDE, f"member {member!r} lies outside {name}/ and {info_dir(name)}/"
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
    for row in csv.reader(io.StringIO(raw.decode("utf-8"), newline="")):
        if not row:
            continue
        if len(row) != 3:
            raise ValueError(f"RECORD line {row!r} does not have 3 fields")
        path, digest, size = row
        if path in rows:
            raise ValueError(f"RECORD lists {path!r} twice")
        rows[path] = (digest, size)
    return rows


@dataclass
class _Entry:
    """One member as the central directory declares it (sizes are claims until read)."""

    name: str
    raw_name: bytes
    flags: int
    method: int
    crc: int
    csize: int
    usize: int
    mode: int
    offset: int
    start: int = -1  # where its data begins, once its local header was checked


class _Source:
    """The bytes of an artifact as segments ``(start, bytes)`` that tile ``[0, size)``.

    Read from memory it is one segment. Read from a big file, each big stored member is its
    own segment, read straight into the ``bytes`` object the artifact then holds: its data is
    copied once (from the page cache), never again out of a whole-file buffer.
    """

    def __init__(self, segments: list[tuple[int, bytes | bytearray]], size: int,
                 digest: _FileDigest | None = None, hashes: _MemberHashes | None = None) -> None:
        self.segments = segments
        self.size = size
        # when read in pieces: already hashing the whole file, and each big member
        self.digest = digest
        self.hashes = hashes
        self._starts = [start for start, _ in segments]

    def read(self, start: int, end: int) -> bytes | memoryview:
        """The bytes of ``[start, end)`` clamped to the file (a view when in one segment)."""
        start, end = max(0, start), min(self.size, end)
        if end <= start:
            return b""
        index = bisect.bisect_right(self._starts, start) - 1
        first, data = self.segments[index]
        if end <= first + len(data):
            return memoryview(data)[start - first:end - first]
        parts = []
        while start < end and index < len(self.segments):
            first, data = self.segments[index]
            parts.append(bytes(memoryview(data)[max(start, first) - first:end - first]))
            start = first + len(data)
            index += 1
        return b"".join(parts)

    def member(self, start: int, length: int) -> bytes:
        """The ``length`` bytes at ``start`` as ``bytes``: the segment itself when it is one."""
        index = bisect.bisect_right(self._starts, start) - 1
        first, data = self.segments[index]
        if first == start and len(data) == length and type(data) is bytes:
            return data
        return bytes(self.read(start, start + length))


def _directory(source: _Source, problems: list[str]) -> tuple[list[_Entry], int]:
    """The central directory's entries and its offset; appends to ``problems`` what is wrong.

    The end record must end the file (no comment, no trailing bytes) and the directory must
    end where the end record begins: nothing may hide after the last member's data.
    """
    size = source.size
    end_at = size - _END.size
    end = bytes(source.read(end_at, size)) if size >= _END.size else b""
    if size < _END.size or end[:4] != _END_MAGIC:
        tail = bytes(source.read(size - 0x10000 - _END.size, size))
        if _END_MAGIC in tail:
            found = size - len(tail) + tail.rindex(_END_MAGIC)
            problems.append(f"{size - found - _END.size} bytes follow the end of the central "
                            "directory (a zip comment or appended data)")
        elif bytes(source.read(0, 4)) == _LOCAL_MAGIC:  # a zip whose end is gone: cut short
            problems.append("the file is truncated: it starts as a zip but its end is missing")
        else:
            problems.append("not a hotswap artifact (not a zip archive)")
        return [], 0
    _, disk, cd_disk, here, count, cd_size, cd_offset, comment = _END.unpack(end)
    if disk or cd_disk or here != count:
        problems.append("the zip spans several disks")
        return [], 0
    if comment:
        problems.append("the zip end record is damaged (it declares a comment past the end)")
        return [], 0
    if cd_offset + cd_size < end_at:
        # zipfile reads past this (it shifts every offset): here it is refused
        problems.append(f"{end_at - cd_offset - cd_size} bytes of unknown data lie before the "
                        "central directory (prepended or inserted data, or a zip64 archive)")
        return [], 0
    if cd_offset + cd_size > end_at:
        problems.append("the central directory is damaged (it runs past its end record)")
        return [], 0
    entries: list[_Entry] = []
    raw = source.read(cd_offset, end_at)  # the central directory, offsets relative to it
    position = 0
    end_at -= cd_offset
    for _ in range(count):
        if position + _CENTRAL.size > end_at:
            problems.append("the central directory is shorter than its entry count says")
            return [], 0
        (magic, _, _, flags, method, _, _, crc, csize, usize, name_length, extra_length,
         comment_length, _, _, external, offset) = _CENTRAL.unpack_from(raw, position)
        if magic != _CENTRAL_MAGIC:
            problems.append(f"the central directory is damaged at byte {cd_offset + position}")
            return [], 0
        name_start = position + _CENTRAL.size
        raw_name = bytes(raw[name_start:name_start + name_length])
        position = name_start + name_length + extra_length + comment_length
        if position > end_at:
            problems.append("the central directory runs past its end")
            return [], 0
        try:
            name = raw_name.decode("utf-8" if flags & _UTF8 else "cp437")
        except UnicodeDecodeError:
            problems.append(f"member name {raw_name!r} is not valid UTF-8")
            continue
        entries.append(_Entry(name, raw_name, flags, method, crc, csize, usize, external >> 16,
                              offset))
    if position != end_at:
        problems.append("the central directory holds more than its entry count says")
        return [], 0
    if not entries and not problems:
        problems.append("not a hotswap artifact (an empty zip)")
    return entries, cd_offset


def _check_entries(entries: list[_Entry], name: str, file_size: int) -> list[str]:
    """What the central directory alone shows wrong: names, kinds, methods and sizes.

    Sizes here are what the members *declare*: reading never produces more than declared, so
    bounding the declared sizes bounds the memory a hostile file can make us allocate.
    """
    problems: list[str] = []
    outside: list[str] = []  # one line replaces these when the file was renamed
    seen: set[str] = set()
    repeated: set[str] = set()
    total = 0
    for entry in entries:
        member = entry.name
        if member in seen:
            # said once, however many copies: their other problems are the first copy's
            if member not in repeated:
                repeated.add(member)
                problems.append(f"member {member!r} appears twice")
            total += entry.usize
            continue
        seen.add(member)
        issue = _check_member_name(member, name)
        if issue is not None:
            code, text = issue
            (outside if code == _OUTSIDE else problems).append(text)
        if stat.S_ISLNK(entry.mode):
            problems.append(f"member {member!r} is a symlink")
        if member.endswith("/"):
            problems.append(f"member {member!r} is a directory entry")
        if entry.method not in (_STORED, _DEFLATED):
            kind = _METHODS.get(entry.method, f"method {entry.method}")
            problems.append(f"member {member!r} is compressed with {kind}; only stored and "
                            "deflated members are read (refused before any decompression)")
        if entry.flags & _ENCRYPTED:
            problems.append(f"member {member!r} is encrypted")
        if entry.flags & _DESCRIPTOR:
            problems.append(f"member {member!r} uses a data descriptor, which hotswap build "
                            "never writes")
        if entry.method == _STORED and entry.csize != entry.usize:
            problems.append(f"stored member {member!r} declares {entry.csize} bytes stored but "
                            f"{entry.usize} bytes of contents")
        total += entry.usize
        if (entry.usize > RATIO_EXEMPT_SIZE
                and entry.usize > MAX_COMPRESSION_RATIO * max(entry.csize, 1)):
            problems.append(f"member {member!r} has a compression ratio over "
                            f"{MAX_COMPRESSION_RATIO} (zip bomb?)")
    renamed = _renamed_from(seen, name)
    if renamed is None:
        problems.extend(outside)
    else:
        # one line instead of one "lies outside" per member: the fix is the same for all
        problems.append(f"the file is '{name}{ARTIFACT_SUFFIX}' but everything in it lies outside "
                        f"{name}/ and {info_dir(name)}/: it holds plugin {renamed!r}; rename it "
                        f"back to {renamed}{ARTIFACT_SUFFIX} (do not rename artifacts)")
    if total > MAX_TOTAL_SIZE:
        problems.append(f"uncompressed contents of {total} bytes exceed {MAX_TOTAL_SIZE} "
                        "(zip bomb?)")
    elif total > MAX_COMPRESSION_RATIO * file_size:
        problems.append(f"uncompressed contents of {total} bytes exceed {MAX_COMPRESSION_RATIO} "
                        f"times the file's {file_size} bytes (zip bomb?)")
    meta = info_dir(name)
    manifest_path, record_path = f"{meta}/{_MANIFEST}", f"{meta}/{_RECORD}"
    sizes = {entry.name: entry.usize for entry in entries}
    if renamed is not None:
        return problems  # its metadata is there, under the other name
    if manifest_path not in sizes:
        problems.append(f"{manifest_path} is missing")
    elif sizes[manifest_path] > MAX_MANIFEST_SIZE:
        problems.append(f"{manifest_path} is larger than {MAX_MANIFEST_SIZE} bytes")
    if record_path not in sizes:
        problems.append(f"{record_path} is missing")
    return problems


def _check_layout(source: _Source, entries: list[_Entry], cd_offset: int) -> list[str]:
    """Members must tile the file from byte 0 to the central directory, each local header
    agreeing with its directory entry: no bytes before the first member, between members or
    after the last, and no member overlapping another (so no data the directory hides)."""
    problems: list[str] = []
    expected = 0
    before = "the first member"
    for entry in sorted(entries, key=lambda e: e.offset):
        member = entry.name
        if entry.offset > expected:
            problems.append(f"{entry.offset - expected} bytes of unknown data lie before "
                            f"member {member!r}" if expected else
                            f"{entry.offset} bytes lie before {before} (prepended data)")
        elif entry.offset < expected:
            problems.append(f"member {member!r} overlaps the member before it")
            return problems
        header = bytes(source.read(entry.offset, entry.offset + _LOCAL.size))
        if len(header) != _LOCAL.size:
            problems.append(f"member {member!r} cannot be read (its local header is truncated)")
            return problems
        (magic, _, flags, method, _, _, crc, csize, usize, name_length,
         extra_length) = _LOCAL.unpack(header)
        name_start = entry.offset + _LOCAL.size
        if magic != _LOCAL_MAGIC:
            problems.append(f"member {member!r} cannot be read (bad magic number for its local "
                            "header)")
            return problems
        local_name = bytes(source.read(name_start, name_start + name_length))
        if local_name != entry.raw_name:
            problems.append(f"member {member!r} cannot be read (file name in directory "
                            f"{member!r} and header {local_name!r} differ)")
            return problems
        if (method, crc, csize, usize) != (entry.method, entry.crc, entry.csize, entry.usize):
            problems.append(f"member {member!r} cannot be read (its local header disagrees "
                            "with the central directory on method, CRC or sizes)")
            return problems
        entry.start = name_start + name_length + extra_length
        expected = entry.start + entry.csize
        if expected > cd_offset:
            problems.append(f"member {member!r} cannot be read (its data runs into the central "
                            "directory)")
            return problems
    if expected < cd_offset:
        problems.append(f"{cd_offset - expected} bytes of unknown data lie between the last "
                        "member and the central directory")
    return problems


def _inflate(source: _Source, entry: _Entry) -> bytes:
    """A member's contents, never more than the size it declares (a bomb stops there)."""
    if entry.method == _STORED:
        return source.member(entry.start, entry.csize)
    chunk = source.read(entry.start, entry.start + entry.csize)
    inflater = zlib.decompressobj(-15)
    data = inflater.decompress(chunk, entry.usize + 1)
    if len(data) != entry.usize or not inflater.eof or inflater.unused_data:
        raise ValueError(f"its deflate stream does not hold exactly the {entry.usize} bytes "
                         "its directory entry declares")
    return data


_PYC_NAME = re.compile(r"^(?P<folder>.+)/__pycache__/(?P<stem>[^/.]+)\.[^/]+\.pyc$")
_RAW_MAGIC = int.from_bytes(importlib.util.MAGIC_NUMBER, "little")


def _check_bytecode(contents: Mapping[str, bytes]) -> list[str]:
    """Every pyc this Python would run must be hash-based and hash the shipped source.

    A pyc for another Python is never run (the importer compiles the source instead), so only
    pycs with this interpreter's magic number are held to it. The source hash proves the pyc
    was made from the shipped source; ``hotswap inspect`` also recompiles to compare the code.
    """
    problems: list[str] = []
    for member, data in contents.items():
        if not member.endswith(".pyc") or data[:4] != importlib.util.MAGIC_NUMBER:
            continue
        match = _PYC_NAME.match(member)
        source = contents.get(f"{match['folder']}/{match['stem']}.py") if match else None
        if source is None:
            problems.append(f"bytecode {member!r} has no source member beside its __pycache__")
        elif len(data) < 16 or not int.from_bytes(data[4:8], "little") & 0b01:
            problems.append(f"bytecode {member!r} is not a hash-based pyc (hotswap build "
                            "writes only those)")
        elif data[8:16] != _imp.source_hash(_RAW_MAGIC, source):
            problems.append(f"bytecode {member!r} was not compiled from the shipped source "
                            "(its source hash differs)")
    return problems


def _content_digest(record: Mapping[str, tuple[str, str]], skip: Iterable[str]) -> str:
    """The digest of RECORD's lines apart from ``skip``: what ``unchanged`` compares."""
    left_out = set(skip)
    digest = hashlib.sha256()
    for path, (hashed, size) in sorted(record.items()):
        if path not in left_out:
            digest.update(f"{path}\0{hashed}\0{size}\n".encode())
    return digest.hexdigest()


def _digest(source: _Source) -> str:
    """The sha256 of the whole file, segment after segment."""
    digest = hashlib.sha256()
    for _, data in source.segments:
        digest.update(data)
    return digest.hexdigest()


class _FileDigest(threading.Thread):
    """The whole file's sha256 on another thread: hashlib releases the GIL over big buffers,
    so it runs on another core while the file is still being read (segments are fed as they
    arrive, in file order) and while the members are inflated and hashed here."""

    def __init__(self) -> None:
        super().__init__(name="hotswap-digest", daemon=True)
        self._parts: queue.SimpleQueue[bytes | bytearray | None] = queue.SimpleQueue()
        self.hexdigest = ""
        self.start()

    def feed(self, data: bytes | bytearray) -> None:
        """Hash ``data`` next."""
        self._parts.put(data)

    def run(self) -> None:
        digest = hashlib.sha256()
        while (data := self._parts.get()) is not None:
            digest.update(data)
        self.hexdigest = digest.hexdigest()

    def result(self) -> str:
        """The hex digest of everything fed (waits for it)."""
        self._parts.put(None)
        self.join()
        return self.hexdigest


class _MemberHashes(threading.Thread):
    """The sha256 of each big member, hashed on another thread while the next one is read."""

    def __init__(self) -> None:
        super().__init__(name="hotswap-digest", daemon=True)
        self._parts: queue.SimpleQueue[tuple[int, bytes | bytearray] | None] = queue.SimpleQueue()
        self.digests: dict[tuple[int, int], bytes] = {}
        self.start()

    def feed(self, start: int, data: bytes | bytearray) -> None:
        """Hash ``data``, the segment read at ``start``."""
        self._parts.put((start, data))

    def run(self) -> None:
        while (part := self._parts.get()) is not None:
            self.digests[part[0], len(part[1])] = hashlib.sha256(part[1]).digest()

    def result(self) -> dict[tuple[int, int], bytes]:
        """(start, length) -> sha256 of each segment fed (waits for them)."""
        self._parts.put(None)
        self.join()
        return self.digests


class _Problems:
    """Builds the one ``ArtifactError`` of an artifact, naming its path (and signing key)."""

    def __init__(self, path: str, name: str) -> None:
        self.path = path
        self.name = name
        self.signer = ""  # ", signed by key <id>" once a SIGNATURE was parsed

    def error(self, problems: Iterable[str]) -> ArtifactError:
        found = sorted(problems)  # each problem is found once: sorted for a stable message
        return ArtifactError(
            f"artifact {self.path}{self.signer} does not verify: {'; '.join(found)}; rebuild it "
            "with hotswap build", path=self.path, plugin=self.name, problems=tuple(found),
        )


def verify_bytes(path: str, raw: bytes | bytearray, *, trusted_keys: TrustedKeys | None = None,
                 identity: tuple[int, int, int, int, int] | None = None) -> Artifact:
    """Verify the bytes of an artifact read from ``path`` and return it (see ``read_artifact``).

    Raises:
        ArtifactError: listing every problem found (corrupt zip, unsafe or duplicate member
            names, symlinks, zip bombs, a RECORD, manifest, bytecode or signature that does
            not match).
    """
    return _verify(path, _Source([(0, raw)], len(raw)), trusted_keys, identity)


def _verify(path: str, source: _Source, trusted_keys: TrustedKeys | None,
            identity: tuple[int, int, int, int, int] | None) -> Artifact:
    base = os.path.basename(path)
    name = base[: -len(ARTIFACT_SUFFIX)] if base.endswith(ARTIFACT_SUFFIX) else base
    report = _Problems(path, name)
    if not base.endswith(ARTIFACT_SUFFIX):
        raise report.error([f"not a hotswap artifact (the file name does not end in "
                            f"{ARTIFACT_SUFFIX})"])
    if not name.isidentifier() or keyword.iskeyword(name):
        raise report.error([f"plugin name {name!r} taken from the file name is not a Python "
                            "identifier"])
    size = source.size
    if size > MAX_FILE_SIZE:
        raise report.error([f"the file's {size} bytes exceed {MAX_FILE_SIZE} (zip bomb?)"])
    problems: list[str] = []
    entries, cd_offset = _directory(source, problems)
    if problems:
        raise report.error(problems)
    problems = (_check_entries(entries, name, size)
                or _check_layout(source, entries, cd_offset))
    if problems:
        raise report.error(problems)
    digest = source.digest
    if digest is None and size >= _THREADED_DIGEST:
        digest = _FileDigest()
        for _, data in source.segments:
            digest.feed(data)
    try:
        contents = _read_members(source, entries, report)
        known: dict[str, bytes] = {}
        if source.hashes is not None:  # members hashed while the file was read
            by_place = source.hashes.result()
            known = {e.name: by_place[e.start, e.csize] for e in entries
                     if e.method == _STORED and (e.start, e.csize) in by_place}
        manifest, record, record_digest, signature = _check_contents(contents, report,
                                                                     trusted_keys, known)
        sha256 = digest.result() if digest is not None else _digest(source)
    finally:
        for thread in (digest, source.hashes):
            if thread is not None and thread.is_alive():
                thread.result()  # a refused artifact: let the thread end, and drop its data
    meta = info_dir(name)
    files = {m: d for m, d in contents.items() if m.startswith(f"{name}/")}
    return Artifact(
        path=path,
        name=name,
        sha256=sha256,
        manifest=manifest,
        files=files,
        content=_content_digest(record, (f"{meta}/{_MANIFEST}", f"{meta}/{_RECORD}")),
        record_digest=record_digest,
        signature=signature,
        signed_by=signature.key_id if signature is not None and trusted_keys is not None else None,
        identity=identity,
    )


def _read_members(source: _Source, entries: list[_Entry],
                  report: _Problems) -> dict[str, bytes]:
    """Every member's contents. Only RECORD and SIGNATURE are checked against their CRC-32:
    every other member is checked against its sha256 in RECORD, which is stronger, so a CRC
    pass over them would only add a second pass over the same bytes."""
    contents: dict[str, bytes] = {}
    problems: list[str] = []
    for entry in entries:
        try:
            data = _inflate(source, entry)
        except (ValueError, zlib.error) as exc:
            problems.append(f"member {entry.name!r} cannot be read ({exc})")
            continue
        if entry.name.rpartition("/")[2] in (_RECORD, _SIGNATURE) and zlib.crc32(data) != entry.crc:
            problems.append(f"member {entry.name!r} cannot be read (Bad CRC-32)")
        contents[entry.name] = data
        yield_gil()
    if problems:
        raise report.error(problems)
    return contents


def _check_contents(contents: dict[str, bytes], report: _Problems,
                    trusted_keys: TrustedKeys | None, known: Mapping[str, bytes]
                    ) -> tuple[Manifest, dict[str, tuple[str, str]], bytes, Signature | None]:
    """RECORD against every member, the bytecode against its source, the manifest, and the
    signature (against ``trusted_keys`` when given). ``known``: the sha256 of members already
    hashed while the file was read."""
    name = report.name
    meta = info_dir(name)
    manifest_path, record_path = f"{meta}/{_MANIFEST}", f"{meta}/{_RECORD}"
    signature_path = f"{meta}/{_SIGNATURE}"
    problems: list[str] = []
    signature: Signature | None = None
    if signature_path in contents:
        try:
            signature = parse_signature(contents[signature_path])
        except ValueError as exc:
            problems.append(str(exc))
        else:
            report.signer = f" (signed by key {signature.key_id})"
    record_raw = contents[record_path]
    try:
        record = _parse_record(record_raw)
    except (UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise report.error([*problems, f"RECORD is malformed ({exc})"]) from exc
    for member, data in contents.items():
        if member in (record_path, signature_path):
            continue
        entry = record.get(member)
        if entry is None:
            problems.append(f"member {member!r} is not listed in RECORD")
        elif entry != (_record_form(known[member]) if member in known else record_hash(data),
                       str(len(data))):
            problems.append(f"member {member!r} does not match its RECORD hash and size")
    for member in record:
        if member == signature_path:
            problems.append("RECORD lists SIGNATURE, which signs RECORD and so cannot be in it")
        elif member not in contents:
            problems.append(f"RECORD lists {member!r}, which is absent")
    problems.extend(_check_bytecode(contents))
    manifest: Manifest | None = None
    try:
        manifest = Manifest.from_json(contents[manifest_path])
    except ValueError as exc:
        problems.append(str(exc))
    if manifest is not None and manifest.name != name:
        problems.append(f"manifest names plugin {manifest.name!r}, but the file is "
                        f"'{name}{ARTIFACT_SUFFIX}'; do not rename artifacts")
    if f"{name}/__init__.py" not in contents:
        problems.append(f"{name}/__init__.py is missing")
    if problems or manifest is None:
        raise report.error(problems)
    record_digest = hashlib.sha256(record_raw).digest()
    if trusted_keys is not None:
        _check_signature(report, signature, record_digest, trusted_keys)
    return manifest, record, record_digest, signature


def _check_signature(report: _Problems, signature: Signature | None, record_digest: bytes,
                     trusted_keys: TrustedKeys) -> None:
    """With trusted keys, only an artifact signed by one of them, over this RECORD, loads."""
    trusted = ", ".join(trusted_keys) or "none"
    path, name = report.path, report.name
    if signature is None:
        message = (f"artifact {path} is not signed, and only artifacts signed by a trusted key "
                   f"({trusted}) may load; build it with hotswap build --sign KEYFILE")
        problem = "not signed"
    elif signature.key_id not in trusted_keys:
        message = (f"artifact {path} is signed by key {signature.key_id}, which is not trusted "
                   f"(trusted: {trusted}); sign it with a trusted key or add that key's "
                   "KEYFILE.pub to trusted_keys")
        problem = f"signed by untrusted key {signature.key_id}"
    elif not trusted_keys.verify(signature, record_digest):
        message = (f"artifact {path}: the signature of key {signature.key_id} does not verify "
                   "(RECORD was changed after signing); rebuild and sign it again")
        problem = f"bad signature of key {signature.key_id}"
    else:
        return
    raise ArtifactError(message, path=path, plugin=name, problems=(problem,))


def _kind(mode: int) -> str | None:
    """What a non-regular file is, for the error; None for a regular file."""
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def _refuse_file(path: str, info: os.stat_result) -> None:
    """Refuse, before reading a byte, anything but a regular file of at most MAX_FILE_SIZE."""
    name = os.path.basename(path).removesuffix(ARTIFACT_SUFFIX)
    kind = _kind(info.st_mode)
    if kind is not None:
        raise ArtifactError(f"artifact {path} is {kind}, not a regular file; remove it from the "
                            "plugin folder or replace it with a file built by hotswap build",
                            path=path, plugin=name, problems=(f"is {kind}",))
    if info.st_size > MAX_FILE_SIZE:
        raise ArtifactError(f"artifact {path} is {info.st_size} bytes, over the {MAX_FILE_SIZE} "
                            "bytes an artifact may have; it is not one hotswap build made",
                            path=path, plugin=name, problems=("too large",))


def _pread(fd: int, start: int, length: int) -> bytes:
    """Exactly ``length`` bytes at ``start`` (``EOFError`` when the file is shorter now)."""
    data = os.pread(fd, length, start)
    if len(data) == length:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, start + got)
        if not more:
            raise EOFError(f"the file ended at byte {start + got}")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _segments(fd: int, size: int) -> _Source | None:
    """The file read as segments, each big stored member one of them (see ``_Source``), or
    None when its end record, directory or members are not laid out as the build writes them
    (then it is read in one piece and judged as such)."""
    end = _pread(fd, size - _END.size, _END.size)
    magic, disk, cd_disk, here, count, cd_size, cd_offset, comment = _END.unpack(end)
    if (magic != _END_MAGIC or disk or cd_disk or here != count or comment
            or cd_offset + cd_size != size - _END.size):
        return None
    directory = _pread(fd, cd_offset, size - cd_offset)
    problems: list[str] = []
    entries, _ = _directory(_Source([(0, b""), (cd_offset, directory)], size), problems)
    if problems:
        return None
    # where pack puts a stored member's data: after its local header and name, no extra
    # field (_check_layout checks every header against the directory anyway)
    big = [(entry.offset + _LOCAL.size + len(entry.raw_name), entry.csize)
           for entry in sorted(entries, key=lambda e: e.offset)
           if entry.method == _STORED and entry.csize >= _DIRECT_READ]
    if not big:
        return None
    segments: list[tuple[int, bytes | bytearray]] = []
    digest, hashes = _FileDigest(), _MemberHashes()
    try:
        position = 0
        for start, length in [*big, (cd_offset, 0)]:
            if start < position or start + length > cd_offset:
                return None
            for at, count in ((position, start - position), (start, length)):
                if count:
                    segments.append((at, _pread(fd, at, count)))
                    digest.feed(segments[-1][1])
            if length:  # its RECORD hash, on a third thread, while the next one is read
                hashes.feed(start, segments[-1][1])
            position = start + length
        segments.append((cd_offset, directory))
        digest.feed(directory)
    finally:
        if len(segments) == 0 or segments[-1][0] != cd_offset:
            digest.result()  # not used: let the threads end
            hashes.result()
    return _Source(segments, size, digest, hashes)


def _read_file(path: str) -> tuple[_Source, tuple[int, int, int, int, int]]:
    """The file's bytes, each byte read once, and the identity of the file read (from the open
    file): in one read, or for a big file holding big stored members, in segments.

    Its type and size are checked before it is opened and again on the open file (it may have
    been swapped in between); it is opened non-blocking, so a FIFO swapped in never blocks. A
    file changed while it is read (its size or times differ after) is refused.
    """
    name = os.path.basename(path).removesuffix(ARTIFACT_SUFFIX)

    def unreadable(exc: OSError) -> ArtifactError:
        return ArtifactError(f"artifact {path} cannot be read ({exc.strerror or exc}); check "
                             "that it exists and is readable", path=path, plugin=name)

    try:
        _refuse_file(path, os.stat(path))
        fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
    except OSError as exc:
        raise unreadable(exc) from exc
    changed = False
    source: _Source | None = None
    try:
        info = os.fstat(fd)
        _refuse_file(path, info)
        size = info.st_size
        source = _segments(fd, size) if size >= _SEGMENTED_READ else None
        if source is None:
            source = _Source([(0, _pread(fd, 0, size))], size)
        after = os.fstat(fd)
        changed = (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (
            size, info.st_mtime_ns, info.st_ctime_ns) or bool(os.pread(fd, 1, size))
    except EOFError:
        changed = True
    except OSError as exc:
        changed = True  # closes the digest below, before the error
        raise unreadable(exc) from exc
    finally:
        os.close(fd)
        if changed and source is not None and source.digest is not None:
            source.digest.result()  # not used: let its thread end
    if changed:
        raise ArtifactError(f"artifact {path} changed while it was read; write artifacts to a "
                            "temporary name and rename them into place (hotswap build does)",
                            path=path, plugin=name, problems=("changed while read",))
    assert source is not None
    return source, (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def read_artifact(path: str | os.PathLike[str], *,
                  trusted_keys: TrustedKeys | None = None) -> Artifact:
    """Read the artifact at ``path`` once, into memory, and verify it as the runtime does.

    With ``trusted_keys`` (``signing.load_trusted_keys``), the artifact must also carry a
    ``SIGNATURE`` by one of those keys over its RECORD.

    Raises:
        ArtifactError: the file cannot be read, is not a regular file of at most 256 MiB, does
            not verify, or (with ``trusted_keys``) is not signed by a trusted key.
    """
    text = os.path.abspath(os.fspath(path))
    source, identity = _read_file(text)
    return _verify(text, source, trusted_keys, identity)
