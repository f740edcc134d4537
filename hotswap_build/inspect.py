"""``hotswap inspect``: verify an artifact as the runtime does and describe it."""

from __future__ import annotations

import json
import os

from hotswap_runtime.artifact import REQUIRED_HOOKS, Artifact, read_artifact
from hotswap_runtime.errors import ArtifactError

__all__ = ["describe", "describe_json"]


def _load(path: str | os.PathLike[str]) -> Artifact:
    """Read and verify, and check the manifest lists the seven functions the runtime needs."""
    artifact = read_artifact(path)
    missing = sorted(set(REQUIRED_HOOKS) - set(artifact.manifest.hooks))
    if missing:
        problem = f"missing functions: {', '.join(missing)}"
        raise ArtifactError(f"artifact {artifact.path} does not verify: {problem}; rebuild it "
                            "with hotswap build", path=artifact.path, plugin=artifact.name,
                            problems=(problem,))
    return artifact


def describe(path: str | os.PathLike[str]) -> str:
    """The manifest of the artifact at ``path``, readable; raises ``ArtifactError``."""
    artifact = _load(path)
    m = artifact.manifest
    lines = [
        f"Artifact:        {artifact.path}",
        f"Plugin:          {m.name}",
        f"Build id:        {m.build_id}",
        f"SHA-256:         {artifact.sha256}",
        f"Import name:     {m.import_name}",
        f"Built by:        hotswap {m.hotswap_version}, Python {m.python}",
        f"Git commit:      {m.git_commit or '-'}",
        "Bytecode:        " + (f"{m.bytecode['cache_tag']}, optimize={m.bytecode['optimize']}"
                                if m.bytecode else "none (sources only)"),
        f"Live prefix:     {m.live_prefix}",
        f"Hooks:           {', '.join(m.hooks)}",
    ]
    for title, names in (("Live functions", m.live_funcs), ("Live types", m.live_types),
                         ("Stamps", m.stamps)):
        lines.append(f"{title + ':':<17}-" if not names else f"{title}:")
        lines.extend(f"  {k} = {v!r}" if title == "Stamps" else f"  {k}  ({v})"
                     for k, v in sorted(names.items()))
    lines.append(f"Files:           {len(artifact.files)}")
    lines.extend(f"  {member}  {len(data)} bytes"
                 for member, data in sorted(artifact.files.items()))
    lines.append("Verified:        ok")
    return "\n".join(lines)


def describe_json(path: str | os.PathLike[str]) -> str:
    """The same as ``describe``, as JSON: path, sha256, manifest, files (path -> size)."""
    artifact = _load(path)
    body = {
        "path": artifact.path,
        "sha256": artifact.sha256,
        "verified": True,
        "manifest": json.loads(artifact.manifest.to_json()),
        "files": {member: len(data) for member, data in sorted(artifact.files.items())},
    }
    return json.dumps(body, indent=2, sort_keys=True)
