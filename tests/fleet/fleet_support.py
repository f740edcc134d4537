"""Helpers of the fleet tests (imported by conftest.py and the tests): channel kinds, plugin
sources, cohort buckets, host processes.

A channel kind registers how to make a fresh channel in ``CHANNEL_KINDS`` (the ``channel_url``
fixture is parametrised by its keys) and how to take it away and bring it back in ``AWAY``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hotswap_runtime.fleet import cohort_bucket
from hotswap_runtime.fleet.nats_server import NatsServer

HERE = Path(__file__).parent
HOST = HERE / "fleet_host.py"
#: heartbeat of the test hosts: short, so stale shows in about a second
HEARTBEAT = 0.3

ALPHA = '''\
"""alpha: exports its stamp; beta checks it is wired to the alpha of its own release."""
CompileTimeString = "dev"

def on_load(data):
    if CompileTimeString.startswith("slow"):   # a load that takes its time (big caches, warm-up)
        import time
        time.sleep(2.5)
def on_init(vault):
    if CompileTimeString.startswith("bad-init"):
        raise RuntimeError(f"alpha {CompileTimeString} refuses to start")
def on_free(): pass
def export(): return {"tag": CompileTimeString}
def import_(): return None
def invoke_func(name, *params): return CompileTimeString
def reloadable(): return True
'''

BETA = '''\
"""beta: works only with the alpha of the same release (the probe of "never a mix")."""
CompileTimeString = "dev"

class Deps:
    alpha: object

deps = Deps()

def on_load(data): pass
def on_init(vault): pass
def on_free(): pass
def export(): return None
def import_(): return deps
def invoke_func(name, *params):
    theirs = deps.alpha["tag"]
    if theirs != CompileTimeString:
        raise RuntimeError(f"mix: beta {CompileTimeString} wired to alpha {theirs}")
    return CompileTimeString
def reloadable(): return True
def self_test(vault):
    if CompileTimeString.startswith("bad-test"):
        raise AssertionError(f"beta {CompileTimeString} fails its self test")
'''


# -- channel kinds -----------------------------------------------------------------------------
def _folder_channel(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return str(tmp_path / "chan")


@contextlib.contextmanager
def _folder_away(url: str) -> Iterator[None]:
    root = Path(url)
    hidden = root.with_name(root.name + ".away")
    root.rename(hidden)
    try:
        yield
    finally:
        hidden.rename(root)


#: the nats-server behind each NATS channel URL a test made (to take it away)
NATS_SERVERS: dict[str, NatsServer] = {}


def _nats_channel(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A real nats-server (JetStream, 127.0.0.1, a free port, a store under tmp_path), stopped
    when the test ends."""
    server = NatsServer(tmp_path / "nats").start()
    url = server.channel_url("prod")
    NATS_SERVERS[url] = server

    def stop() -> None:
        server.stop()
        NATS_SERVERS.pop(url, None)
    request.addfinalizer(stop)
    return url


@contextlib.contextmanager
def _nats_away(url: str) -> Iterator[None]:
    """SIGKILL the server (a crashed machine), then start it again on its port and store."""
    server = NATS_SERVERS[url]
    server.kill()
    try:
        yield
    finally:
        server.start()


#: kind -> fn(tmp_path, request) giving a channel URL no other test uses
CHANNEL_KINDS: dict[str, Callable[[Path, pytest.FixtureRequest], str]] = {
    "folder": _folder_channel,
    "nats": _nats_channel,
}
#: URL prefix ("" matches any folder) -> context manager making that channel unreachable
AWAY: dict[str, Callable[[str], contextlib.AbstractContextManager[None]]] = {
    "": _folder_away,
    "nats://": _nats_away,
}


def channel_away(url: str) -> contextlib.AbstractContextManager[None]:
    """``with channel_away(url):`` the channel cannot be reached; afterwards it is back."""
    for prefix in sorted(AWAY, key=len, reverse=True):
        if url.startswith(prefix):
            return AWAY[prefix](url)
    raise LookupError(f"no way to take {url} away")


# -- instances ---------------------------------------------------------------------------------
def instance_in(low: int, high: int, prefix: str = "host") -> str:
    """The first id ``<prefix>-<n>`` whose bucket is in [low, high)."""
    for n in itertools.count():
        name = f"{prefix}-{n}"
        if low <= cohort_bucket(name) < high:
            return name
    raise AssertionError("unreachable")


@dataclass
class Host:
    """One host process following a channel."""

    instance: str
    proc: subprocess.Popen[str]
    probe_file: Path
    log: Path

    def probe(self) -> dict[str, Any]:
        """The host's last probe: tag served, count, tags seen, errors."""
        try:
            return json.loads(self.probe_file.read_text())
        except (FileNotFoundError, ValueError):
            return {"tag": None, "count": 0, "tags": [], "errors": []}

    def kill(self) -> None:
        """SIGKILL: no goodbye, its report goes stale."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> int:
        """SIGTERM and wait; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(f"host {self.instance} ignored SIGTERM; log:\n{self.logs()}") from None
        return self.proc.returncode

    def logs(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@dataclass
class Fleet:
    """Starts hosts following one channel; every host is stopped when the test ends."""

    url: str
    root: Path
    hosts: list[Host] = field(default_factory=list)
    cache: Path | None = None

    def start(self, *instances: str, use_async: bool | None = None, wait: bool = True,
              cache: Path | None = None, trusted_key: str | None = None) -> list[Host]:
        """Start one host per instance id (odd ones asyncio form unless ``use_async``)."""
        started = []
        for index, instance in enumerate(instances):
            safe = instance.replace(":", "_")
            probe = self.root / f"{safe}.probe.json"
            log = self.root / f"{safe}.log"
            cmd = [sys.executable, str(HOST), self.url, "--instance", instance,
                   "--cache", str(cache or self.cache or self.root / f"{safe}.cache"),
                   "--probe", str(probe), "--heartbeat", str(HEARTBEAT)]
            if use_async or (use_async is None and (len(self.hosts) + index) % 2 == 1):
                cmd.append("--async")
            if trusted_key:
                cmd += ["--trusted-key", trusted_key]
            with open(log, "w") as err:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
            host = Host(instance, proc, probe, log)
            self.hosts.append(host)
            started.append(host)
        if wait:
            for host in started:
                line = host.proc.stdout.readline() if host.proc.stdout else ""
                assert line.startswith("ready"), f"host {host.instance} did not start:\n{host.logs()}"
        return started

    def stop_all(self) -> None:
        for host in self.hosts:
            with contextlib.suppress(Exception):
                host.stop()
            host.kill()


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Poll ``predicate`` every 20 ms until true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


# -- NATS in operator mode (JWTs and a .creds file) --------------------------------------------
def operator_mode(folder: Path) -> tuple[list[str], Path]:
    """A nats-server configuration in operator mode (an operator, a system account, an account
    with JetStream, a user) and that user's ``.creds`` file, made with nkeys as ``nsc`` would:
    (the server's extra arguments, the creds file)."""
    import base64
    import hashlib

    import nkeys

    def keypair(prefix: int) -> Any:
        return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    def jwt(issuer: Any, subject: Any, name: str, nats: dict[str, Any]) -> str:
        claims: dict[str, Any] = {"iat": int(time.time()), "iss": issuer.public_key.decode(),
                                  "sub": subject.public_key.decode(), "name": name,
                                  "nats": {**nats, "version": 2}}
        claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims).encode()).digest()).decode()
        head = b64(b'{"typ":"JWT","alg":"ed25519-nkey"}') + "." + b64(json.dumps(claims).encode())
        return head + "." + b64(issuer.sign(head.encode()))

    operator, system, account, user = (keypair(p) for p in (
        nkeys.PREFIX_BYTE_OPERATOR, nkeys.PREFIX_BYTE_ACCOUNT, nkeys.PREFIX_BYTE_ACCOUNT,
        nkeys.PREFIX_BYTE_USER))
    limits = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
              "wildcards": True, "conn": -1, "leaf": -1}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "operator.jwt").write_text(jwt(operator, operator, "hotswap-test", {
        "type": "operator", "system_account": system.public_key.decode()}))
    accounts = {system: jwt(operator, system, "SYS", {"type": "account", "limits": limits}),
                account: jwt(operator, account, "deploy", {"type": "account", "limits": {
                    **limits, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}})}
    preload = "\n".join(f'  {k.public_key.decode()}: "{v}"' for k, v in accounts.items())
    (folder / "server.conf").write_text(
        f'operator: "{folder / "operator.jwt"}"\nsystem_account: {system.public_key.decode()}\n'
        f"resolver: MEMORY\nresolver_preload: {{\n{preload}\n}}\n")
    creds = folder / "host.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\n"
                     + jwt(account, user, "host", {"type": "user", "pub": {}, "sub": {},
                                                   "subs": -1, "data": -1, "payload": -1})
                     + "\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n"
                     + user.seed.decode() + "\n------END USER NKEY SEED------\n")
    creds.chmod(0o600)
    return ["-c", str(folder / "server.conf")], creds
