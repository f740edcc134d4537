"""The channel contract: where releases are published and where instances report (README "Fleet").

Design note. One blocking interface, two implementations: the folder channel (``folder.py``,
the embedded default) and the NATS JetStream channel (``nats.py``, the ``fleet`` extra). The
follower, the CLI (``publish``/``status``/``rollback``/``rollout``) and the shared test suite
talk only to :class:`Channel`, so a test written once runs against both. The interface is
synchronous because the follower's thread form and the CLI are synchronous; an implementation
built on an asyncio client runs its own loop in a private thread, and the follower's asyncio
form calls the channel through ``asyncio.to_thread``. Every method may raise
:class:`ChannelUnavailable` (the channel cannot be reached right now: retry later, keep
serving) or :class:`ChannelError` (it was reached and refused: a wrong path, a lost
compare-and-set, a tampered object).

Nothing here imports a client library: ``hotswap_runtime.fleet`` costs a host nothing until it
opens a channel.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import HotswapError

__all__ = [
    "ArtifactRef",
    "Channel",
    "ChannelError",
    "ChannelUnavailable",
    "PublishConflict",
    "Release",
    "cohort_bucket",
    "in_cohort",
]


class ChannelError(HotswapError):
    """A channel was reached and refused the request (what, where and how to fix in the text)."""


class ChannelUnavailable(ChannelError):
    """A channel cannot be reached right now; a follower keeps serving and retries."""


class PublishConflict(ChannelError):
    """Another publisher published first: the revision asked for is taken (compare-and-set lost)."""


@dataclass(frozen=True)
class ArtifactRef:
    """One artifact of a release, as ``RELEASE.json`` names it."""

    name: str       # plugin name
    file: str       # "<name>.hsp"
    sha256: str     # hex digest of the whole file: the content address in every channel
    size: int
    build_id: str

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "size": self.size, "build_id": self.build_id}


@dataclass(frozen=True)
class Release:
    """A numbered set of artifacts that go live together, all or none (``RELEASE.json``)."""

    channel: str
    revision: int
    previous: int | None
    cohort: int                                   # 1..100
    artifacts: Mapping[str, ArtifactRef]          # plugin name -> artifact
    published: str                                # ISO 8601, UTC, "Z"
    by: str
    note: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)   # unknown keys, kept for round trips

    def to_json(self) -> dict[str, Any]:
        """The ``RELEASE.json`` object (keys of the contract first, then any unknown ones kept)."""
        return {
            **self.extra,
            "channel": self.channel,
            "revision": self.revision,
            "previous": self.previous,
            "cohort": self.cohort,
            "artifacts": {name: ref.to_json() for name, ref in sorted(self.artifacts.items())},
            "published": self.published,
            "by": self.by,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, raw: bytes | str | Mapping[str, Any], *, where: str) -> Release:
        """Parse and check a ``RELEASE.json``; ChannelError naming ``where`` when it is not one."""
        try:
            obj = json.loads(raw) if isinstance(raw, (bytes, str)) else dict(raw)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
            known = {"channel", "revision", "previous", "cohort", "artifacts", "published", "by", "note"}
            revision, previous, cohort = obj["revision"], obj["previous"], obj["cohort"]
            if type(revision) is not int or revision < 1:
                raise ValueError(f"revision {revision!r} is not a positive integer")
            if previous is not None and (type(previous) is not int or not 1 <= previous < revision):
                raise ValueError(f"previous {previous!r} is not null or a revision before {revision}")
            if type(cohort) is not int or not 1 <= cohort <= 100:
                raise ValueError(f"cohort {cohort!r} is not an integer from 1 to 100")
            artifacts = {}
            for name, a in dict(obj["artifacts"]).items():
                ref = ArtifactRef(name=str(name), file=str(a["file"]), sha256=str(a["sha256"]),
                                  size=int(a["size"]), build_id=str(a["build_id"]))
                if ref.file != f"{ref.name}.hsp" or len(ref.sha256) != 64:
                    raise ValueError(f"artifact {name!r} is not '<name>.hsp' with a sha256")
                artifacts[ref.name] = ref
            return cls(channel=str(obj["channel"]), revision=revision, previous=previous,
                       cohort=cohort, artifacts=artifacts, published=str(obj["published"]),
                       by=str(obj["by"]), note=str(obj.get("note") or ""),
                       extra={k: v for k, v in obj.items() if k not in known})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ChannelError(f"{where}: not a release ({exc}); publish it again with hotswap publish") from exc


#: a report older than this many of its heartbeats (and STATUS_TTL_MIN_S) is forgotten by the
#: channel: a vanished instance shows ``stale`` for a while (after 3), then drops off the list
STATUS_TTL_HEARTBEATS = 6
STATUS_TTL_MIN_S = 5.0


def status_expired(report: Mapping[str, Any], age: float) -> bool:
    """Whether a report ``age`` seconds old is past its time to live (see STATUS_TTL_*)."""
    try:
        heartbeat = float(report.get("heartbeat") or 0.0)
    except (TypeError, ValueError):
        heartbeat = 0.0
    return age > max(STATUS_TTL_MIN_S, STATUS_TTL_HEARTBEATS * heartbeat)


def cohort_bucket(instance_id: str) -> int:
    """The instance's place (0-99) in the cohort rule: ``int(sha256(instance_id)[:8], 16) % 100``."""
    return int(hashlib.sha256(instance_id.encode()).hexdigest()[:8], 16) % 100


def in_cohort(instance_id: str, cohort: int) -> bool:
    """The documented cohort rule: an instance is in cohort ``p`` when its bucket is below ``p``,
    so growing ``p`` only adds instances."""
    return cohort_bucket(instance_id) < cohort


class Channel(abc.ABC):
    """Where releases are published and instances report; see the module note."""

    #: the channel's name (a folder channel: its folder's base name; NATS: the URL's path)
    name: str
    #: what the user passed to open_channel, for messages (credentials removed)
    url: str

    # -- releases ---------------------------------------------------------------------------
    @abc.abstractmethod
    def current(self) -> Release | None:
        """The live release, or None when nothing was ever published."""

    @abc.abstractmethod
    def release(self, revision: int) -> Release:
        """One release of the history; ChannelError naming it when it is unknown."""

    @abc.abstractmethod
    def history(self) -> list[Release]:
        """Every release still kept, oldest first."""

    @abc.abstractmethod
    def put_artifact(self, path: Path, ref: ArtifactRef) -> None:
        """Store one artifact under its sha256 (idempotent); called by publish before publish_release."""

    @abc.abstractmethod
    def publish_release(self, release: Release) -> Release:
        """Make ``release`` current, atomically, only if ``release.revision`` is the current one + 1
        (or 1 on an empty channel): compare-and-set, so of two publishers one wins and the other
        gets PublishConflict. Every artifact must already be stored."""

    @abc.abstractmethod
    def fetch_artifact(self, ref: ArtifactRef, dest: Path) -> Path:
        """Copy the artifact into the file ``dest`` (written atomically) and check its sha256 and
        size; ChannelError naming the artifact when they differ (nothing left at ``dest``)."""

    @abc.abstractmethod
    def wait_for_change(self, after: int | None, timeout: float) -> Release | None:
        """Block until the current revision differs from ``after`` (a watch where the channel has
        one, no polling loop), or ``timeout`` seconds pass; return the current release then (None
        on timeout with no change)."""

    # -- instances ----------------------------------------------------------------------------
    @abc.abstractmethod
    def report(self, status: Mapping[str, Any]) -> None:
        """Write one instance's status (the InstanceStatus JSON), replacing its last one."""

    @abc.abstractmethod
    def statuses(self) -> list[dict[str, Any]]:
        """The last report of every instance still known, sorted by instance id."""

    def close(self) -> None:  # noqa: B027 - optional hook, most channels hold nothing
        """Release connections and threads; the channel is unusable afterwards."""
