"""Listing a plugin folder: artifact names, the whitelist, and reading each artifact once."""

from __future__ import annotations

import os

from .artifact import ARTIFACT_SUFFIX, Artifact, read_artifact
from .errors import HotswapError
from .signing import TrustedKeys

__all__ = ["artifact_files", "list_artifacts"]


def artifact_files(folder: str, step: str) -> list[tuple[str, str]]:
    """(lower-case plugin name, path) of each artifact file in ``folder``, sorted by file name.

    Hidden files and other suffixes are skipped; a ``*.hsp`` entry that is not a regular file
    (a folder, a FIFO, a device) is listed, so that reading it reports it by name instead of
    silently dropping the plugin it replaced. Names are not de-duplicated.

    Raises:
        HotswapError: the folder cannot be read (reported with ``step``).
    """
    try:
        entries = sorted(os.listdir(folder))
    except OSError as exc:
        raise HotswapError(
            f"plugin folder {folder} cannot be read ({exc.strerror or exc}); check the "
            "folder given to PluginManagerSwapper",
            step=step,
        ) from exc
    files: list[tuple[str, str]] = []
    for entry in entries:
        if not entry.endswith(ARTIFACT_SUFFIX) or entry.startswith("."):
            continue
        files.append((entry[: -len(ARTIFACT_SUFFIX)].lower(), os.path.join(folder, entry)))
    return files


def list_artifacts(folder: str, whitelist: list[str] | None,
                   trusted_keys: TrustedKeys | None = None) -> dict[str, Artifact]:
    """Read and verify the artifacts of ``folder`` that ``whitelist`` (None: all) selects
    (signed by one of ``trusted_keys`` when given).

    Returns lower-case plugin name -> ``Artifact``; an empty dict when there is none.

    Raises:
        HotswapError: the folder cannot be read, two names differ only in case, whitelisted
            names are missing, or artifacts do not verify (every one is reported).
    """
    paths: dict[str, str] = {}
    duplicates: list[str] = []
    for key, path in artifact_files(folder, step="list"):
        if key in paths:
            duplicates.append(f"{os.path.basename(paths[key])} and {os.path.basename(path)}")
        else:
            paths[key] = path
    if duplicates:
        raise HotswapError(
            f"duplicate name: artifacts {'; '.join(duplicates)} in {folder} differ only in "
            "case; remove all but one",
            step="list",
        )
    if not paths:
        return {}
    if whitelist is not None:
        wanted = {name.lower(): name for name in whitelist}
        missing = sorted(name for key, name in wanted.items() if key not in paths)
        if missing:
            quoted = ", ".join(f'"{name}"' for name in missing)
            raise HotswapError(
                f"whitelisted plugins not found in {folder}: {quoted}; build them into it "
                "or remove them from the whitelist",
                plugin=missing[0], step="list",
            )
        paths = {key: path for key, path in paths.items() if key in wanted}
    artifacts: dict[str, Artifact] = {}
    errors: list[HotswapError] = []
    for key, path in sorted(paths.items()):
        try:
            artifacts[key] = read_artifact(path, trusted_keys=trusted_keys)
        except HotswapError as exc:
            errors.append(exc)
    if errors:
        if len(errors) == 1:
            raise errors[0]
        raise HotswapError("; ".join(str(e) for e in errors), plugin=errors[0].plugin,
                           step="verify") from errors[0]
    return artifacts
