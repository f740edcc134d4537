"""Fleets on NATS JetStream end to end: real host processes (a swapper and a follower each)
follow a real nats-server (or a three-node cluster) through its faults (README "On NATS JetStream").

The shared fleet tests (``test_fleet.py``) already run against NATS through the ``nats`` kind
of ``channel_url`` (publish, failures everywhere, rollback, cohorts, rollout with a failing
canary rolled back, stale instances, a host restarted while the server is down serving its
cached release); these are the faults only a server process has.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from fleet_support import Fleet, wait_until

from hotswap_runtime import PluginManagerSwapper
from hotswap_runtime.fleet import ChannelUnavailable, Follower, Release, ops
from hotswap_runtime.fleet.nats import ARTIFACT_BUCKET, NatsChannel
from hotswap_runtime.fleet.nats_server import NatsCluster, NatsServer


@pytest.fixture
def channel(nats_server: NatsServer) -> Iterator[NatsChannel]:
    """The test's own client of the channel (what an operator's ``hotswap status`` reads)."""
    ch = NatsChannel(nats_server.channel_url("prod"))
    yield ch
    ch.close()


@pytest.fixture
def nats_fleet(nats_server: NatsServer, tmp_path: Path) -> Iterator[Fleet]:
    root = tmp_path / "hosts"
    root.mkdir()
    fleet = Fleet(nats_server.channel_url("prod"), root)
    try:
        yield fleet
    finally:
        fleet.stop_all()


def converged(channel: NatsChannel, fleet: Fleet, revision: int, tag: str, hosts: list | None = None) -> None:
    """Wait until every host (or ``hosts``) reports ``revision`` ok and serves ``tag``."""
    chosen = hosts if hosts is not None else fleet.hosts

    def ready() -> bool:
        try:
            reports = {s["instance"]: s for s in channel.statuses()}
        except ChannelUnavailable:       # a cluster electing a new leader: ask again
            return False
        return all(reports.get(h.instance, {}).get("revision") == revision
                   and reports[h.instance]["state"] == "ok" and h.probe()["tag"] == tag for h in chosen)

    wait_until(ready, timeout=30, what=f"{[h.instance for h in chosen]} on revision {revision} serving {tag}")


def no_mix(fleet: Fleet) -> None:
    for host in fleet.hosts:
        assert host.probe()["errors"] == [], (host.instance, host.probe()["errors"])


def publish_retrying(url_or_channel, paths: list[Path], timeout: float = 30.0) -> Release:
    """Publish like a deploy script does while the server comes back: retry while unavailable."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ops.publish(url_or_channel, paths)
        except ChannelUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_history_and_rollback_live_in_the_release_bucket(nats_fleet: Fleet, channel: NatsChannel,
                                                          nats_server: NatsServer, releases) -> None:
    ops.publish(channel, releases("v1"), note="first")
    ops.publish(channel, releases("v2"))
    nats_fleet.start("a:1", "b:1")
    converged(channel, nats_fleet, 2, "v2")
    back = ops.rollback(channel)
    converged(channel, nats_fleet, 3, "v1")
    history = NatsChannel(nats_server.channel_url("prod")).history()
    assert [(r.revision, r.previous) for r in history] == [(1, None), (2, 1), (3, 2)]
    assert history[0].note == "first" and back.artifacts == history[0].artifacts

    async def raw() -> list[int]:          # an auditor's view: the bucket's stream, message by message
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            state = (await js.stream_info("KV_hotswap-release-prod")).state
            messages = [await js.get_msg("KV_hotswap-release-prod", seq)
                        for seq in range(state.first_seq, state.last_seq + 1)]
            assert {m.subject for m in messages} == {"$KV.hotswap-release-prod.release"}
            return [json.loads(m.data)["revision"] for m in messages]
        finally:
            await nc.close()
    assert asyncio.run(raw()) == [1, 2, 3]
    no_mix(nats_fleet)


def test_server_killed_after_a_release_hosts_keep_serving_then_converge(
        nats_fleet: Fleet, channel: NatsChannel, nats_server: NatsServer, releases) -> None:
    ops.publish(channel, releases("v1"))
    hosts = nats_fleet.start("a:1", "a:2", "b:1")
    converged(channel, nats_fleet, 1, "v1")
    nats_server.kill()
    counts = [h.probe()["count"] for h in hosts]
    time.sleep(1.5)                                   # five heartbeats with the server gone
    for host, before in zip(hosts, counts, strict=True):
        assert host.proc.poll() is None
        assert host.probe()["tag"] == "v1" and host.probe()["count"] > before   # still serving
    nats_server.start()
    publish_retrying(channel, releases("v2"))
    converged(channel, nats_fleet, 2, "v2")
    no_mix(nats_fleet)


def test_a_host_down_during_a_publish_converges_when_it_returns(
        nats_fleet: Fleet, channel: NatsChannel, releases, tmp_path: Path) -> None:
    ops.publish(channel, releases("v1"))
    hosts = nats_fleet.start("a:1", "b:1", cache=tmp_path / "cache")
    converged(channel, nats_fleet, 1, "v1")
    assert hosts[1].stop() == 0
    ops.publish(channel, releases("v2"))
    converged(channel, nats_fleet, 2, "v2", [hosts[0]])
    back = nats_fleet.start("b:1", cache=tmp_path / "cache")[0]
    converged(channel, nats_fleet, 2, "v2", [hosts[0], back])
    assert back.probe()["tags"][-1] == "v2"
    no_mix(nats_fleet)


def test_a_tampered_object_is_refused_reported_and_nothing_changes(
        nats_fleet: Fleet, channel: NatsChannel, nats_server: NatsServer, releases) -> None:
    ops.publish(channel, releases("v1"))
    nats_fleet.start("a:1", "b:1")
    converged(channel, nats_fleet, 1, "v1")
    # revision 2 is published whole; before the hosts fetch it (they are paused), someone with
    # write access replaces alpha's object with other valid code
    for host in nats_fleet.hosts:
        host.proc.send_signal(signal.SIGSTOP)
    try:
        alpha = ops.publish(channel, releases("v2")).artifacts["alpha"]

        async def tamper() -> None:
            nc = await nats.connect(nats_server.url)
            try:
                obs = await nc.jetstream().object_store(ARTIFACT_BUCKET)
                await obs.put(alpha.sha256, Path(releases("v1")[0]).read_bytes())
            finally:
                await nc.close()
        asyncio.run(tamper())
    finally:
        for host in nats_fleet.hosts:
            host.proc.send_signal(signal.SIGCONT)

    def all_failed() -> list[dict]:
        reports = channel.statuses()
        return reports if len(reports) == 2 and all(s["state"] == "failed" and s["attempted"] == 2
                                                    for s in reports) else []

    for report in wait_until(all_failed, timeout=30, what="both hosts refusing revision 2"):
        assert report["revision"] == 1
        assert "alpha.hsp" in report["error"] and "refused" in report["error"], report["error"]
    assert all(h.probe()["tag"] == "v1" for h in nats_fleet.hosts)          # nothing changed
    assert ops.gate(channel).summary() == "0/2 on 2, 2 failed"
    ops.publish(channel, releases("v3"))                                     # a newer one repairs
    converged(channel, nats_fleet, 3, "v3")
    no_mix(nats_fleet)


def test_a_three_node_cluster_with_one_node_killed_keeps_publishing_and_converging(
        nats_cluster: NatsCluster, releases, tmp_path: Path) -> None:
    url = nats_cluster.channel_url("prod")
    channel = NatsChannel(url)
    fleet = Fleet(url, tmp_path)
    try:
        ops.publish(channel, releases("v1"))
        fleet.start("a:1", "b:1", "c:1")
        converged(channel, fleet, 1, "v1")
        nats_cluster.nodes[0].kill()               # the first node of every host's URL
        publish_retrying(channel, releases("v2"))
        converged(channel, fleet, 2, "v2")
        ops.rollback(channel)
        converged(channel, fleet, 3, "v1")
        no_mix(fleet)
    finally:
        fleet.stop_all()
        channel.close()


def test_server_killed_during_a_rollout_is_no_failure_hosts_converge_when_it_returns(
        nats_fleet: Fleet, channel: NatsChannel, nats_server: NatsServer, releases) -> None:
    """The server dies right after a publish: the hosts keep serving, report no failure and
    take the release once the server is back, without a new publish or retry()."""
    ops.publish(channel, releases("v1"))
    hosts = nats_fleet.start("a:1", "b:1")
    converged(channel, nats_fleet, 1, "v1")
    for host in hosts:
        host.proc.send_signal(signal.SIGSTOP)
    try:
        ops.publish(channel, releases("v2"))
        nats_server.kill()
    finally:
        for host in hosts:
            host.proc.send_signal(signal.SIGCONT)
    time.sleep(3)
    for host in hosts:
        assert host.probe()["tag"] == "v1" and host.proc.poll() is None
    nats_server.start()
    converged(channel, nats_fleet, 2, "v2")       # no new publish needed, no retry() either
    assert all(s["error"] is None for s in channel.statuses())
    no_mix(nats_fleet)


def test_a_fetch_cut_short_by_the_server_dying_is_not_a_failed_release(
        nats_server: NatsServer, releases, tmp_path: Path) -> None:
    """The server is SIGKILLed at the moment the follower starts fetching revision 2: the
    release is not marked failed (it did nothing wrong), and the follower takes it when the
    server is back, with no new publish and no retry()."""
    v2 = {ref.sha256 for _, ref in ops.verify_artifacts(releases("v2")).values()}
    restarts: list[threading.Timer] = []

    class DiesOnFetch(NatsChannel):
        def fetch_artifact(self, ref, dest):
            if ref.sha256 in v2 and not restarts:
                nats_server.kill()
                restarts.append(threading.Timer(2.0, nats_server.start))
                restarts[0].start()
            return super().fetch_artifact(ref, dest)

    channel = DiesOnFetch(nats_server.channel_url("prod"))
    swapper = PluginManagerSwapper(tmp_path / "empty", free_delay=0.05)
    follower = Follower(swapper, channel, instance="a:1", cache_dir=tmp_path / "cache", heartbeat=0.3)
    try:
        ops.publish(channel, releases("v1"))
        assert follower.start(timeout=20)
        states: list[str] = []
        ops.publish(channel, releases("v2"))
        def on_v2() -> bool:
            status = follower.status()
            states.append(status.state)
            return status.revision == 2 and status.state == "ok"
        wait_until(on_v2, timeout=30, what="revision 2 live after the server came back")
        assert restarts, "the server was never killed during a fetch"
        assert "failed" not in states and follower.status().error is None
        assert swapper.current().find_plugin("alpha").invoke_func("x") == "v2"
    finally:
        swapper.close()
        for timer in restarts:
            timer.join(10)
        channel.close()


def test_rollout_with_a_failing_self_test_rolls_back_by_itself(
        nats_fleet: Fleet, channel: NatsChannel, releases) -> None:
    """The canary's self_test refuses the release: rollout stops at the first step, publishes
    the previous artifacts again and names the canary and its error; nobody ran the bad code."""
    from fleet_support import instance_in

    canary, others = instance_in(0, 10, "n"), [instance_in(10, 50, "n"), instance_in(50, 100, "n")]
    ops.publish(channel, releases("v1"))
    nats_fleet.start(canary, *others)
    converged(channel, nats_fleet, 1, "v1")
    lines: list[str] = []
    done = ops.rollout(channel, releases("bad-test"), steps=[10, 50, 100], pause=0.2, timeout=30,
                       echo=lines.append)
    assert not done.ok
    assert (done.release.revision, done.release.cohort) == (2, 10)
    assert done.rolled_back is not None and done.rolled_back.revision == 3
    assert done.rolled_back.artifacts == channel.release(1).artifacts
    assert lines[-2] == (f"revision 2 failed: {canary} failed on 2: plugin \"beta\": self_test failed: "
                         "AssertionError: beta bad-test fails its self test")
    converged(channel, nats_fleet, 3, "v1")
    assert all(h.probe()["tags"] == ["v1"] for h in nats_fleet.hosts)
    no_mix(nats_fleet)


def test_the_cli_on_an_unreachable_server_fails_fast_and_clearly(tmp_path: Path) -> None:
    """open_channel never fails; the first call does, within its timeouts, as one Error: line."""
    import subprocess
    import sys

    from hotswap_runtime.fleet import open_channel
    from hotswap_runtime.fleet.nats_server import free_port

    url = f"nats://127.0.0.1:{free_port()}/prod"
    channel = open_channel(url)                       # nothing connects yet
    assert isinstance(channel, NatsChannel)
    channel.close()
    started = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).with_name("hotswap")), "status", url],
                          capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 30
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"Error: channel '{url}': ") and "cannot be reached" in done.stderr


def test_hosts_with_trusted_keys_refuse_an_unsigned_release_from_nats(
        nats_fleet: Fleet, channel: NatsChannel, releases, tmp_path: Path) -> None:
    """Across machines trust comes from signatures: hosts given the deploy key report an
    unsigned release failed and serve nothing of it; the signed one goes live everywhere."""
    from hotswap_build.build import build
    from hotswap_runtime.signing import generate_key

    generate_key(tmp_path / "deploy.key")
    src = releases("v1")[0].parent.parent.parent / "src"
    signed = tmp_path / "signed"
    for name in ("alpha", "beta"):
        build(src / name, signed, stamps={"CompileTimeString": "s1"}, sign=tmp_path / "deploy.key")
    ops.publish(channel, releases("v1"))                       # unsigned
    nats_fleet.start("a:1", "b:1", wait=False, trusted_key=str(tmp_path / "deploy.key.pub"))

    def refused() -> list[dict]:
        reports = channel.statuses()
        return reports if len(reports) == 2 and all(s["state"] == "failed" for s in reports) else []

    for report in wait_until(refused, timeout=30, what="both hosts refusing the unsigned release"):
        assert report["revision"] is None and "not signed" in report["error"], report["error"]
    ops.publish(channel, [signed / "alpha.hsp", signed / "beta.hsp"])
    converged(channel, nats_fleet, 2, "s1")
    no_mix(nats_fleet)
