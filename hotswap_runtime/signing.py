"""Ed25519 signatures of artifacts: keys, the ``SIGNATURE`` member, and checking it.

Design note: an artifact's ``RECORD`` lists the sha256 of every other member (sources, bytecode,
manifest), so one signature over the sha256 of the RECORD bytes covers everything that runs;
``SIGNATURE`` itself is the one member RECORD does not list (it cannot hash itself). The message
signed is that 32-byte digest, so verifying costs one Ed25519 check whatever the artifact's size.
Ed25519 is deterministic: the same key and RECORD always give the same signature, so a signed
build stays byte-identical.

``cryptography`` (the ``sign`` extra) is imported only when a key is loaded or made: the runtime
keeps msgspec as its one required dependency, and parsing a ``SIGNATURE`` (``parse_signature``)
needs nothing but the standard library.

The key id is the first 16 hex digits of the sha256 of the raw 32-byte public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HotswapError

__all__ = ["ALGORITHM", "Signature", "SigningKey", "TrustedKeys", "generate_key", "key_id",
           "load_trusted_keys", "parse_signature"]

ALGORITHM = "ed25519"
#: the SIGNATURE member is a short JSON object; anything larger is not one the build wrote
MAX_SIGNATURE_SIZE = 4096
#: a key file is a few hundred bytes of PEM; reading more is reading the wrong file
_MAX_KEY_FILE = 64 * 1024
_INSTALL = "install it with pip install 'hotswap[sign]'"


def _crypto() -> Any:
    """The ``cryptography`` Ed25519 and serialization modules, or a clear error without them."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise HotswapError(f"signing needs the 'sign' extra (the cryptography package); "
                           f"{_INSTALL}", step="sign") from exc
    return ed25519, serialization


def key_id(raw_public: bytes) -> str:
    """The key id of a raw 32-byte Ed25519 public key: 16 hex digits of its sha256."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


@dataclass(frozen=True)
class Signature:
    """A parsed ``SIGNATURE`` member (not yet checked against any key)."""

    key_id: str
    algorithm: str
    signature: bytes


def parse_signature(raw: bytes) -> Signature:
    """Parse a ``SIGNATURE`` member; ``ValueError`` saying what is wrong with it."""
    if len(raw) > MAX_SIGNATURE_SIZE:
        raise ValueError(f"SIGNATURE is larger than {MAX_SIGNATURE_SIZE} bytes")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError("SIGNATURE is not valid JSON") from None
    if not isinstance(body, dict) or set(body) != {"key_id", "algorithm", "signature"}:
        raise ValueError("SIGNATURE is not an object of key_id, algorithm and signature")
    kid, algorithm, text = body["key_id"], body["algorithm"], body["signature"]
    if algorithm != ALGORITHM:
        raise ValueError(f"SIGNATURE uses algorithm {algorithm!r}; only {ALGORITHM!r} is known")
    if not (isinstance(kid, str) and len(kid) == 16 and all(c in "0123456789abcdef" for c in kid)):
        raise ValueError("SIGNATURE key_id is not 16 lower-case hex digits")
    try:
        signature = base64.b64decode(text, validate=True) if isinstance(text, str) else b""
    except (binascii.Error, ValueError):
        signature = b""
    if len(signature) != 64:
        raise ValueError("SIGNATURE signature is not 64 bytes of base64")
    return Signature(kid, algorithm, signature)


def signature_json(kid: str, signature: bytes) -> bytes:
    """The ``SIGNATURE`` member as the build writes it: sorted keys, final newline."""
    body = {"algorithm": ALGORITHM, "key_id": kid,
            "signature": base64.b64encode(signature).decode("ascii")}
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode("utf-8")


_KeySource = str | os.PathLike[str] | bytes | bytearray | memoryview


def _describe(source: _KeySource) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "the PEM bytes given"
    return f'"{os.fspath(source)}"'


def _read_pem(source: _KeySource, what: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = os.fspath(source)
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_KEY_FILE + 1)
    except OSError as exc:
        raise HotswapError(f'{what} "{path}" cannot be read ({exc.strerror or exc}); check the '
                           "path and its permissions", step="keys") from exc
    if len(data) > _MAX_KEY_FILE:
        raise HotswapError(f'{what} "{path}" is larger than {_MAX_KEY_FILE} bytes: not a key '
                           "file; pass the KEYFILE.pub that hotswap keygen wrote", step="keys")
    return data


class TrustedKeys(Mapping[str, Any]):
    """The Ed25519 public keys a host accepts, by key id (made by ``load_trusted_keys``)."""

    def __init__(self, keys: Mapping[str, Any]) -> None:
        self._keys = dict(keys)

    def __getitem__(self, kid: str) -> Any:
        return self._keys[kid]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._keys))

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"TrustedKeys({', '.join(self)})"

    def verify(self, signature: Signature, digest: bytes) -> bool:
        """Whether ``signature`` is a valid signature of ``digest`` by one of these keys."""
        public = self._keys.get(signature.key_id)
        if public is None:
            return False
        from cryptography.exceptions import InvalidSignature

        try:
            public.verify(signature.signature, digest)
        except InvalidSignature:
            return False
        return True


def load_trusted_keys(keys: Iterable[str | os.PathLike[str] | bytes]
                      | str | os.PathLike[str] | bytes) -> TrustedKeys:
    """Load Ed25519 public keys (paths of ``KEYFILE.pub`` files, or PEM bytes).

    A single path or PEM is taken as a list of one.

    Raises:
        HotswapError: a key is unreadable, malformed, a private key, not Ed25519, the list is
            empty, or the ``sign`` extra is not installed.
    """
    sources: list[Any] = (
        [keys] if isinstance(keys, (str, bytes, bytearray, memoryview, os.PathLike)) else list(keys))
    if not sources:
        raise HotswapError("trusted_keys is empty, so no artifact could ever load; pass the "
                           "KEYFILE.pub of each key you sign with, or leave trusted_keys out",
                           step="keys")
    ed25519, serialization = _crypto()
    found: dict[str, Any] = {}
    for source in sources:
        if not isinstance(source, (str, bytes, bytearray, memoryview, os.PathLike)):
            raise HotswapError(f"trusted key {source!r} is neither a path nor PEM bytes; pass "
                               "the path of a KEYFILE.pub or its contents", step="keys")
        shown = _describe(source)
        pem = _read_pem(source, "trusted key")
        if b"PRIVATE KEY" in pem:
            raise HotswapError(f"trusted key {shown} is a private key; pass its public key (the "
                               "KEYFILE.pub that hotswap keygen wrote) and keep the private key "
                               "on the build machine", step="keys")
        try:
            public = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError) as exc:
            raise HotswapError(f"trusted key {shown} is not a PEM public key ({exc}); pass the "
                               "KEYFILE.pub that hotswap keygen wrote", step="keys") from exc
        if not isinstance(public, ed25519.Ed25519PublicKey):
            raise HotswapError(f"trusted key {shown} is not an Ed25519 key; make one with "
                               "hotswap keygen KEYFILE", step="keys")
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        found[key_id(raw)] = public
    return TrustedKeys(found)


class SigningKey:
    """A private Ed25519 key that signs artifacts (``hotswap build --sign KEYFILE``)."""

    def __init__(self, private: Any) -> None:
        _, serialization = _crypto()
        self._private = private
        raw = private.public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)
        self.key_id = key_id(raw)
        """The key id of its public key."""

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        """Read the private key that ``hotswap keygen`` wrote.

        Raises:
            HotswapError: the file is unreadable, readable by others, or not an Ed25519
                private key; or the ``sign`` extra is missing.
        """
        ed25519, serialization = _crypto()
        shown = os.fspath(path)
        pem = _read_pem(path, "signing key")
        if b"PRIVATE KEY" not in pem:
            raise HotswapError(f'signing key "{shown}" is not a private key; pass the KEYFILE '
                               "that hotswap keygen wrote (not KEYFILE.pub)", step="sign")
        if os.name == "posix":  # as ssh does: a key others can read is no longer a secret
            mode = stat.S_IMODE(os.stat(shown).st_mode)
            if mode & 0o077:
                raise HotswapError(f'signing key "{shown}" is readable by others (mode '
                                   f"{mode:04o}); run chmod 600 {shown}", step="sign")
        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise HotswapError(f'signing key "{shown}" cannot be loaded ({exc}); make one with '
                               "hotswap keygen KEYFILE", step="sign") from exc
        if not isinstance(private, ed25519.Ed25519PrivateKey):
            raise HotswapError(f'signing key "{shown}" is not an Ed25519 key; make one with '
                               "hotswap keygen KEYFILE", step="sign")
        return cls(private)

    def sign_record(self, record: bytes) -> bytes:
        """The ``SIGNATURE`` member for an artifact whose RECORD is ``record``."""
        return signature_json(self.key_id, self._private.sign(hashlib.sha256(record).digest()))


def generate_key(path: str | os.PathLike[str]) -> str:
    """Make an Ed25519 key pair: ``path`` (private, mode 0600) and ``path.pub``; its key id.

    Raises:
        HotswapError: either file exists already (never overwritten) or cannot be written, or
            the ``sign`` extra is missing.
    """
    ed25519, serialization = _crypto()
    private_path = Path(path)
    public_path = private_path.with_name(private_path.name + ".pub")
    private = ed25519.Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public = private.public_key()
    public_pem = public.public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for target in (private_path, public_path):
        if target.exists() or target.is_symlink():
            raise HotswapError(f'"{target}" exists already; keygen never overwrites a key: '
                               "choose another KEYFILE or remove the old one first", step="keygen")
    written: list[Path] = []
    try:
        for target, body, mode in ((private_path, private_pem, 0o600), (public_path, public_pem, 0o644)):
            # O_EXCL: a file or symlink created meanwhile is never followed or overwritten; the
            # private key is 0600 from its first byte, not chmod-ed after being written
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                         mode)
            written.append(target)
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
            os.chmod(target, mode)  # the umask may have taken bits off the public key
    except OSError as exc:
        for target in written:
            target.unlink(missing_ok=True)
        raise HotswapError(f'cannot write the key "{target}" ({exc.strerror or exc}); check the '
                           "folder exists and is writable", step="keygen") from exc
    return key_id(raw)
