"""The build cache holds data, never code (README "Security"): a tampered or poisoned cache is
ignored and rebuilt, never run, and never flows into an artifact."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import marshal
import os
import pickle
from pathlib import Path

import msgspec
import pytest

from hotswap_build.build import build
from hotswap_build.cache import _Index, cache_dir


class _Boom:
    """Unpickling this touches a file: the proof that a pickle ran code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).touch, ())


def _index(folder: Path) -> list[Path]:
    return sorted((folder / "plugins").iterdir())


@pytest.fixture
def built(sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOTSWAP_CACHE_DIR", str(tmp_path / "cache"))
    plugin = sample("good/hello")
    first = build(plugin, tmp_path / "one")
    return plugin, first


def test_the_index_is_json_not_pickle(built, tmp_path: Path) -> None:
    (index,) = _index(cache_dir())
    body = json.loads(index.read_bytes())
    assert set(body) == {"format", "entries"} and body["entries"]
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(index.read_bytes())


def test_a_planted_pickle_never_runs(built, tmp_path: Path) -> None:
    """A pickle that runs code put in place of the index (or beside it, with the old name) is
    not loaded: the build ignores it, rebuilds, and nothing ran."""
    plugin, first = built
    (index,) = _index(cache_dir())
    marker = tmp_path / "ran"
    payload = pickle.dumps({"x": _Boom(str(marker))})
    index.write_bytes(payload)
    index.with_suffix(".pickle").write_bytes(payload)
    again = build(plugin, tmp_path / "two")
    assert not marker.exists()
    assert again.cached == 0
    assert (tmp_path / "two" / "hello.hsp").read_bytes() == (tmp_path / "one" / "hello.hsp").read_bytes()


def _edit_entry(index: Path, rel: str, pyc_of, *, fresh_digest: bool) -> None:
    """Replace the cached pyc of ``rel`` by ``pyc_of(old_pyc)``, every other entry untouched;
    with ``fresh_digest`` the entry's digest is recomputed (a deliberate poisoning)."""
    body = msgspec.json.decode(index.read_bytes(), type=_Index)
    entries = dict(body.entries)
    for key, (digest, raw) in entries.items():
        entry = json.loads(bytes(raw))
        if entry["scan"]["rel"] != rel:
            continue
        entry["pyc"] = base64.b64encode(pyc_of(base64.b64decode(entry["pyc"]))).decode()
        new = msgspec.json.encode(entry)
        entries[key] = (hashlib.sha256(new).hexdigest() if fresh_digest else digest,
                        msgspec.Raw(new))
    index.write_bytes(msgspec.json.encode(_Index(body.format, entries)))


def test_a_tampered_entry_is_rebuilt_not_used(built, tmp_path: Path) -> None:
    """Changing the cached bytecode of one file only costs its rebuild: the artifact holds the
    real code."""
    plugin, first = built
    (index,) = _index(cache_dir())
    evil = compile("import os\nos.system('echo pwned')\n", "hello/jobs.py", "exec")
    _edit_entry(index, "jobs.py", lambda pyc: pyc[:16] + marshal.dumps(evil), fresh_digest=False)
    again = build(plugin, tmp_path / "two")
    assert again.cached == len(again.files) - 1
    assert (tmp_path / "two" / "hello.hsp").read_bytes() == (tmp_path / "one" / "hello.hsp").read_bytes()


def test_a_poisoned_entry_with_a_matching_digest_is_still_no_pyc_of_its_source(built,
                                                                                  tmp_path: Path) -> None:
    """An entry rewritten with a fresh digest, whose pyc was compiled from other source, is left
    out (its pyc does not hash its source) and rebuilt."""
    plugin, first = built
    (index,) = _index(cache_dir())
    other = b"import os\n"
    poisoned = (importlib.util.MAGIC_NUMBER + (1).to_bytes(4, "little")
                + importlib.util.source_hash(other) + marshal.dumps(compile(other, "x", "exec")))
    _edit_entry(index, "jobs.py", lambda pyc: poisoned, fresh_digest=True)
    again = build(plugin, tmp_path / "two")
    assert again.cached == len(again.files) - 1
    assert (tmp_path / "two" / "hello.hsp").read_bytes() == (tmp_path / "one" / "hello.hsp").read_bytes()


def test_garbage_index_is_a_miss(built, tmp_path: Path) -> None:
    plugin, _ = built
    (index,) = _index(cache_dir())
    for junk in (b"", b"{", b"[" * 100000, os.urandom(4096)):
        index.write_bytes(junk)
        assert build(plugin, tmp_path / "two").cached == 0
