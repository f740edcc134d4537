"""The folder channel's own layout and rules (README "Fleet"): release folders, the current link,
compare-and-set, status files and their expiry."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hotswap_runtime.fleet import FolderChannel, PublishConflict, Release, ops


def test_layout_of_a_published_release(tmp_path: Path, releases) -> None:
    """releases/<N>/ holds exactly the artifacts and RELEASE.json; current links to it."""
    root = tmp_path / "prod"
    ops.publish(root, releases("v1"), note="hello")
    ops.publish(root, releases("v2"), cohort=40)
    assert os.readlink(root / "current") == "releases/2"
    assert sorted(p.name for p in (root / "releases" / "2").iterdir()) == [
        "RELEASE.json", "alpha.hsp", "beta.hsp"]
    raw = json.loads((root / "releases" / "2" / "RELEASE.json").read_text())
    assert list(raw) == ["channel", "revision", "previous", "cohort", "artifacts", "published",
                         "by", "note"]
    assert (raw["channel"], raw["revision"], raw["previous"], raw["cohort"]) == ("prod", 2, 1, 40)
    assert list(raw["artifacts"]["alpha"]) == ["file", "sha256", "size", "build_id"]
    assert json.loads((root / "releases" / "1" / "RELEASE.json").read_text())["previous"] is None
    assert not any(p.name.startswith(".") and p.is_dir() for p in (root / "releases").iterdir())


def test_concurrent_publishers_one_wins_per_revision(tmp_path: Path, releases) -> None:
    """Threads publishing revision 2 at once: exactly one wins, the others get PublishConflict."""
    channel = FolderChannel(tmp_path / "chan")
    first = ops.publish(channel, releases("v1"))
    results: list[object] = []
    barrier = threading.Barrier(4)

    def publish() -> None:
        barrier.wait()
        release = Release(channel="chan", revision=2, previous=1, cohort=100,
                          artifacts=first.artifacts, published="2026-12-04T12:00:00Z", by="t")
        try:
            results.append(channel.publish_release(release).revision)
        except PublishConflict as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=publish) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(2) == 1
    conflicts = [r for r in results if r != 2]
    assert len(conflicts) == 3 and all(
        str(c).startswith(f"revision 2 cannot be published to {channel.url}: the current revision "
                          "is 2") for c in conflicts)
    assert [r.revision for r in channel.history()] == [1, 2]


def test_reports_expire_like_the_nats_status_bucket(tmp_path: Path, releases) -> None:
    """A report older than six heartbeats (at least 5 s) is dropped from statuses()."""
    channel = FolderChannel(tmp_path / "chan")
    ops.publish(channel, releases("v1"))
    channel.report({"instance": "old:1", "heartbeat": 0.5, "updated": "2026-12-04T12:00:00Z"})
    channel.report({"instance": "new:1", "heartbeat": 0.5, "updated": "2026-12-04T12:00:00Z"})
    path = next((tmp_path / "chan" / "status").glob("old*"))
    past = time.time() - 6
    os.utime(path, (past, past))
    assert [s["instance"] for s in channel.statuses()] == ["new:1"]
    assert not path.exists()


@pytest.mark.parametrize("instance", ["web-1:42", "a/b", ".hidden", "ü"])
def test_status_files_are_named_safely(tmp_path: Path, releases, instance: str) -> None:
    """Any instance id becomes one file in status/ and reads back as itself."""
    channel = FolderChannel(tmp_path / "chan")
    ops.publish(channel, releases("v1"))
    channel.report({"instance": instance, "heartbeat": 1.0})
    [only] = list((tmp_path / "chan" / "status").iterdir())
    assert not only.name.startswith(".") and "/" not in only.name
    assert [s["instance"] for s in channel.statuses()] == [instance]


def test_a_follower_fetches_from_the_release_not_the_staged_copy(
        tmp_path: Path, releases, monkeypatch: pytest.MonkeyPatch) -> None:
    """A publisher unlinks its ``.incoming`` copy right after switching ``current``: a follower
    quick to see the release must not be reading that copy (it failed with 'No such file')."""
    from hotswap_runtime.fleet import folder

    channel = FolderChannel(tmp_path / "chan")
    release = ops.publish(channel, releases("v1"))
    ref = release.artifacts["alpha"]
    channel.put_artifact(releases("v1")[0], ref)  # a staged copy beside the published one
    staged = tmp_path / "chan" / ".incoming" / f"{ref.sha256}.hsp"
    assert staged.is_file()
    real_copy = folder.copy_checked

    def publisher_unlinks_meanwhile(source: Path, *args: Any) -> Path:
        staged.unlink(missing_ok=True)  # the publisher's clean-up, at the worst moment
        return real_copy(source, *args)

    monkeypatch.setattr(folder, "copy_checked", publisher_unlinks_meanwhile)
    fetched = channel.fetch_artifact(ref, tmp_path / "cache" / ref.file)
    assert fetched.read_bytes() == releases("v1")[0].read_bytes()
