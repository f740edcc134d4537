"""The fleet CLI: hotswap publish, status, rollback and rollout, their output, exit codes and
every bad input (an Error: line saying what, where and how; exit 1; nothing published)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fleet_support import Fleet, instance_in, wait_until

from hotswap_build.cli import main
from hotswap_runtime.fleet import ChannelError, ChannelUnavailable, open_channel
from hotswap_runtime.signing import generate_key


def hotswap(*args: str) -> tuple[int, str, str]:
    """Run the CLI in this process; (exit code, stdout, stderr)."""
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def revisions(url: str) -> list[int]:
    try:
        return [r.revision for r in open_channel(url).history()]
    except ChannelUnavailable:
        return []


def test_publish_prints_the_revision_last_and_rollback_makes_a_new_one(channel_url: str,
                                                                         releases) -> None:
    """publish creates the channel, prints N last; rollback publishes N+1 with old artifacts."""
    code, out, err = hotswap("publish", channel_url, *releases("v1"), "--note", "first")
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "1"
    assert out.splitlines()[0].startswith(f"published revision 1 of {channel_url}: alpha (")
    code, out, _ = hotswap("publish", channel_url, *releases("v2"), "--cohort", "30")
    assert code == 0 and out.splitlines()[-1] == "2"
    assert "to 30% of instances (others stay on 1)" in out
    release = open_channel(channel_url).release(2)
    assert (release.previous, release.cohort, release.note) == (1, 30, "")
    assert open_channel(channel_url).release(1).note == "first"
    code, out, _ = hotswap("rollback", channel_url)
    assert code == 0 and out.splitlines()[-1] == "3"
    assert open_channel(channel_url).release(3).artifacts == open_channel(channel_url).release(1).artifacts
    code, out, _ = hotswap("rollback", channel_url, "--to", "2")
    assert code == 0 and out.splitlines()[-1] == "4"


def test_bad_artifacts_publish_nothing(channel_url: str, releases, tmp_path: Path) -> None:
    """A truncated artifact, or an unsigned one with --trusted-key, is an Error: line naming
    it; the good artifacts given with it are not published either."""
    alpha, beta = releases("v1")
    truncated = tmp_path / "bad" / "beta.hsp"
    truncated.parent.mkdir()
    truncated.write_bytes(beta.read_bytes()[:-40])
    code, out, err = hotswap("publish", channel_url, alpha, truncated)
    assert code == 1 and out == ""
    assert err.startswith("Error: ") and str(truncated) in err and "nothing was published" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    generate_key(tmp_path / "deploy.key")
    code, out, err = hotswap("publish", channel_url, alpha, beta,
                             "--trusted-key", tmp_path / "deploy.key.pub")
    assert code == 1 and out == ""
    assert err.startswith("Error: ") and "not signed" in err and "nothing was published" in err
    assert revisions(channel_url) == []


def test_unknown_revisions_are_clear_errors(channel_url: str, releases) -> None:
    """rollback --to and status --revision of a revision the channel never had."""
    hotswap("publish", channel_url, *releases("v1"))
    channel = open_channel(channel_url)
    with pytest.raises(ChannelError) as unknown:
        channel.release(9)
    code, _, err = hotswap("rollback", channel_url, "--to", "9")
    assert (code, err) == (1, f"Error: {unknown.value}\n")
    assert " 9 " in err and "hotswap status" in err
    code, _, err = hotswap("status", channel_url, "--revision", "9")
    assert (code, err) == (1, f"Error: {unknown.value}\n")
    assert revisions(channel_url) == [1]
    code, _, err = hotswap("rollback", channel_url)
    assert code == 1
    assert err == (f"Error: nothing to roll back to: revision 1 of {open_channel(channel_url).url} "
                   "is the first; give --to REVISION\n")


def test_a_path_that_is_not_a_channel_is_a_clear_error(tmp_path: Path, releases) -> None:
    """A file, a folder of something else, a folder that does not exist (for status)."""
    some_file = tmp_path / "notes.txt"
    some_file.write_text("hello")
    code, _, err = hotswap("status", some_file)
    assert (code, err) == (1, f"Error: {some_file} is a file, not a channel folder; give the folder "
                              "that hotswap publish created (it holds releases/ and current)\n")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(releases("v1")[0], plugins)
    code, _, err = hotswap("publish", plugins, *releases("v1"))
    assert (code, err) == (1, f"Error: {plugins} is not a channel: it holds alpha.hsp but no "
                              "releases/ folder; give the folder hotswap publish created, or a new "
                              "or empty folder to start a channel\n")
    assert sorted(p.name for p in plugins.iterdir()) == ["alpha.hsp"]
    code, _, err = hotswap("status", tmp_path / "missing")
    assert (code, err) == (1, f"Error: channel folder {tmp_path / 'missing'} does not exist (yet); "
                              "create it with hotswap publish, or mount it\n")
    for url in ("http://10.0.0.5/prod", "s3://bucket/prod"):   # never a folder "http:" here
        code, _, err = hotswap("publish", url, *releases("v1"))
        scheme = url.partition(":")[0]
        assert (code, err) == (1, f"Error: channel {url!r}: {scheme!r} is not a kind of channel; "
                                  "give a folder path (or file://PATH) or nats://HOST:PORT/NAME "
                                  "(tls:// for TLS)\n")
    assert not Path(scheme + ":").exists() and not Path("http:").exists()


def test_two_publishers_at_once_never_get_the_same_revision(channel_url: str, releases) -> None:
    """Six `hotswap publish` processes started together: every success printed its own
    revision, the history is linear, and a loser says why in one Error: line."""
    hotswap("publish", channel_url, *releases("v1"))
    stamps = ["v2", "v3", "v4", "v5", "v6", "v7"]
    procs = [subprocess.Popen([str(Path(sys.executable).with_name("hotswap")), "publish", channel_url,
                               *map(str, releases(stamp))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for stamp in stamps]
    won: list[int] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        if proc.returncode == 0:
            won.append(int(out.splitlines()[-1]))
        else:
            # lost the compare-and-set ("... publish again"), or timed out waiting on a busy
            # channel: either way one Error: line and nothing of its own is live
            assert proc.returncode == 1, err
            assert err.startswith("Error: ") and len(err.splitlines()) == 1, err
    assert won and len(won) == len(set(won))
    history = open_channel(channel_url).history()
    assert [r.revision for r in history] == list(range(1, len(won) + 2))
    assert sorted(won) == [r.revision for r in history[1:]]
    assert all(r.previous == r.revision - 1 for r in history[1:])


def test_status_gates_a_deploy(fleet: Fleet, releases) -> None:
    """status: the table and summary, --json, --wait exit 0 once all are on it; a failed
    release makes it exit 1 naming each instance and its error; rollout rolls a failing canary
    back and exits 1 saying why."""
    canary, other = instance_in(0, 10, "s"), instance_in(50, 100, "s")
    hotswap("publish", fleet.url, *releases("v1"))
    fleet.start(canary, other)
    code, out, err = hotswap("status", fleet.url, "--wait", "--timeout", "20")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["INSTANCE", "REVISION", "STATE", "AGE", "ERROR"]
    assert sorted(line.split()[:3] for line in lines[1:3]) == sorted([[canary, "1", "ok"],
                                                                      [other, "1", "ok"]])
    assert lines[-1] == "2/2 on 1, ok"
    code, out, _ = hotswap("status", fleet.url, "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] and data["revision"] == 1 and data["summary"] == "2/2 on 1, ok"
    assert sorted(i["instance"] for i in data["instances"]) == sorted([canary, other])
    assert all(i["wants"] == 1 and i["stale"] is False for i in data["instances"])

    hotswap("publish", fleet.url, *releases("bad-test"))
    code, out, err = hotswap("status", fleet.url, "--wait", "--timeout", "20")
    assert code == 1
    assert out.splitlines()[-1] == "0/2 on 2, 2 failed"
    error = 'plugin "beta": self_test failed: AssertionError: beta bad-test fails its self test'
    assert err == (f"Error: channel {fleet.url} is not on revision 2: "
                   + "; ".join(f"{name} failed on 2: {error}" for name in sorted([canary, other]))
                   + "\n")

    hotswap("rollback", fleet.url)   # revision 3: v1 again
    wait_until(lambda: hotswap("status", fleet.url)[0] == 0, what="status ok on 3")
    code, out, err = hotswap("rollout", fleet.url, *releases("bad-init"), "--steps", "5,100",
                             "--pause", "0", "--timeout", "20")
    assert code == 1
    assert out.splitlines()[0] == "published revision 4 to 5% of instances"
    assert err == (f"Error: rollout of revision 4 to {fleet.url} failed: {canary} failed on 4: "
                   'plugin "alpha": on_init failed: RuntimeError: alpha bad-init refuses to start; '
                   "rolled back as revision 5\n")
    wait_until(lambda: hotswap("status", fleet.url)[0] == 0, what="status ok after the rollback")
    code, out, _ = hotswap("rollout", fleet.url, *releases("v2"), "--steps", "5,100", "--pause",
                           "0", "--timeout", "20")
    assert code == 0 and out.splitlines()[-1] == "7"


@pytest.mark.parametrize("steps", ["50,10,100", "10,50", "0,100", "a,b"])
def test_rollout_refuses_bad_steps(channel_url: str, releases, steps: str) -> None:
    """--steps must grow and end at 100: an Error: line, nothing published."""
    code, _, err = hotswap("rollout", channel_url, *releases("v1"), "--steps", steps)
    assert (code, err) == (1, f"Error: --steps {steps!r} is not a growing list of percentages "
                              "ending at 100; write e.g. --steps 10,50,100\n")
    assert revisions(channel_url) == []


def test_status_wait_names_every_failure_once_all_have_settled(channel_url: str, releases) -> None:
    """status --wait does not stop at the first failed instance while another is still updating:
    it waits until every live instance has taken the revision or failed on it, so the gate's
    message names every failure (a deploy script reads them all at once)."""
    import threading
    from datetime import UTC, datetime

    from hotswap_runtime.fleet import InstanceStatus, ops

    assert hotswap("publish", channel_url, *releases("v1"))[0] == 0
    channel = open_channel(channel_url)

    def report(instance: str, state: str, error: str | None) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        channel.report(InstanceStatus(instance=instance, host="h", pid=1, channel=channel.name,
                                      revision=None, attempted=1, state=state, error=error,
                                      heartbeat=30.0, updated=now).to_json())

    report("a:1", "failed", "boom a")
    report("b:2", "updating", None)
    later = threading.Timer(0.5, report, ("b:2", "failed", "boom b"))
    later.start()
    try:
        result = ops.wait_for_gate(channel_url, 1, timeout=20, stop_when_settled=True)
    finally:
        later.join()
    assert result.summary() == "0/2 on 1, 2 failed"
    assert result.problems() == ["a:1 failed on 1: boom a", "b:2 failed on 1: boom b"]


def test_status_table_and_error_stay_one_line_per_instance(channel_url: str, releases) -> None:
    """An error spanning lines (a traceback's message) stays on its instance's row and in the
    one Error: line; the columns line up whatever the ids' lengths."""
    from datetime import UTC, datetime

    from hotswap_runtime.fleet import InstanceStatus

    assert hotswap("publish", channel_url, *releases("v1"))[0] == 0
    channel = open_channel(channel_url)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for instance, state, error in (("web-1.example.com:4312", "ok", None),
                                   ("w:2", "failed", "on_init failed: RuntimeError: boom\n  at line 3")):
        channel.report(InstanceStatus(instance=instance, host="h", pid=1, channel=channel.name,
                                      revision=1 if state == "ok" else None, attempted=1, state=state,
                                      error=error, heartbeat=30.0, updated=now).to_json())
    code, out, err = hotswap("status", channel_url)
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 4 and lines[-1] == "1/2 on 1, 1 failed"
    second_column = [len(line) - len(line.split(None, 1)[1]) for line in lines[:3]]
    assert second_column == [lines[0].index("REVISION")] * 3
    assert lines[1].split(None, 4)[:4] == ["w:2", "-", "(wants", "1)"]
    assert lines[1].endswith("on_init failed: RuntimeError: boom   at line 3")
    assert err == (f"Error: channel {channel_url} is not on revision 1: w:2 failed on 1: on_init "
                   "failed: RuntimeError: boom   at line 3\n")


@pytest.mark.parametrize("args", [["status", "--bogus", "x"], ["publish", "x"],
                                  ["rollout", "x", "a.hsp", "--pause", "-1"],
                                  ["rollback", "x", "--to", "two"],
                                  ["publish", "x", "a.hsp", "--cohort", "0"]])
def test_a_wrong_command_line_exits_2_with_usage(args: list[str]) -> None:
    """A deploy script tells a typo (2) from a channel not on its revision (1)."""
    code, out, err = hotswap(*args)
    assert code == 2 and out == ""
    assert err.startswith("Usage: ") and f" {args[0]} [OPTIONS] CHANNEL" in err.splitlines()[0]
    assert "\nError: " in err and "Traceback" not in err


def test_secrets_of_a_channel_url_are_never_printed(releases, tmp_path: Path) -> None:
    """user:pass@ and ?token= stay out of every line the fleet commands print (deploy logs are
    read by many): the channel is shown without them."""
    from hotswap_runtime.fleet.nats_server import NatsServer

    with NatsServer(tmp_path / "nats", extra_args=["--user", "deploy", "--pass", "s3cret"]) as server:
        url = f"nats://deploy:s3cret@127.0.0.1:{server.port}/prod"
        shown = f"nats://127.0.0.1:{server.port}/prod"
        runs = [hotswap("publish", url, *releases("v1")), hotswap("publish", url, *releases("v2")),
                hotswap("rollback", url), hotswap("status", url),
                hotswap("rollout", url, *releases("v1"), "--steps", "100", "--timeout", "0.5",
                        "--pause", "0"),
                hotswap("status", f"{shown}?token=t0psecret")]
    for _, out, err in runs:
        assert "s3cret" not in out + err and "t0psecret" not in out + err
    assert [code for code, _, _ in runs] == [0, 0, 0, 1, 1, 1]
    assert runs[0][1].splitlines()[0].startswith(f"published revision 1 of {shown}: alpha (")
    assert runs[2][1].splitlines()[0] == f"published revision 3 of {shown}: rollback to 1"
    assert runs[3][2] == f"Error: channel {shown} is not on revision 3: no live instance has reported\n"
    assert runs[4][2].startswith(f"Error: rollout of revision 4 to {shown} timed out after 0.5 s: ")
