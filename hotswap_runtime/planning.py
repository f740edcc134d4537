"""``swapper.plan()``: the dry run of a reload — artifacts read and verified, nothing imported.

Design note on what a plan can know: the manifest carries no dependencies, and a fresh
artifact's dependencies are known only once its ``import_`` runs, which a dry run must not do.
The running versions' dependencies are known (their ``import_`` ran at their load), so the plan
marks as ``re-wired`` every running, unchanged plugin that depends (directly or through other
re-wired ones) on a plugin that would get a fresh version — exactly the rule ``reload`` applies.
What it cannot foresee: a fresh version importing a plugin that is missing, a dependency cycle
a fresh version introduces, and any failure of an import, hook or ``self_test``; ``prepare()``
finds those without changing anything.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .artifact import Artifact, read_artifact
from .errors import HotswapError
from .listing import artifact_files

if TYPE_CHECKING:
    from .manager import PluginManager
    from .signing import TrustedKeys
    from .version import Version

__all__ = ["plan_folder"]


def plan_folder(folder: str, whitelist: list[str] | None, current: PluginManager | None,
                trusted_keys: TrustedKeys | None = None) -> dict[str, str]:
    """What ``reload()`` would do with ``folder``, as artifact path (or name) -> word.

    Raises:
        HotswapError: the folder cannot be read.
    """
    wanted = {name.lower() for name in whitelist} if whitelist is not None else None
    result: dict[str, str] = {}
    paths: dict[str, str] = {}
    for key, path in artifact_files(folder, step="plan"):
        if wanted is not None and key not in wanted:
            continue
        if key in paths:
            why = (f"duplicate name: {os.path.basename(paths[key])} and "
                   f"{os.path.basename(path)} differ only in case; remove all but one")
            result[paths[key]] = result[path] = f"error: {why}"
            continue
        paths[key] = path
    artifacts: dict[str, Artifact] = {}
    for key, path in paths.items():
        if path in result:
            continue
        try:
            artifacts[key] = read_artifact(path, trusted_keys=trusted_keys)
        except HotswapError as exc:
            result[path] = f"error: {exc}"
    running: dict[str, Version] = {}
    if current is not None:
        running = {v.name.lower(): v for v in current._versions()}
    if not paths:  # reload keeps the current plugins when the folder holds none
        for key, version in running.items():
            result[version.file] = "unchanged"
        return result
    fresh: set[str] = set()
    unchanged: set[str] = set()
    for key, version in running.items():
        if not version.reloadable:
            result[paths.get(key, version.name)] = "not reloadable"
        elif key not in paths:
            result[version.name] = "dropped"
    for key, artifact in artifacts.items():
        previous = running.get(key)
        if previous is not None and not previous.reloadable:
            continue
        if previous is not None and previous.static is None and previous.build_id == artifact.build_id:
            unchanged.add(key)
            result[artifact.path] = "unchanged"
        else:
            fresh.add(key)
            result[artifact.path] = "ok"
    changed = True
    while changed:
        changed = False
        for key in sorted(unchanged):
            if any(dep in fresh for dep in running[key].deps):
                unchanged.discard(key)
                fresh.add(key)
                result[paths[key]] = "re-wired"
                changed = True
    return dict(sorted(result.items()))
