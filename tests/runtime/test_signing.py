"""Signed artifacts and ``trusted_keys`` (README "Security"): only code signed by a trusted key
loads; every refusal names the plugin and the key id, and the old version keeps serving."""

from __future__ import annotations

import builtins
import io
import json
import os
import zipfile
from pathlib import Path

import pytest
from handmade import hooks_source, pack_plugin

from hotswap_runtime import HotswapError, signing
from hotswap_runtime.artifact import ArtifactError, Manifest, pack, read_artifact
from hotswap_runtime.signing import SigningKey, generate_key, load_trusted_keys


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Two key pairs: name -> (private key file, key id)."""
    made = {}
    for name in ("deploy", "other"):
        path = tmp_path / "keys" / name
        path.parent.mkdir(exist_ok=True)
        made[name] = (path, generate_key(path))
    return made


def _sign(path: Path, key: Path) -> None:
    """Re-pack the artifact at ``path`` with a SIGNATURE by ``key``."""
    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    members = {info.filename: source.read(info) for info in source.infolist()}
    name = path.stem
    manifest = Manifest.from_json(members[f"{name}.hsp-info/MANIFEST.json"])
    files = {m: d for m, d in members.items() if m.startswith(f"{name}/")}
    path.write_bytes(pack(name, files, manifest, sign=SigningKey.load(key).sign_record))


def _foo(plugin_dir: Path, stamp: str = "v1") -> Path:
    return pack_plugin(plugin_dir, "foo", {"__init__.py": hooks_source("foo", stamp=stamp)})


def test_keygen_writes_a_private_key_only_its_owner_reads(keys) -> None:
    path, kid = keys["deploy"]
    assert (path.stat().st_mode & 0o777) == 0o600
    assert path.with_name("deploy.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert len(kid) == 16 and SigningKey.load(path).key_id == kid
    assert list(load_trusted_keys([path.with_name("deploy.pub")])) == [kid]
    with pytest.raises(HotswapError, match="exists already; keygen never overwrites a key"):
        generate_key(path)


def test_signed_artifact_loads_and_names_its_key(plugin_dir: Path, keys, make_swapper, events) -> None:
    path, kid = keys["deploy"]
    artifact = _foo(plugin_dir)
    _sign(artifact, path)
    swapper = make_swapper(trusted_keys=[path.with_name("deploy.pub")])
    swapper.load_plugins()
    assert swapper.current().find_plugin("foo").invoke_func("stamp") == "v1"
    checked = read_artifact(artifact, trusted_keys=load_trusted_keys([path.with_name("deploy.pub")]))
    assert checked.signed_by == kid and checked.signature.key_id == kid


def test_signing_is_deterministic(plugin_dir: Path, keys) -> None:
    artifact = _foo(plugin_dir)
    _sign(artifact, keys["deploy"][0])
    first = artifact.read_bytes()
    _sign(artifact, keys["deploy"][0])
    assert artifact.read_bytes() == first


def _refused(swapper, old) -> HotswapError:
    with pytest.raises(HotswapError) as info:
        swapper.reload()
    assert swapper.current() is old
    assert old.find_plugin("foo").invoke_func("stamp") == "v1"
    assert info.value.plugin == "foo"
    return info.value


def test_every_untrusted_artifact_refused_old_version_serving(plugin_dir: Path, keys,
                                                               make_swapper, events) -> None:
    """Unsigned, signed by an unknown key, a bad signature, an altered member: each refused
    naming the plugin and the key id; the running version keeps serving."""
    deploy, deploy_id = keys["deploy"]
    other, other_id = keys["other"]
    artifact = _foo(plugin_dir)
    _sign(artifact, deploy)
    swapper = make_swapper(trusted_keys=[deploy.with_name("deploy.pub")])
    swapper.load_plugins()
    old = swapper.current()

    _foo(plugin_dir, stamp="v2")  # unsigned
    error = _refused(swapper, old)
    assert f"artifact {artifact} is not signed" in str(error) and deploy_id in str(error)

    _sign(artifact, other)
    error = _refused(swapper, old)
    assert f"is signed by key {other_id}, which is not trusted (trusted: {deploy_id})" in str(error)

    # a signature by the trusted key, copied onto another RECORD
    _sign(artifact, deploy)
    signature = zipfile.ZipFile(artifact).read("foo.hsp-info/SIGNATURE")
    _foo(plugin_dir, stamp="v3")
    with zipfile.ZipFile(artifact, "a") as archive:
        archive.writestr("foo.hsp-info/SIGNATURE", signature)
    error = _refused(swapper, old)
    assert f"the signature of key {deploy_id} does not verify" in str(error)

    # a member altered after signing (RECORD kept): named, with the key id
    _foo(plugin_dir, stamp="v1")
    _sign(artifact, deploy)
    source = zipfile.ZipFile(io.BytesIO(artifact.read_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "foo/__init__.py":
                data = data.replace(b'"v1"', b'"v4"')
            target.writestr(info, data)
    artifact.write_bytes(out.getvalue())
    error = _refused(swapper, old)
    assert f"artifact {artifact} (signed by key {deploy_id}) does not verify" in str(error)
    assert "member 'foo/__init__.py' does not match its RECORD hash" in str(error)
    assert "error: artifact" in swapper.plan()[str(artifact)]


def test_without_trusted_keys_unsigned_and_signed_load(plugin_dir: Path, keys, make_swapper,
                                                       events) -> None:
    artifact = _foo(plugin_dir)
    swapper = make_swapper()
    swapper.load_plugins()
    _sign(artifact, keys["deploy"][0])
    swapper.reload()


def test_bad_keys_fail_at_construction(tmp_path: Path, keys, make_swapper) -> None:
    deploy = keys["deploy"][0]
    with pytest.raises(HotswapError, match="is a private key; pass its public key"):
        make_swapper(trusted_keys=[deploy])
    with pytest.raises(HotswapError, match=r'trusted key ".*missing.pub" cannot be read'):
        make_swapper(trusted_keys=[tmp_path / "missing.pub"])
    junk = tmp_path / "junk.pub"
    junk.write_text("not a key")
    with pytest.raises(HotswapError, match="is not a PEM public key"):
        make_swapper(trusted_keys=[junk])
    with pytest.raises(HotswapError, match="trusted_keys is empty"):
        make_swapper(trusted_keys=[])
    pem = deploy.with_name("deploy.pub").read_bytes()
    assert list(load_trusted_keys([pem])) == [keys["deploy"][1]]


def test_signing_key_readable_by_others_refused(keys) -> None:
    path = keys["deploy"][0]
    os.chmod(path, 0o644)
    with pytest.raises(HotswapError, match="is readable by others"):
        SigningKey.load(path)


def test_without_the_sign_extra_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_import = builtins.__import__

    def no_cryptography(name, *args, **kwargs):
        if name.startswith("cryptography"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cryptography)
    with pytest.raises(HotswapError, match=r"install it with pip install 'hotswap\[sign\]'"):
        signing.load_trusted_keys([b"-----BEGIN PUBLIC KEY-----"])
    with pytest.raises(HotswapError, match=r"hotswap\[sign\]"):
        signing.generate_key(tmp_path / "k")


def test_malformed_signature_member_refused(plugin_dir: Path, keys) -> None:
    artifact = _foo(plugin_dir)
    with zipfile.ZipFile(artifact, "a") as archive:
        archive.writestr("foo.hsp-info/SIGNATURE", json.dumps({"key_id": "x"}))
    with pytest.raises(ArtifactError, match="SIGNATURE is not an object of key_id, algorithm"):
        read_artifact(artifact)
