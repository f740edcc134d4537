"""The artifact reader: how fast it verifies, and what signing adds (issues 13 and 15).

Run: ``.venv/bin/python bench/reader.py``. Prints:

- ``load_mb_per_s``: ``read_artifact`` (open, one read, full verification) of an artifact
  holding 100 MB of incompressible data members (stored: deflate would not shrink them), in MB
  of member data per second; goal >= 800 (sha256 runs ~1500-1700 MB/s here: the whole-file
  digest runs on a second thread while the members are hashed against RECORD);
- ``load_floor_mb_per_s``: the limit on this machine, measured interleaved with it: one read of
  the same file into fresh memory and one sha256 pass over it (no zip, no member copies);
- ``load_mb_per_s_source``: the same for 100 MB of Python source (deflated ~3:1), for scale:
  inflating is the bound there (zlib inflates such text at ~250-300 MB/s here), no goal;
- ``sign_verify_overhead_ms_1000``: a signed 1000-module artifact read with ``trusted_keys``
  against the same artifact unsigned, read without (fastest of interleaved runs); goal < 2 ms;
- ``sign_check_ms_1000``: the work signing adds, alone (parse ``SIGNATURE``, sha256 of RECORD,
  one Ed25519 check), median.

Built by the build (``hotswap build``, ``--sign``) from generated plugins. ``--quick`` uses
tiny sizes (the smoke test; numbers mean nothing); ``--json`` prints one JSON object last.
Measures only; asserts nothing.
"""

from __future__ import annotations

import gc
import hashlib
import os
import random
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _plugins import make_plugin
from _util import emit, log, median, parser

from hotswap_build.build import build
from hotswap_runtime.artifact import read_artifact
from hotswap_runtime.signing import generate_key, load_trusted_keys, parse_signature


def _data_plugin(root: Path, name: str, total: int, kind: str) -> Path:
    """A small plugin shipping ``total`` bytes of data files (``--include``)."""
    folder = make_plugin(root, name, 2)
    data = folder / "data"
    data.mkdir()
    (data / "__init__.py").write_text("")
    chunk = 1 << 20
    source = Path(random.__file__).read_bytes()
    text = (source * (chunk // len(source) + 1))[:chunk]
    for i in range(max(1, total // chunk)):
        body = os.urandom(chunk) if kind == "random" else text
        (data / f"part{i:04d}.{'bin' if kind == 'random' else 'txt'}").write_bytes(body)
    return folder


def _floor(path: Path) -> None:
    """The limit the issue names: one read of the file and one sha256 pass over it."""
    with open(path, "rb", buffering=0) as handle:
        data = handle.read()
    hashlib.sha256(data).digest()


def _throughput(path: Path, runs: int) -> tuple[float, float]:
    """MB of member data per second: of ``read_artifact``, and of the floor (interleaved)."""
    artifact = read_artifact(path)
    size = sum(len(d) for d in artifact.files.values())
    del artifact
    times, floor = [], []
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        artifact = read_artifact(path)
        times.append(time.perf_counter() - started)
        del artifact
        gc.collect()
        started = time.perf_counter()
        _floor(path)
        floor.append(time.perf_counter() - started)
    return size / 1e6 / median(times), size / 1e6 / median(floor)


def main() -> None:
    args = parser(__doc__).parse_args()
    total = 2 << 20 if args.quick else 100_000_000
    modules = 20 if args.quick else 1000
    runs = 3 if args.quick else 15
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.setdefault("HOTSWAP_CACHE_DIR", str(root / "cache"))
        for kind, key in (("random", "load_mb_per_s"), ("source", "load_mb_per_s_source")):
            plugin = _data_plugin(root / kind, "big", total, kind)
            artifact = build(plugin, root / kind / "out", include=r"\.(bin|txt)$").artifact
            assert artifact is not None
            log(f"{kind}: {artifact.stat().st_size / 1e6:.1f} MB artifact")
            results[key], floor = _throughput(artifact, runs)
            if kind == "random":
                results["load_floor_mb_per_s"] = floor
            artifact.unlink()
        plugin = make_plugin(root / "mods", "many", modules)
        key = root / "deploy.key"
        generate_key(key)
        plain = build(plugin, root / "plain").artifact
        signed = build(plugin, root / "signed", sign=key).artifact
        assert plain is not None and signed is not None
        trusted = load_trusted_keys([f"{key}.pub"])
        read_artifact(plain)
        read_artifact(signed, trusted_keys=trusted)
        plain_times, signed_times = [], []
        for _ in range(runs * 4):  # interleaved, so load on the machine hits both alike
            started = time.perf_counter()
            read_artifact(plain)
            plain_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            read_artifact(signed, trusted_keys=trusted)
            signed_times.append(time.perf_counter() - started)
        results["read_1000_unsigned_ms"] = median(plain_times) * 1000
        # the fastest run of each: the least disturbed by the rest of the machine
        results["sign_verify_overhead_ms_1000"] = (min(signed_times) - min(plain_times)) * 1000
        # the work signing adds, alone: parse SIGNATURE, hash RECORD, one Ed25519 check
        members = zipfile.ZipFile(signed).read
        record = members("many.hsp-info/RECORD")
        signature = members("many.hsp-info/SIGNATURE")
        check = []
        for _ in range(runs * 20):
            started = time.perf_counter()
            parsed = parse_signature(signature)
            assert trusted.verify(parsed, hashlib.sha256(record).digest())
            check.append(time.perf_counter() - started)
        results["sign_check_ms_1000"] = median(check) * 1000
    table = "\n".join(f"{k:<30} {v:10.2f}" for k, v in results.items())
    emit(results, args.json, table)


if __name__ == "__main__":
    main()
