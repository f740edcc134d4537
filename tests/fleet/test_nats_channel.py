"""The NATS channel alone against a real nats-server: buckets, compare-and-set, watches,
tampering, faults and a three-node cluster (the follower and CLI tests live beside it)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from hotswap_runtime.fleet import (
    ArtifactRef,
    ChannelError,
    ChannelUnavailable,
    PublishConflict,
    Release,
    open_channel,
)
from hotswap_runtime.fleet.nats import ARTIFACT_BUCKET, NatsChannel, status_key
from hotswap_runtime.fleet.nats_server import NatsCluster, NatsServer, free_port


def make_artifact(folder: Path, name: str, body: bytes) -> tuple[Path, ArtifactRef]:
    path = folder / f"{name}.hsp"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path, ArtifactRef(name=name, file=path.name, sha256=hashlib.sha256(body).hexdigest(),
                             size=len(body), build_id=hashlib.sha256(body).hexdigest()[:16])


def release_of(channel: NatsChannel, revision: int, refs: list[ArtifactRef], *, by: str = "test",
               cohort: int = 100) -> Release:
    return Release(channel=channel.name, revision=revision, previous=revision - 1 or None, cohort=cohort,
                   artifacts={r.name: r for r in refs}, published="2026-12-04T12:00:00Z", by=by)


def publish(channel: NatsChannel, folder: Path, body: bytes, *, name: str = "world") -> Release:
    path, ref = make_artifact(folder / hashlib.sha256(body).hexdigest()[:8], name, body)
    channel.put_artifact(path, ref)
    current = channel.current()
    return channel.publish_release(release_of(channel, (current.revision if current else 0) + 1, [ref]))


@pytest.fixture
def open_nats(nats_server: NatsServer) -> Iterator:
    """``open_nats(name="prod", **options)``: NatsChannels on the test server, closed afterwards."""
    opened: list[NatsChannel] = []

    def open_(name: str = "prod", url: str | None = None, **options) -> NatsChannel:
        channel = NatsChannel(url or nats_server.channel_url(name), **options)
        opened.append(channel)
        return channel

    yield open_
    for channel in opened:
        channel.close()


def retrying(call, timeout: float = 30.0):
    """``call()`` again while the channel is unavailable (a cluster electing a leader)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except ChannelUnavailable:
            assert time.monotonic() < deadline, "the channel stayed unavailable"
            time.sleep(0.3)


def js_stream(server_url: str, stream: str):
    """The stream info of a bucket, read with a plain nats-py client (what an operator sees)."""
    async def go():
        nc = await nats.connect(server_url)
        try:
            return await nc.jetstream().stream_info(stream)
        finally:
            await nc.close()
    return asyncio.run(go())


def test_publish_history_and_fetch(open_nats, nats_server: NatsServer, tmp_path: Path) -> None:
    channel = open_nats()
    assert channel.current() is None
    assert channel.history() == []
    first = publish(channel, tmp_path, b"v1" * 100)
    second = publish(channel, tmp_path, b"v2" * 100)
    assert (first.revision, second.revision, second.previous) == (1, 2, 1)
    # another process's view: everything comes from the server
    other = open_nats()
    assert other.current() == second
    assert [r.revision for r in other.history()] == [1, 2]
    assert other.release(1) == first
    with pytest.raises(ChannelError, match=r"unknown revision 9 in channel nats://.*/prod \(kept revisions: 1\.\.2, "):
        other.release(9)
    dest = other.fetch_artifact(first.artifacts["world"], tmp_path / "cache" / "a.hsp")
    assert dest.read_bytes() == b"v1" * 100
    # the bucket keeps 64 releases per key (rollback and audit), and the release is the JSON contract
    info = js_stream(nats_server.url, "KV_hotswap-release-prod")
    assert info.config.max_msgs_per_subject == 64
    assert json.loads(json.dumps(second.to_json()))["revision"] == 2


def test_each_artifact_is_stored_once_under_its_sha256(open_nats, nats_server: NatsServer, tmp_path: Path) -> None:
    channel = open_nats()
    path, ref = make_artifact(tmp_path, "world", b"same bytes" * 50)
    for revision in (1, 2, 3):
        channel.put_artifact(path, ref)
        channel.publish_release(release_of(channel, revision, [ref]))
    info = js_stream(nats_server.url, f"OBJ_{ARTIFACT_BUCKET}")
    assert info.state.messages == 2            # one chunk and one meta record: stored once
    with pytest.raises(ChannelError, match="is not the one described"):
        channel.put_artifact(path, ArtifactRef("world", "world.hsp", "0" * 64, ref.size, "x"))


def test_publishing_needs_stored_artifacts_and_the_next_revision(open_nats, tmp_path: Path) -> None:
    channel = open_nats()
    _, ref = make_artifact(tmp_path, "world", b"never stored")
    with pytest.raises(ChannelError, match=r"artifact 'world.hsp' \(.*\) is not stored"):
        channel.publish_release(release_of(channel, 1, [ref]))
    publish(channel, tmp_path, b"one")
    path, ref = make_artifact(tmp_path / "x", "world", b"two")
    channel.put_artifact(path, ref)
    with pytest.raises(PublishConflict, match="revision 3 cannot be published, the current one is 1"):
        channel.publish_release(release_of(channel, 3, [ref]))
    assert channel.current().revision == 1


def test_two_concurrent_publishers_never_both_win_and_lose_no_revision(open_nats, tmp_path: Path) -> None:
    publishers = [open_nats(), open_nats()]
    wins: dict[int, list[int]] = {0: [], 1: []}
    conflicts = [0, 0]
    start = threading.Barrier(2)

    def run(i: int) -> None:
        channel = publishers[i]
        path, ref = make_artifact(tmp_path / f"p{i}", "world", f"publisher {i}".encode())
        channel.put_artifact(path, ref)
        start.wait()
        for _ in range(15):
            current = channel.current()
            try:
                won = channel.publish_release(release_of(channel, (current.revision if current else 0) + 1,
                                                         [ref], by=f"p{i}"))
                wins[i].append(won.revision)
            except PublishConflict:
                conflicts[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    history = publishers[0].history()
    won = sorted(wins[0] + wins[1])
    assert set(wins[0]).isdisjoint(wins[1])                      # never both win a revision
    assert [r.revision for r in history] == list(range(1, len(history) + 1)) == won   # none lost
    assert {r.revision: r.by for r in history} == {**{n: "p0" for n in wins[0]}, **{n: "p1" for n in wins[1]}}
    assert len(won) + sum(conflicts) == 30


def test_wait_for_change_is_woken_by_a_publish(open_nats, tmp_path: Path) -> None:
    follower, publisher = open_nats(), open_nats()
    assert follower.wait_for_change(None, 0.3) is None            # nothing yet: times out
    got: list = []
    waiter = threading.Thread(target=lambda: got.append((follower.wait_for_change(None, 30), time.monotonic())))
    waiter.start()
    time.sleep(0.5)
    published_at = time.monotonic()
    publish(publisher, tmp_path, b"first")
    waiter.join(30)
    release, woke_at = got[0]
    assert release.revision == 1
    assert woke_at - published_at < 5      # a watch, not the 30 s timeout
    assert follower.wait_for_change(1, 0.3) is None
    publish(publisher, tmp_path, b"second")
    assert follower.wait_for_change(1, 10).revision == 2
    assert follower.wait_for_change(None, 1).revision == 2        # already differs: at once


def test_a_tampered_object_is_refused_naming_it(open_nats, nats_server: NatsServer, tmp_path: Path) -> None:
    channel = open_nats()
    release = publish(channel, tmp_path, b"the real code" * 10)
    ref = release.artifacts["world"]

    async def tamper() -> None:          # someone with write access replaces the object's bytes
        nc = await nats.connect(nats_server.url)
        try:
            obs = await nc.jetstream().object_store(ARTIFACT_BUCKET)
            await obs.put(ref.sha256, b"import os; os.system('evil')")
        finally:
            await nc.close()
    asyncio.run(tamper())
    dest = tmp_path / "cache" / "world.hsp"
    with pytest.raises(ChannelError, match=r"artifact 'world.hsp' refused: the object stored under "
                                           rf"{ref.sha256[:12]}… has sha256 .* someone changed it"):
        open_nats().fetch_artifact(ref, dest)
    assert not dest.exists()
    # publishing the artifact again repairs the object
    path, _ = make_artifact(tmp_path / "again", "world", b"the real code" * 10)
    channel.put_artifact(path, ref)
    assert channel.fetch_artifact(ref, dest).read_bytes() == b"the real code" * 10


def test_status_reports_are_keyed_per_instance_and_expire(open_nats, nats_server: NatsServer) -> None:
    channel = open_nats(status_ttl=1.0)
    assert channel.statuses() == []
    channel.report({"instance": "web-1.example:4312", "heartbeat": 0.2, "revision": 1, "state": "ok"})
    channel.report({"instance": "web-2:7", "heartbeat": 0.2, "revision": 1, "state": "ok"})
    channel.report({"instance": "web-2:7", "heartbeat": 0.2, "revision": 2, "state": "ok"})
    seen = open_nats().statuses()
    assert [(s["instance"], s["revision"]) for s in seen] == [("web-1.example:4312", 1), ("web-2:7", 2)]
    for _ in range(20):                     # a status loop leaves no consumer behind
        open_nats().statuses()
    assert js_stream(nats_server.url, "KV_hotswap-status-prod").state.consumer_count == 0
    assert status_key("web-1.example:4312") == "web-1=2Eexample=3A4312"
    assert status_key("a=b") != status_key("a.b")
    deadline = time.monotonic() + 15
    while channel.statuses() and time.monotonic() < deadline:   # the server expires them
        time.sleep(0.2)
    assert channel.statuses() == []


def test_an_unreachable_server_is_unavailable_fast_and_open_is_lazy(tmp_path: Path) -> None:
    channel = NatsChannel(f"nats://127.0.0.1:{free_port()}/prod", connect_timeout=1.0)   # nothing connects
    try:
        for call in (channel.current, channel.history, channel.statuses,
                     lambda: channel.wait_for_change(None, 5)):
            started = time.monotonic()
            with pytest.raises(ChannelUnavailable, match=r"the NATS server cannot be reached.*retry later"):
                call()
            assert time.monotonic() - started < 10
    finally:
        channel.close()


def test_a_server_without_jetstream_is_a_clear_error(tmp_path: Path) -> None:
    """Reached, but nobody answers JetStream: not "cannot be reached, retry later" (no retry
    helps) but what to change on the server."""
    with NatsServer(tmp_path, jetstream=False) as server:
        channel = NatsChannel(server.channel_url("prod"))
        try:
            for call in (channel.current, channel.statuses):
                with pytest.raises(ChannelError, match=r"the NATS server runs without JetStream; "
                                                       r"start it with -js") as caught:
                    call()
                assert not isinstance(caught.value, ChannelUnavailable)
        finally:
            channel.close()


def test_server_killed_and_restarted(open_nats, nats_server: NatsServer, tmp_path: Path) -> None:
    follower, publisher = open_nats(), open_nats()
    publish(publisher, tmp_path, b"before")
    assert follower.wait_for_change(None, 5).revision == 1
    nats_server.kill()
    with pytest.raises(ChannelUnavailable):
        follower.current()
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(follower.wait_for_change(1, 40)))
    waiter.start()                               # waits across the restart
    time.sleep(0.5)
    nats_server.start()
    deadline = time.monotonic() + 20
    while True:                                  # the publisher retries like a deploy script would
        try:
            publish(publisher, tmp_path, b"after")
            break
        except ChannelUnavailable:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    waiter.join(40)
    assert got and got[0] is not None and got[0].revision == 2
    assert [r.revision for r in follower.history()] == [1, 2]     # the store survived the kill


def test_credentials_through_the_url_and_options(tmp_path: Path) -> None:
    """user:pass@ and ?token= in the URL, or nats.connect's own keywords through open_channel;
    a wrong secret is a clear error that never echoes it."""
    with NatsServer(tmp_path / "userpass", extra_args=["--user", "deploy", "--pass", "s3cret"]) as server:
        good = NatsChannel(f"nats://deploy:s3cret@127.0.0.1:{server.port}/prod")
        by_option = open_channel(server.channel_url("prod"), user="deploy", password="s3cret")
        bad = NatsChannel(f"nats://deploy:wrong@127.0.0.1:{server.port}/prod")
        try:
            assert good.url == f"nats://127.0.0.1:{server.port}/prod"     # no password in messages
            assert good.current() is None and by_option.current() is None
            with pytest.raises(ChannelError, match=r"refused our credentials.*check user:pass@") as caught:
                bad.current()
            assert not isinstance(caught.value, ChannelUnavailable)
            assert "wrong" not in str(caught.value)
        finally:
            for channel in (good, by_option, bad):
                channel.close()
    with NatsServer(tmp_path / "token", extra_args=["--auth", "t0ken"]) as server:
        good = NatsChannel(f"{server.channel_url('prod')}?token=t0ken")
        bad = NatsChannel(f"{server.channel_url('prod')}?token=guess")
        try:
            assert good.current() is None
            with pytest.raises(ChannelError, match=r"refused our credentials") as caught:
                bad.current()
            assert "guess" not in str(caught.value)
        finally:
            good.close()
            bad.close()


def test_credentials_through_a_creds_file(tmp_path: Path) -> None:
    """?creds=FILE (a server in operator mode, JWTs): it connects; a creds file that is missing
    or is not one is a clear error naming it, never "cannot be reached" nor a traceback."""
    from fleet_support import operator_mode

    args, creds = operator_mode(tmp_path / "auth")
    (tmp_path / "not.creds").write_text("hello")
    with NatsServer(tmp_path / "store", extra_args=args) as server:
        good = NatsChannel(f"{server.channel_url('prod')}?creds={creds}")
        anonymous = NatsChannel(server.channel_url("prod"))
        try:
            path, ref = make_artifact(tmp_path, "world", b"with creds")
            good.put_artifact(path, ref)
            assert good.publish_release(release_of(good, 1, [ref])).revision == 1
            assert open_channel(server.channel_url("prod"), user_credentials=str(creds)).current().revision == 1
            with pytest.raises(ChannelError, match="refused our credentials"):
                anonymous.current()
        finally:
            good.close()
            anonymous.close()
        for bad, why in ((tmp_path / "missing.creds", "cannot be read"),
                         (tmp_path / "not.creds", "is not a NATS credentials file")):
            with pytest.raises(ChannelError) as caught:
                NatsChannel(f"{server.channel_url('prod')}?creds={bad}").current()
            assert not isinstance(caught.value, ChannelUnavailable)
            assert str(caught.value).startswith(f"channel '{server.channel_url('prod')}': the credentials "
                                                 f"file {str(bad)!r} {why}")


def test_tls_asked_for_is_never_plain_text(tmp_path: Path) -> None:
    """tls:// (or a TLS option) against a server that offers no TLS is refused before anything,
    credentials above all, is sent in the clear; nats-py alone would go on in plain text."""
    with NatsServer(tmp_path, extra_args=["--user", "deploy", "--pass", "s3cret"]) as server:
        asked = [NatsChannel(f"tls://deploy:s3cret@127.0.0.1:{server.port}/prod", connect_timeout=1.0),
                 open_channel(server.channel_url("prod"), user="deploy", password="s3cret",
                              tls=ssl.create_default_context(), connect_timeout=1.0)]
        try:
            for channel in asked:
                with pytest.raises(ChannelError, match=r"does not offer TLS.*start nats-server with "
                                                       r"--tls") as refused:
                    channel.current()
                assert not isinstance(refused.value, ChannelUnavailable)
                assert "s3cret" not in str(refused.value)
        finally:
            for channel in asked:
                channel.close()


def test_tls_with_a_private_ca(tmp_path: Path) -> None:
    """tls:// with ?ca=, ?cert= and ?key= (a server that verifies clients), or an SSLContext
    through open_channel's tls= option; a server or client that does not verify is refused."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path, timeout=60)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=hotswap test ca",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for who, usage in (("server", "serverAuth"), ("client", "clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key", "-out", f"{who}.csr",
                "-subj", "/CN=127.0.0.1")
        (tmp_path / f"{who}.ext").write_text("subjectAltName=IP:127.0.0.1\nkeyUsage=critical,digitalSignature,"
                                             f"keyEncipherment\nextendedKeyUsage={usage}\n"
                                             "authorityKeyIdentifier=keyid,issuer\n")
        openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{who}.pem", "-days", "2", "-extfile", f"{who}.ext")
    with NatsServer(tmp_path / "store", extra_args=[
            "--tlsverify", "--tlscert", str(tmp_path / "server.pem"), "--tlskey", str(tmp_path / "server.key"),
            "--tlscacert", str(tmp_path / "ca.pem")]) as server:
        files = f"ca={tmp_path / 'ca.pem'}&cert={tmp_path / 'client.pem'}&key={tmp_path / 'client.key'}"
        trusted = NatsChannel(f"tls://127.0.0.1:{server.port}/prod?{files}")
        context = ssl.create_default_context(cafile=tmp_path / "ca.pem")
        context.load_cert_chain(tmp_path / "client.pem", tmp_path / "client.key")
        by_option = open_channel(server.channel_url("prod"), tls=context)
        untrusted = NatsChannel(f"tls://127.0.0.1:{server.port}/prod?cert={tmp_path / 'client.pem'}"
                                f"&key={tmp_path / 'client.key'}", connect_timeout=1.0)   # no ?ca=
        try:
            path, ref = make_artifact(tmp_path, "world", b"over tls")
            trusted.put_artifact(path, ref)
            assert trusted.publish_release(release_of(trusted, 1, [ref])).revision == 1
            assert by_option.current().revision == 1
            with pytest.raises(ChannelError, match="the TLS handshake failed") as refused:
                untrusted.current()                     # a server we cannot verify is never used
            assert not isinstance(refused.value, ChannelUnavailable)   # no retry makes it verify
        finally:
            for channel in (trusted, by_option, untrusted):
                channel.close()
        anonymous = NatsChannel(f"tls://127.0.0.1:{server.port}/prod?ca={tmp_path / 'ca.pem'}",
                                connect_timeout=1.0)
        try:
            with pytest.raises(ChannelError, match=r"wants a TLS client certificate.*\?cert=FILE and "
                                                   r"\?key=FILE"):
                anonymous.current()                     # the server wants a client certificate
        finally:
            anonymous.close()


@pytest.mark.parametrize("url, message", [
    ("nats://127.0.0.1:4222", "the channel name '' after the server"),
    ("nats://127.0.0.1:4222/a.b", "the channel name 'a.b'"),
    ("nats://127.0.0.1:4222/prod?colour=red", "unknown option"),
    ("http://127.0.0.1/prod", "not a NATS URL"),
])
def test_bad_urls_are_clear_errors(url: str, message: str) -> None:
    with pytest.raises(ChannelError, match=message):
        NatsChannel(url)


def test_a_three_node_cluster_keeps_publishing_with_one_node_killed(nats_cluster: NatsCluster,
                                                                    tmp_path: Path) -> None:
    publisher = NatsChannel(nats_cluster.channel_url("prod"))
    follower = NatsChannel(nats_cluster.channel_url("prod"))
    try:
        publish(publisher, tmp_path, b"one")
        assert follower.wait_for_change(None, 10).revision == 1
        follower.report({"instance": "h:1", "heartbeat": 1.0, "revision": 1})
        for stream in ("KV_hotswap-release-prod", f"OBJ_{ARTIFACT_BUCKET}", "KV_hotswap-status-prod"):
            assert js_stream(nats_cluster.nodes[0].url, stream).config.num_replicas == 3
        # kill the node the publisher is connected to: a quorum of two stays
        connected = publisher._conn._nc.connected_url.port
        next(node for node in nats_cluster.nodes if node.port == connected).kill()
        # each stream elects a new leader meanwhile: callers retry like a follower does
        retrying(lambda: publish(publisher, tmp_path, b"two"))
        assert follower.wait_for_change(1, 20).revision == 2
        ref = retrying(follower.current).artifacts["world"]
        assert retrying(lambda: follower.fetch_artifact(ref, tmp_path / "c" / "w.hsp")).read_bytes() == b"two"
        assert [r.revision for r in retrying(follower.history)] == [1, 2]
    finally:
        publisher.close()
        follower.close()


def test_channels_opened_again_and_again_share_one_connection(nats_server: NatsServer) -> None:
    """A status loop opening the channel on every round (hotswap status --wait, a dashboard)
    costs the server one connection, and closing the last channel closes it."""
    import json as json_
    import urllib.request

    from hotswap_runtime.fleet import open_channel

    def connections() -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{nats_server.monitor_port}/connz", timeout=5) as answer:
            return int(json_.loads(answer.read())["num_connections"])

    opened = [open_channel(nats_server.channel_url(name)) for name in ("prod", "prod", "staging")]
    for channel in opened:
        assert channel.statuses() == []
    assert connections() == 1
    for channel in opened[:-1]:
        channel.close()
    assert opened[-1].current() is None                   # the others closing left it working
    with pytest.raises(ChannelError, match="is closed; open it again"):
        opened[0].current()
    opened[-1].close()
    gone = lambda: connections() == 0  # noqa: E731  # a one-line predicate
    deadline = time.monotonic() + 5
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone()
    # a loop that never closes what it opens (ops functions, dashboards) leaks nothing either
    for _ in range(10):
        assert open_channel(nats_server.channel_url("prod")).statuses() == []
    assert connections() <= 1
    import gc
    gc.collect()
    deadline = time.monotonic() + 5
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone()
    assert not [t for t in threading.enumerate() if t.name == f"hotswap-nats-{nats_server.url}"]


def _child_reads(channel: NatsChannel, out) -> None:
    try:
        release = channel.current()
        out.put(release.revision if release else None)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        out.put(f"{type(exc).__name__}: {exc}")


def test_a_channel_used_before_a_fork_works_in_the_child(open_nats, tmp_path: Path) -> None:
    """gunicorn --preload: the master opened (and used) the channel, each forked worker uses it
    too; the child has no loop thread of its parent, so it makes its own connection."""
    import multiprocessing

    channel = open_nats()
    publish(channel, tmp_path, b"before the fork")
    assert channel.current().revision == 1                  # the parent's loop thread runs
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    child = context.Process(target=_child_reads, args=(channel, out))
    child.start()
    try:
        assert out.get(timeout=30) == 1
    finally:
        child.join(30)
    assert child.exitcode == 0
    assert channel.current().revision == 1                  # the parent's connection is untouched
