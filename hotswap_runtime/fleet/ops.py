"""What ``hotswap publish``/``status``/``rollback``/``rollout`` do, as plain functions (README "Fleet").

The CLI (``hotswap_build/cli.py``) parses and prints; tests and deploy tools call these
directly. Every function takes a ``Channel`` or what ``open_channel`` takes, and raises
``HotswapError`` (``ChannelError`` for the channel) with what, where and how to fix.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from ..artifact import read_artifact
from ..errors import HotswapError
from .channel import ArtifactRef, Channel, ChannelError, ChannelUnavailable, Release
from .follower import InstanceStatus, target_revision
from .open import open_channel

__all__ = ["Gate", "InstanceRow", "RolloutResult", "gate", "gate_json", "parse_steps", "publish",
           "rollback", "rollout", "status_table", "verify_artifacts", "wait_for_gate"]

Echo = Callable[[str], None]


def _channel(channel: Channel | str | os.PathLike[str]) -> Channel:
    return channel if isinstance(channel, Channel) else open_channel(channel)


def _by() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in a bare container: still publish
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def verify_artifacts(paths: Sequence[str | os.PathLike[str]],
                     trusted_keys: Iterable[str | os.PathLike[str] | bytes] = ()
                     ) -> dict[str, tuple[Path, ArtifactRef]]:
    """Verify every artifact exactly as the runtime does (signatures too with keys).

    Returns plugin name -> (path, ref). Raises one ``HotswapError`` listing every problem.
    """
    keys = None
    trusted = list(trusted_keys)
    if trusted:
        from ..signing import load_trusted_keys

        keys = load_trusted_keys(trusted)
    if not paths:
        raise HotswapError("no artifacts given; name the .hsp files to publish", step="publish")
    problems: list[str] = []
    found: dict[str, tuple[Path, ArtifactRef]] = {}
    seen: dict[str, str] = {}
    for raw in paths:
        path = Path(raw)
        try:
            artifact = read_artifact(path, trusted_keys=keys)
        except HotswapError as exc:
            problems.append(str(exc))
            continue
        key = artifact.name.lower()
        if key in seen:
            problems.append(f'plugin "{artifact.name}" is given twice ({seen[key]} and {path}); '
                            "publish one artifact per plugin")
            continue
        seen[key] = str(path)
        ref = ArtifactRef(name=artifact.name, file=f"{artifact.name}.hsp", sha256=artifact.sha256,
                          size=path.stat().st_size, build_id=artifact.build_id)
        found[artifact.name] = (path, ref)
    if problems:
        raise HotswapError("; ".join(problems) + "; nothing was published", step="publish")
    return found


def publish(channel: Channel | str | os.PathLike[str], artifacts: Sequence[str | os.PathLike[str]],
            *, cohort: int = 100, note: str = "",
            trusted_keys: Iterable[str | os.PathLike[str] | bytes] = (),
            previous: int | None | Literal["current"] = "current", by: str | None = None
            ) -> Release:
    """Verify ``artifacts`` and publish them as the next revision, atomically.

    Args:
        cohort: share of instances (1-100) that take it; the others stay on ``previous``.
        previous: the revision the others stay on; ``"current"`` (the default) for the current
            one (a rollout passes the revision before it began).

    Raises:
        HotswapError: an artifact does not verify (nothing is published), the cohort is out of
            range, or the channel refused (another publisher won: ``PublishConflict``).
    """
    if not 1 <= cohort <= 100:
        raise HotswapError(f"cohort {cohort} is not a percentage from 1 to 100", step="publish")
    found = verify_artifacts(artifacts, trusted_keys)
    ch = _channel(channel)
    for path, ref in found.values():
        ch.put_artifact(path, ref)
    return _publish_refs(ch, {ref.name: ref for _, ref in found.values()}, cohort=cohort,
                         note=note, previous=previous, by=by)


def _publish_refs(ch: Channel, refs: dict[str, ArtifactRef], *, cohort: int, note: str,
                  previous: int | None | Literal["current"] = "current", by: str | None = None
            ) -> Release:
    current = ch.current()
    revision = (current.revision if current is not None else 0) + 1
    if previous == "current":
        previous = current.revision if current is not None else None
    release = Release(channel=ch.name, revision=revision, previous=previous,
                      cohort=cohort, artifacts=refs, published=_now(), by=by or _by(), note=note)
    return ch.publish_release(release)


def rollback(channel: Channel | str | os.PathLike[str], to: int | None = None,
             note: str = "") -> Release:
    """Publish a new revision (cohort 100) with the artifacts of ``to`` (default: the release
    before the current one), so the history stays linear.

    Raises:
        ChannelError: nothing to roll back to, or ``to`` is unknown.
    """
    ch = _channel(channel)
    current = ch.current()
    if current is None:
        raise ChannelError(f"nothing to roll back: channel {ch.url} has no release yet; "
                           "publish one with hotswap publish")
    if to is None:
        if current.previous is None:
            raise ChannelError(f"nothing to roll back to: revision {current.revision} of "
                               f"{ch.url} is the first; give --to REVISION")
        to = current.previous
    source = ch.release(to)
    return _publish_refs(ch, dict(source.artifacts), cohort=100,
                         note=note or f"rollback to {to}", previous=current.revision)


@dataclass(frozen=True)
class InstanceRow:
    """One instance as ``status`` shows it: its report, whether stale, what it should run."""

    status: InstanceStatus
    stale: bool
    wanted: int | None

    @property
    def shown_state(self) -> str:
        return "stale" if self.stale else self.status.state

    @property
    def lagging(self) -> bool:
        return not self.stale and (self.status.revision != self.wanted or self.status.state != "ok")


@dataclass(frozen=True)
class Gate:
    """The verdict of ``status``: ``ok`` when every live instance runs its revision with ``ok``."""

    release: Release | None
    revision: int | None
    rows: tuple[InstanceRow, ...]

    @property
    def live(self) -> list[InstanceRow]:
        return [r for r in self.rows if not r.stale]

    @property
    def ok(self) -> bool:
        return bool(self.live) and not any(r.lagging for r in self.live)

    @property
    def failed(self) -> list[InstanceRow]:
        return [r for r in self.live if r.status.state == "failed" and r.status.attempted == r.wanted]

    @property
    def settled(self) -> bool:
        """Every live instance has either taken its revision or failed on it: waiting longer
        changes nothing, since a failed revision is not retried by itself."""
        failed = {id(r) for r in self.failed}
        return all(not r.lagging or id(r) in failed for r in self.live)

    def summary(self) -> str:
        """``4/4 on 7, ok; 1 stale`` (or what lags)."""
        live = self.live
        on = sum(1 for r in live if not r.lagging)
        stale = len(self.rows) - len(live)
        target = self.revision if self.revision is not None else "-"
        if not live:
            verdict = "no live instance"
        elif self.ok:
            verdict = "ok"
        else:
            failed = sum(1 for r in live if r.status.state == "failed")
            verdict = f"{failed} failed" if failed else f"{len(live) - on} lagging"
            if failed and len(live) - on > failed:
                verdict += f", {len(live) - on - failed} lagging"
        text = f"{on}/{len(live)} on {target}, {verdict}"
        if self.release is not None and self.release.cohort < 100:
            text += f" (cohort {self.release.cohort}%, others on {self.release.previous})"
        return text + (f"; {stale} stale" if stale else "")

    def problems(self) -> list[str]:
        """One phrase per live instance that lags or failed, for the exit message."""
        out = []
        for r in self.live:
            if r.lagging:
                s = r.status
                what = (f"failed on {s.attempted}: {_one_line(s.error)}" if s.state == "failed"
                        else f"{s.state} on {s.revision}, wants {r.wanted}")
                out.append(f"{s.instance} {what}")
        return out


def gate(channel: Channel | str | os.PathLike[str], revision: int | None = None,
         now: float | None = None) -> Gate:
    """Read every report and judge it against the current release (or ``revision``)."""
    ch = _channel(channel)
    release = ch.current()
    if revision is not None:
        release = ch.release(revision)
    now = time.time() if now is None else now
    rows = []
    for raw in ch.statuses():
        try:
            status = InstanceStatus.from_json(raw)
        except TypeError:
            continue
        rows.append(InstanceRow(status, status.stale(now), target_revision(release, status.instance)))
    return Gate(release, release.revision if release is not None else None, tuple(rows))


def gate_json(result: Gate) -> dict[str, object]:
    """``status --json``: the release, the verdict and every report (with ``stale`` and
    ``wants``, the revision meant for it)."""
    return {
        "release": result.release.to_json() if result.release is not None else None,
        "revision": result.revision,
        "ok": result.ok,
        "summary": result.summary(),
        "instances": [{**row.status.to_json(), "stale": row.stale, "wants": row.wanted}
                      for row in result.rows],
    }


def _one_line(error: str | None) -> str:
    """An instance's error on one line (a table row, the one ``Error:`` line of the CLI)."""
    return (error or "").replace("\r", " ").replace("\n", " ")


def _age(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def status_table(result: Gate, now: float | None = None) -> str:
    """The aligned table (instance, revision, state, age, error) and the summary line."""
    now = time.time() if now is None else now
    header = ("INSTANCE", "REVISION", "STATE", "AGE", "ERROR")
    lines = [header]
    for row in result.rows:
        s = row.status
        rev = "-" if s.revision is None else str(s.revision)
        if row.wanted is not None and s.revision != row.wanted:
            rev += f" (wants {row.wanted})"
        error = _one_line(s.error)
        lines.append((s.instance, rev, row.shown_state, _age(s.age(now)), error))
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    text = ["  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(line)).rstrip()
            for line in lines]
    if len(lines) == 1:
        text.append("(no instance has reported)")
    text.append(result.summary())
    return "\n".join(text)


def wait_for_gate(channel: Channel | str | os.PathLike[str], revision: int | None = None,
                  timeout: float = 60.0, poll: float = 0.1,
                  stop_on_failure: bool = False, stop_when_settled: bool = False) -> Gate:
    """Poll ``gate`` until it is ``ok`` (or an instance failed, with ``stop_on_failure``; or
    some failed and every other took it, with ``stop_when_settled``), or ``timeout`` seconds
    pass; return the last verdict."""
    ch = _channel(channel)
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = gate(ch, revision)
        except ChannelUnavailable:
            result = None
        if result is not None and (result.ok or (result.failed and (
                stop_on_failure or (stop_when_settled and result.settled)))):
            return result
        if time.monotonic() >= deadline:
            return result if result is not None else gate(ch, revision)
        time.sleep(poll)


def parse_steps(text: str) -> list[int]:
    """``10,50,100`` -> [10, 50, 100]; HotswapError unless growing percentages ending at 100."""
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        steps = []
    if (not steps or steps[-1] != 100 or any(not 1 <= s <= 100 for s in steps)
            or any(a >= b for a, b in zip(steps, steps[1:], strict=False))):
        raise HotswapError(f"--steps {text!r} is not a growing list of percentages ending at "
                           "100; write e.g. --steps 10,50,100", step="rollout")
    return steps


@dataclass(frozen=True)
class RolloutResult:
    """What ``rollout`` did: ``release`` is the last step published, ``gate`` the last verdict,
    ``rolled_back`` the revision that put the previous artifacts back (None: none needed, or
    nothing was published before the rollout)."""

    ok: bool
    release: Release
    gate: Gate
    rolled_back: Release | None


def rollout(channel: Channel | str | os.PathLike[str], artifacts: Sequence[str | os.PathLike[str]],
            *, steps: Sequence[int] = (10, 50, 100), pause: float = 0.0, timeout: float = 120.0,
            note: str = "", trusted_keys: Iterable[str | os.PathLike[str] | bytes] = (),
            echo: Echo = lambda line: None) -> RolloutResult:
    """Publish ``artifacts`` to growing cohorts, waiting at each step until every instance of
    the cohort reports ``ok`` on it; on a failure or a timeout, roll back (a new revision with
    the artifacts from before, cohort 100).

    Returns:
        what happened: ``ok``, the last release, the last verdict, the rollback if any.
    """
    found = verify_artifacts(artifacts, trusted_keys)
    ch = _channel(channel)
    for path, ref in found.values():
        ch.put_artifact(path, ref)
    refs = {ref.name: ref for _, ref in found.values()}
    before = ch.current()
    base = before.revision if before is not None else None
    release = before
    for index, pct in enumerate(steps):
        release = _publish_refs(ch, refs, cohort=pct, note=note or f"rollout {pct}%",
                                previous=base)
        echo(f"published revision {release.revision} to {pct}% of instances")
        result = wait_for_gate(ch, release.revision, timeout, stop_on_failure=True)
        if not result.ok:
            why = "; ".join(result.problems()) or "no live instance reported"
            if result.failed:
                echo(f"revision {release.revision} failed: {why}")
            else:
                echo(f"revision {release.revision} timed out after {timeout:g} s: {why}")
            if before is not None:
                back = _publish_refs(ch, dict(before.artifacts), cohort=100,
                                     note=f"automatic rollback of {release.revision}",
                                     previous=release.revision)
                echo(f"rolled back: revision {back.revision} has the artifacts of {before.revision}")
                return RolloutResult(False, release, result, back)
            return RolloutResult(False, release, result, None)
        echo(result.summary())
        if pause > 0 and index < len(steps) - 1:
            time.sleep(pause)
    assert release is not None
    return RolloutResult(True, release, result, None)
