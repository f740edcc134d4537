"""The trust side of the CLI (README "Security"): keygen, build --sign, and inspect as the tool one
uses to vet a foreign artifact (signature, bytecode against source, escaped names, clean
errors on hostile files)."""

from __future__ import annotations

import importlib.util
import io
import json
import marshal
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from click.testing import CliRunner

from hotswap_build.cli import main
from hotswap_runtime.artifact import Manifest, pack, read_artifact


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def _repack(path: Path, change) -> None:
    """Rewrite the artifact at ``path`` through ``change(members)``, RECORD made to match."""
    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    members = {info.filename: source.read(info) for info in source.infolist()}
    change(members)
    name = path.stem
    manifest = Manifest.from_json(members[f"{name}.hsp-info/MANIFEST.json"])
    files = {m: d for m, d in members.items() if m.startswith(f"{name}/")}
    path.write_bytes(pack(name, files, manifest))


def test_keygen_build_sign_inspect(sample, tmp_path: Path) -> None:
    """keygen prints the key id; a signed build is byte-identical when repeated; inspect shows
    who signed it and, given the public key, that it verifies; another key fails it."""
    key = tmp_path / "deploy.key"
    made = invoke("keygen", str(key))
    assert made.exit_code == 0, made.output
    kid = made.stdout.splitlines()[-1]
    assert len(kid) == 16 and (key.stat().st_mode & 0o777) == 0o600
    plugin = sample("good/hello")
    for out in ("one", "two"):
        assert invoke("build", "--sign", str(key), str(plugin), str(tmp_path / out)).exit_code == 0
    first, second = (tmp_path / "one" / "hello.hsp"), (tmp_path / "two" / "hello.hsp")
    assert first.read_bytes() == second.read_bytes()
    shown = invoke("inspect", str(first))
    assert f"Signed by:       {kid} (not checked: pass --trusted-key" in shown.stdout
    checked = invoke("inspect", "--trusted-key", f"{key}.pub", str(first))
    assert checked.exit_code == 0 and f"Signed by:       {kid} (verified" in checked.stdout
    assert json.loads(invoke("inspect", "--json", "--trusted-key", f"{key}.pub",
                             str(first)).stdout)["signature_verified"] is True
    assert invoke("keygen", str(tmp_path / "other.key")).exit_code == 0
    refused = invoke("inspect", "--trusted-key", str(tmp_path / "other.key.pub"), str(first))
    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"Error: artifact {first} is signed by key {kid}, which is "
                                     "not trusted")
    unsigned = tmp_path / "plain"
    assert invoke("build", str(plugin), str(unsigned)).exit_code == 0
    assert "Signed by:       - (unsigned)" in invoke("inspect", str(unsigned / "hello.hsp")).stdout


def test_build_sign_with_bad_keys_fails_cleanly(sample, tmp_path: Path) -> None:
    key = tmp_path / "k"
    assert invoke("keygen", str(key)).exit_code == 0
    plugin = sample("good/hello")
    public = invoke("build", "--sign", f"{key}.pub", str(plugin), str(tmp_path / "out"))
    assert public.exit_code == 1 and "is not a private key" in public.stderr
    os.chmod(key, 0o644)
    shared = invoke("build", "--sign", str(key), str(plugin), str(tmp_path / "out"))
    assert shared.exit_code == 1 and "is readable by others (mode 0644); run chmod 600" in shared.stderr
    assert not (tmp_path / "out").exists()


def test_inspect_refuses_bytecode_of_other_code(sample, tmp_path: Path) -> None:
    """A pyc carrying the harmless source's hash but other code passes the runtime's hash
    check; inspect recompiles the source and refuses it, naming the member."""
    assert invoke("build", str(sample("good/hello")), str(tmp_path)).exit_code == 0
    path = tmp_path / "hello.hsp"
    member = f"hello/__pycache__/jobs.{sys.implementation.cache_tag}.pyc"

    def swap(members: dict[str, bytes]) -> None:
        source = members["hello/jobs.py"]
        evil = compile(source + b"\nimport os\n", "hello/jobs.py", "exec", dont_inherit=True)
        members[member] = members[member][:16] + marshal.dumps(evil)

    _repack(path, swap)
    read_artifact(path)  # the source hash matches: only recompiling tells
    result = invoke("inspect", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: artifact {path} does not verify: bytecode {member!r} does not hold the code of "
        "'hello/jobs.py': what would run is not what the source says; rebuild it with hotswap "
        "build"]


def test_inspect_escapes_control_characters_in_names(sample, tmp_path: Path) -> None:
    """A data member named with a terminal escape prints escaped, never raw."""
    assert invoke("build", str(sample("good/hello")), str(tmp_path)).exit_code == 0
    path = tmp_path / "hello.hsp"
    sneaky = "hello/notes\x1b[2K\r  hello/__init__.py  10 bytes.txt"

    def add(members: dict[str, bytes]) -> None:
        members[sneaky] = b"hi"

    _repack(path, add)
    result = invoke("inspect", str(path))
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\r" not in result.stdout
    assert "  hello/notes\\x1b[2K\\r  hello/__init__.py  10 bytes.txt  2 bytes" in result.stdout


def test_inspect_hostile_manifest_is_one_error_line(sample, tmp_path: Path) -> None:
    """A manifest nested 5,000 deep is an Error: line naming the artifact, no traceback (the
    real command, as a reviewer runs it)."""
    assert invoke("build", str(sample("good/hello")), str(tmp_path)).exit_code == 0
    path = tmp_path / "hello.hsp"

    def deepen(members: dict[str, bytes]) -> None:
        key = "hello.hsp-info/MANIFEST.json"
        members[key] = members[key].replace(b'"stamps": {}', b'"stamps": ' + b"[" * 5000 + b"]" * 5000)

    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    members = {info.filename: source.read(info) for info in source.infolist()}
    deepen(members)
    with zipfile.ZipFile(path, "w") as target:
        for member, data in members.items():
            target.writestr(member, data)
    script = Path(sys.executable).with_name("hotswap")
    done = subprocess.run([str(script), "inspect", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: artifact {path} does not verify: ")
    assert "manifest is nested deeper than 32 levels" in lines[0]


def test_inspect_bzip2_bomb_refused_without_decompressing(sample, tmp_path: Path) -> None:
    """The tool one uses to vet a foreign file refuses a bzip2 member before decompressing it."""
    assert invoke("build", str(sample("good/hello")), str(tmp_path)).exit_code == 0
    path = tmp_path / "hello.hsp"
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_BZIP2) as archive:
        archive.writestr("hello/bomb.bin", b"\0" * (4 * 1024 * 1024))
    result = invoke("inspect", str(path))
    assert result.exit_code == 1
    assert "member 'hello/bomb.bin' is compressed with bzip2" in result.stderr


def test_pyc_source_hash_mismatch_refused_by_inspect(sample, tmp_path: Path) -> None:
    assert invoke("build", str(sample("good/hello")), str(tmp_path)).exit_code == 0
    path = tmp_path / "hello.hsp"
    member = f"hello/__pycache__/jobs.{sys.implementation.cache_tag}.pyc"

    def swap(members: dict[str, bytes]) -> None:
        other = b"x = 1\n"
        code = compile(other, "hello/jobs.py", "exec", dont_inherit=True)
        members[member] = (importlib.util.MAGIC_NUMBER + (1).to_bytes(4, "little")
                           + importlib.util.source_hash(other) + marshal.dumps(code))

    _repack(path, swap)
    result = invoke("inspect", str(path))
    assert result.exit_code == 1
    assert f"bytecode {member!r} was not compiled from the shipped source" in result.stderr
