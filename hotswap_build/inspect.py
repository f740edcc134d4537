"""``hotswap inspect``: verify an artifact as the runtime does and describe it.

Beyond the runtime's checks, inspect recompiles every shipped source that has bytecode for this
Python and refuses bytecode whose code differs, so what a reviewer reads is what runs. Every
text taken from the artifact is printed with control characters escaped: a member name holding
terminal escapes cannot hide or rewrite a line of the report.
"""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import re
import sys
from collections.abc import Iterable, Sequence

from hotswap_runtime.artifact import REQUIRED_HOOKS, Artifact, read_artifact
from hotswap_runtime.errors import ArtifactError
from hotswap_runtime.signing import load_trusted_keys

__all__ = ["describe", "describe_json", "printable"]

_PYC = re.compile(r"^(?P<folder>.+)/__pycache__/(?P<stem>[^/.]+)\.[^/.]+(?:\.opt-(?P<opt>[12]))?\.pyc$")


def printable(text: str) -> str:
    """``text`` with every non-printable character (terminal escapes, bidi overrides, line
    breaks) written as its Python escape, so it shows as itself and nothing else."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def _bytecode_problems(artifact: Artifact) -> tuple[list[str], list[str]]:
    """(problems, bytecode members not checked because they are for another Python)."""
    problems: list[str] = []
    foreign: list[str] = []
    for member, data in sorted(artifact.files.items()):
        if not member.endswith(".pyc"):
            continue
        if data[:4] != importlib.util.MAGIC_NUMBER:
            foreign.append(member)
            continue
        match = _PYC.match(member)
        source = artifact.files.get(f"{match['folder']}/{match['stem']}.py") if match else None
        if match is None or source is None:  # the runtime refuses these; kept for a clear message
            problems.append(f"bytecode {member!r} has no source member")
            continue
        optimize = int(match["opt"] or 0)
        source_member = f"{match['folder']}/{match['stem']}.py"
        try:
            expected = compile(source, source_member, "exec", dont_inherit=True, optimize=optimize)
            shipped = marshal.loads(data[16:])
        except (SyntaxError, ValueError, EOFError, TypeError) as exc:
            problems.append(f"bytecode {member!r} cannot be checked against {source_member!r} "
                            f"({type(exc).__name__}: {exc})")
            continue
        # code objects compare their instructions, constants (nested code included), names,
        # line and exception tables: everything that runs, not the file name
        if shipped != expected:
            problems.append(f"bytecode {member!r} does not hold the code of {source_member!r}: "
                            "what would run is not what the source says")
    return problems, foreign


def _load(path: str | os.PathLike[str], trusted: Sequence[str | os.PathLike[str]] = ()
          ) -> tuple[Artifact, list[str]]:
    """Read and verify (signature included with ``trusted`` keys); check the manifest lists the
    seven functions and every pyc holds its source's code. Returns the artifact and the pycs
    left unchecked (made for another Python)."""
    keys = load_trusted_keys(trusted) if trusted else None
    artifact = read_artifact(path, trusted_keys=keys)
    problems: list[str] = []
    missing = sorted(set(REQUIRED_HOOKS) - set(artifact.manifest.hooks))
    if missing:
        problems.append(f"missing functions: {', '.join(missing)}")
    found, foreign = _bytecode_problems(artifact)
    problems.extend(found)
    if problems:
        raise ArtifactError(f"artifact {artifact.path} does not verify: {'; '.join(problems)}; "
                            "rebuild it with hotswap build", path=artifact.path,
                            plugin=artifact.name, problems=tuple(problems))
    return artifact, foreign


def _signed_by(artifact: Artifact) -> str:
    if artifact.signature is None:
        return "- (unsigned)"
    if artifact.signed_by is not None:
        return f"{artifact.signed_by} (verified against the trusted keys)"
    return (f"{artifact.signature.key_id} (not checked: pass --trusted-key KEYFILE.pub to "
            "verify it)")


def describe(path: str | os.PathLike[str], trusted: Sequence[str | os.PathLike[str]] = ()) -> str:
    """The manifest of the artifact at ``path``, readable; raises ``ArtifactError``."""
    artifact, foreign = _load(path, trusted)
    m = artifact.manifest
    bytecode = "none (sources only)"
    if m.bytecode:
        bytecode = f"{m.bytecode['cache_tag']}, optimize={m.bytecode['optimize']}"
        bytecode += (f" (not checked by this Python, {sys.implementation.cache_tag})" if foreign
                     else " (matches the sources)")
    lines = [
        f"Artifact:        {artifact.path}",
        f"Plugin:          {m.name}",
        f"Build id:        {m.build_id}",
        f"SHA-256:         {artifact.sha256}",
        f"Signed by:       {_signed_by(artifact)}",
        f"Import name:     {m.import_name}",
        f"Built by:        hotswap {m.hotswap_version}, Python {m.python}",
        f"Git commit:      {m.git_commit or '-'}",
        f"Sources:         {m.source_dir or '-'}",
        f"Bytecode:        {bytecode}",
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
    return "\n".join(_printable_lines(lines))


def _printable_lines(lines: Iterable[str]) -> Iterable[str]:
    return (printable(line) for line in lines)


def describe_json(path: str | os.PathLike[str],
                  trusted: Sequence[str | os.PathLike[str]] = ()) -> str:
    """The same as ``describe``, as JSON: path, sha256, signature, manifest, files (path -> size).

    JSON escapes control characters itself.
    """
    artifact, foreign = _load(path, trusted)
    body = {
        "path": artifact.path,
        "sha256": artifact.sha256,
        "verified": True,
        "signed_by": artifact.signature.key_id if artifact.signature is not None else None,
        "signature_verified": artifact.signed_by is not None,
        "bytecode_checked": bool(artifact.manifest.bytecode) and not foreign,
        "manifest": json.loads(artifact.manifest.to_json()),
        "files": {member: len(data) for member, data in sorted(artifact.files.items())},
    }
    return json.dumps(body, indent=2, sort_keys=True)
