"""Fleets end to end: real host processes (a swapper and a follower each) follow one channel.

Every test runs once per channel kind (``channel_url``). The hosts probe a pair of plugins that
only work together (beta raises when wired to an alpha of another release), so "never a mix"
is checked thousands of times per test, not once.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from fleet_support import HEARTBEAT, Fleet, channel_away, instance_in, wait_until

from hotswap_runtime.fleet import cohort_bucket, in_cohort, open_channel, ops


def on(fleet: Fleet, revision: int, tag: str, hosts: list | None = None) -> None:
    """Wait until every host (or ``hosts``) reports ``revision`` ok and serves ``tag``."""
    chosen = hosts if hosts is not None else fleet.hosts
    names = {h.instance for h in chosen}

    def ready() -> bool:
        reports = {s["instance"]: s for s in open_channel(fleet.url).statuses()}
        return (all(reports.get(n, {}).get("revision") == revision
                    and reports[n]["state"] == "ok" for n in names)
                and all(h.probe()["tag"] == tag for h in chosen))

    wait_until(ready, what=f"{sorted(names)} on revision {revision} serving {tag}")


def no_mix(fleet: Fleet) -> None:
    for host in fleet.hosts:
        probe = host.probe()
        assert probe["errors"] == [], (host.instance, probe["errors"])
        assert probe["count"] > 0


def test_publish_reaches_every_host_and_none_serves_a_mix(fleet: Fleet, releases) -> None:
    """Three hosts (thread and asyncio forms) take each release whole; the probe never fails."""
    assert ops.publish(fleet.url, releases("v1")).revision == 1
    fleet.start("web-1:1", "web-1:2", "web-2:1")
    on(fleet, 1, "v1")
    for revision, stamp in ((2, "v2"), (3, "v3"), (4, "v4")):
        assert ops.publish(fleet.url, releases(stamp), note=stamp).revision == revision
        on(fleet, revision, stamp)
    result = ops.gate(fleet.url)
    assert result.ok and result.summary() == "3/3 on 4, ok"
    for host in fleet.hosts:
        assert host.probe()["tags"] == ["v1", "v2", "v3", "v4"]
        assert host.stop() == 0
    no_mix(fleet)


def test_failing_release_is_reported_everywhere_and_old_code_serves(fleet: Fleet, releases) -> None:
    """A release whose on_init or self_test raises is 'failed' on every host with the error,
    the previous release keeps serving, and it is not retried until a newer one comes."""
    ops.publish(fleet.url, releases("v1"))
    fleet.start("a:1", "b:1", "c:1")
    on(fleet, 1, "v1")
    for revision, stamp, error in (
            (2, "bad-init", 'plugin "alpha": on_init failed: RuntimeError: alpha bad-init refuses to start'),
            (3, "bad-test", 'plugin "beta": self_test failed: AssertionError: beta bad-test fails its '
                            "self test")):
        ops.publish(fleet.url, releases(stamp))

        def all_failed(revision: int = revision) -> bool:
            reports = open_channel(fleet.url).statuses()
            return len(reports) == 3 and all(s["state"] == "failed" and s["attempted"] == revision
                                             for s in reports)

        wait_until(all_failed, what=f"every host failed on {revision}")
        for report in open_channel(fleet.url).statuses():
            assert report["revision"] == 1
            assert report["error"] == error
        assert all(h.probe()["tag"] == "v1" for h in fleet.hosts)
    result = ops.gate(fleet.url)
    assert not result.ok
    assert result.summary() == "0/3 on 3, 3 failed"
    reloads = {s["instance"]: s["reloads"] for s in open_channel(fleet.url).statuses()}
    time.sleep(4 * HEARTBEAT)  # several heartbeats: a failed revision is not tried again
    assert {s["instance"]: s["reloads"] for s in open_channel(fleet.url).statuses()} == reloads
    ops.publish(fleet.url, releases("v2"))
    on(fleet, 4, "v2")
    no_mix(fleet)


def test_rollback_publishes_the_old_artifacts_as_a_new_revision(fleet: Fleet, releases) -> None:
    """rollback makes revision N+1 with the artifacts before; --to names any revision."""
    ops.publish(fleet.url, releases("v1"))
    ops.publish(fleet.url, releases("v2"))
    fleet.start("a:1", "b:1", "c:1")
    on(fleet, 2, "v2")
    back = ops.rollback(fleet.url)
    assert (back.revision, back.previous, back.cohort) == (3, 2, 100)
    assert back.artifacts == open_channel(fleet.url).release(1).artifacts
    on(fleet, 3, "v1")
    forward = ops.rollback(fleet.url, to=2)
    assert forward.revision == 4
    on(fleet, 4, "v2")
    assert [r.revision for r in open_channel(fleet.url).history()] == [1, 2, 3, 4]
    no_mix(fleet)


def test_cohorts_split_as_the_hash_says(fleet: Fleet, releases) -> None:
    """A release with cohort 50 goes to the instances whose bucket is below 50; the others
    stay on previous; the status gate is ok with that split."""
    low, high = instance_in(0, 50, "w"), instance_in(50, 100, "w")
    low2 = instance_in(0, 50, "x")
    ops.publish(fleet.url, releases("v1"))
    hosts = fleet.start(low, high, low2)
    on(fleet, 1, "v1")
    ops.publish(fleet.url, releases("v2"), cohort=50)
    on(fleet, 2, "v2", [hosts[0], hosts[2]])
    on(fleet, 1, "v1", [hosts[1]])
    result = ops.gate(fleet.url)
    assert result.ok, ops.status_table(result)
    assert result.summary() == "3/3 on 2, ok (cohort 50%, others on 1)"
    no_mix(fleet)


def test_the_cohort_rule_is_the_documented_hash() -> None:
    """int(sha256(instance_id)[:8], 16) % 100 < cohort, computed here without the library's
    helper; growing the cohort only adds instances."""
    assert (cohort_bucket("web-1:4312"), cohort_bucket("machine-b:12161")) == (26, 39)
    for instance in ("web-1:4312", "machine-b:12161", "a", "ü:7"):
        bucket = int(hashlib.sha256(instance.encode()).hexdigest()[:8], 16) % 100
        assert cohort_bucket(instance) == bucket
        members = [in_cohort(instance, p) for p in range(1, 101)]
        assert members == [bucket < p for p in range(1, 101)]
        assert members == sorted(members)        # once in, in for every larger cohort


def test_rollout_good_and_failing_canary(fleet: Fleet, releases) -> None:
    """rollout grows the cohort step by step to 100; a canary that fails rolls everything back
    and names the instance and its error; the others never left the good release."""
    canary = instance_in(0, 10, "n")
    middle = instance_in(10, 50, "n")
    last = instance_in(50, 100, "n")
    ops.publish(fleet.url, releases("v1"))
    fleet.start(canary, middle, last)
    on(fleet, 1, "v1")
    lines: list[str] = []
    done = ops.rollout(fleet.url, releases("v2"), steps=[10, 50, 100], timeout=20,
                       echo=lines.append)
    assert done.ok and done.release.revision == 4 and done.release.cohort == 100
    assert [r.previous for r in open_channel(fleet.url).history()[1:]] == [1, 1, 1]
    assert lines[0] == "published revision 2 to 10% of instances"
    on(fleet, 4, "v2")

    lines.clear()
    done = ops.rollout(fleet.url, releases("bad-init"), steps=[10, 50, 100], timeout=20,
                       echo=lines.append)
    assert not done.ok and done.release.revision == 5 and done.rolled_back is not None
    back = done.rolled_back
    assert back.revision == 6 and back.artifacts == open_channel(fleet.url).release(4).artifacts
    assert lines[-2] == (f"revision 5 failed: {canary} failed on 5: plugin \"alpha\": on_init "
                         "failed: RuntimeError: alpha bad-init refuses to start")
    assert lines[-1] == "rolled back: revision 6 has the artifacts of 4"
    on(fleet, 6, "v2")
    for host in fleet.hosts:
        assert "bad-init" not in host.probe()["tags"]
    no_mix(fleet)


def test_rollout_times_out_on_canaries_still_loading_and_rolls_back(fleet: Fleet, releases) -> None:
    """Canaries (one per follower form) still loading when the step's timeout passes keep
    reporting 'updating' (a long load is no dead instance: never stale); the rollout rolls back
    and names them as lagging."""
    canaries = [instance_in(0, 10, "t"), instance_in(0, 10, "u")]
    other = instance_in(50, 100, "t")
    ops.publish(fleet.url, releases("v1"))
    fleet.start(*canaries, other)
    on(fleet, 1, "v1")
    lines: list[str] = []
    done = ops.rollout(fleet.url, releases("slow"), steps=[10, 100], timeout=1.5, echo=lines.append)
    assert not done.ok and (done.release.revision, done.release.cohort) == (2, 10)
    assert done.rolled_back is not None and done.rolled_back.revision == 3
    assert not done.gate.failed and not any(row.stale for row in done.gate.rows)
    lagging = "; ".join(f"{c} updating on 1, wants 2" for c in sorted(canaries))
    assert lines[-2:] == [f"revision 2 timed out after 1.5 s: {lagging}",
                          "rolled back: revision 3 has the artifacts of 1"]
    on(fleet, 3, "v1")
    assert "slow" not in fleet.hosts[2].probe()["tags"]      # never reached the others
    no_mix(fleet)


def test_killed_instance_turns_stale_and_the_gate_ignores_it(fleet: Fleet, releases) -> None:
    """After three heartbeats without a report an instance shows stale; the others gate ok."""
    ops.publish(fleet.url, releases("v1"))
    hosts = fleet.start("a:1", "b:1", "c:1")
    on(fleet, 1, "v1")
    hosts[1].kill()
    def stale() -> ops.Gate | None:
        result = ops.gate(fleet.url)
        return result if any(r.stale for r in result.rows) else None

    result = wait_until(stale, what="a stale instance")
    assert [r.status.instance for r in result.rows if r.stale] == ["b:1"]
    assert result.ok and result.summary() == "2/2 on 1, ok; 1 stale"
    rows = [line.split() for line in ops.status_table(result).splitlines()]
    assert rows[0] == ["INSTANCE", "REVISION", "STATE", "AGE", "ERROR"]
    assert rows[2][:3] == ["b:1", "1", "stale"]


@pytest.mark.parametrize("form", ["thread", "asyncio"])
def test_host_restarted_with_the_channel_away_serves_its_cached_release(
        fleet: Fleet, releases, tmp_path: Path, form: str) -> None:
    """A host that starts while the channel cannot be reached loads the last release it ran
    from its cache (either form of the follower); when the channel returns it catches up."""
    cache = tmp_path / "shared-cache"
    ops.publish(fleet.url, releases("v1"))
    ops.publish(fleet.url, releases("v2"))
    first = fleet.start("a:1", cache=cache)[0]
    on(fleet, 2, "v2")
    assert first.stop() == 0
    with channel_away(fleet.url):
        again = fleet.start("a:1", cache=cache, use_async=form == "asyncio")[0]
        wait_until(lambda: again.probe()["tag"] == "v2", what="the cached release serving")
        time.sleep(2 * HEARTBEAT)
        assert again.proc.poll() is None  # the channel being away stops nothing
    ops.publish(fleet.url, releases("v3"))
    on(fleet, 3, "v3", [again])
