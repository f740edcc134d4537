"""``make demo-fleet-nats``: a fleet on NATS JetStream, unattended.

The tour: start a NATS server (JetStream, 127.0.0.1, a store in a temporary folder), build two
releases of the ``greeting`` plugin and a broken one (its ``self_test`` catches the bug),
publish v1 to ``nats://…/demo``, start two "machines" (``machine-a`` with one worker,
``machine-b`` with two; each worker is an instance following the channel), gate on
``hotswap status --wait``, publish v2 and gate again, then ``hotswap rollout`` the broken
build with a first step holding one canary: the canary refuses it, the rollout rolls back by
itself and exits 1 naming the canary and its error; everyone still serves v2. Every command is
printed as a user would type it; it ends with what each worker served and exit status 0, or
says what went wrong and exits 1.

    python -m demo.fleet.walkthrough [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from demo.tour import ROOT, STEP_TIMEOUT, StepFailed, run, say, step, tool
from hotswap_runtime.fleet import cohort_bucket
from hotswap_runtime.fleet.nats_server import NatsServer, find_nats_server

PLUGIN = ROOT / "demo" / "fleet" / "plugin" / "greeting"
MACHINES = (("machine-a", 1), ("machine-b", 2))
INSTANCES = sum(n for _, n in MACHINES)


def broken_copy(work: Path) -> Path:
    """The greeting with a typo in greet(): its self_test refuses it in every worker."""
    copy = work / "broken-src" / "greeting"
    shutil.copytree(PLUGIN, copy, ignore=shutil.ignore_patterns("__pycache__"))
    init = copy / "__init__.py"
    init.write_text(init.read_text().replace('f"hello {name}', 'f"helo {name}'))
    return copy


def wait_for_instances(hotswap: str, channel: str) -> list[dict]:
    deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        done = subprocess.run([hotswap, "status", channel, "--json"], capture_output=True, text=True,
                              timeout=STEP_TIMEOUT)
        if done.stdout:
            live = [s for s in json.loads(done.stdout)["instances"] if not s["stale"]]
            if len(live) >= INSTANCES:
                return live
        if time.monotonic() > deadline:
            raise StepFailed(f"waited {STEP_TIMEOUT:g} s for {INSTANCES} instances to report; "
                             "see the machines' logs")
        time.sleep(0.3)


def served_lines(log: Path) -> list[str]:
    """The workers' "TIME INSTANCE serving: ANSWER" lines of a machine's log."""
    return [line for line in log.read_text().splitlines() if line.split(" ", 2)[-1].startswith("serving:")]


def tour(work: Path) -> None:
    hotswap = tool("hotswap")
    step("1. Start a NATS server with JetStream (one binary; in production, three clustered)")
    server = NatsServer(work / "nats")
    say(f"  $ {Path(find_nats_server()).name} -js -a 127.0.0.1 -p {server.port} -sd {work / 'nats'} &")
    server.start()
    channel = server.channel_url("demo")
    machines: list[tuple[str, subprocess.Popen[str], Path]] = []
    try:
        step("2. Build two releases of the greeting plugin, and a broken one")
        for stamp in ("v1", "v2"):
            run([hotswap, "build", PLUGIN, work / stamp, "--", "-X", f"CompileTimeString={stamp}"])
        run([hotswap, "build", broken_copy(work), work / "broken", "--", "-X", "CompileTimeString=v3"])

        step(f"3. Publish v1 to {channel}")
        run([hotswap, "publish", channel, work / "v1" / "greeting.hsp", "--note", "first release"])

        step("4. Two machines follow the channel: machine-a with one worker, machine-b with two")
        for name, workers in MACHINES:
            cmd = [sys.executable, "-m", "demo.fleet.machine", channel, "--name", name,
                   "--workers", str(workers), "--cache", str(work / f"{name}-cache"), "--heartbeat", "1"]
            say(f"  $ python -m demo.fleet.machine {channel} --name {name} --workers {workers} &")
            log = work / f"{name}.log"
            with open(log, "w") as out:
                proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
            machines.append((name, proc, log))
        live = wait_for_instances(hotswap, channel)
        run([hotswap, "status", channel, "--wait", "--timeout", str(STEP_TIMEOUT)])

        step("5. Publish v2; every worker of every machine takes it (status --wait is the gate)")
        run([hotswap, "publish", channel, work / "v2" / "greeting.hsp", "--note", "v2 for everyone"])
        run([hotswap, "status", channel, "--wait", "--timeout", str(STEP_TIMEOUT)])

        step("6. Roll out the broken build: the canary's self_test refuses it, the rollout rolls back")
        canary = min(live, key=lambda s: cohort_bucket(s["instance"]))
        first = cohort_bucket(canary["instance"]) + 1
        say(f"    (the first step is {first}%: only {canary['instance']}, bucket "
            f"{cohort_bucket(canary['instance'])}, is in it)")
        run([hotswap, "rollout", channel, work / "broken" / "greeting.hsp",
             "--steps", f"{first},100" if first < 100 else "100", "--pause", "1", "--timeout", "30"], expect=1)
        run([hotswap, "status", channel, "--wait", "--timeout", str(STEP_TIMEOUT)])
    finally:
        for _, proc, _ in machines:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc, _ in machines:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        server.stop()

    step("7. What each worker served")
    for name, proc, log in machines:
        for line in served_lines(log):
            say(f"    {line}")
        if proc.returncode != 0:
            raise StepFailed(f"{name} exited {proc.returncode}; see {log}")
    served = "\n".join(line for _, _, log in machines for line in served_lines(log))
    if "from greeting v3" in served:
        raise StepFailed("a worker served the broken build; see the machines' logs")
    if served.count("from greeting v2") < INSTANCES:
        raise StepFailed("not every worker served v2; see the machines' logs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a fleet on NATS JetStream, unattended")
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it (logs, artifacts, store)")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="hotswap-fleet-nats-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        tour(work)
    except (StepFailed, subprocess.TimeoutExpired) as exc:
        say(f"\nThe tour failed: {exc}")
        say(f"Logs and files are in {work}")
        return 1
    say("\nDone: one publish reached every worker of both machines, and a failing canary was "
        "rolled back by itself.")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
