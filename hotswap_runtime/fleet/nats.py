"""The NATS JetStream channel: ``open_channel("nats://HOST:PORT/NAME")`` (README "Fleet").

Design note. :class:`~hotswap_runtime.fleet.channel.Channel` is blocking and nats-py is asyncio,
so a private event loop runs in a daemon thread and every method hands one coroutine to it
(``asyncio.run_coroutine_threadsafe``) and waits a bounded time: a channel that cannot be
reached raises :class:`ChannelUnavailable` within ``connect_timeout + timeout`` seconds, never
hangs. The loop and its one connection are shared by every channel of the process with the same
servers and options (a process that opens the channel again and again, as ``hotswap status
--wait`` does, costs the server one connection) and made again after a fork. Nothing connects
until the first call (``open_channel`` never fails on a server that is away); after a failed
connect the next call tries again, and once connected nats-py reconnects by itself.
JetStream holds everything:

- object store ``hotswap-artifacts``: each artifact once, under its sha256 (the object store's
  own SHA-256 digest is the same content address, so a publisher skips what is there already);
  a fetch checks sha256 and size against the release and refuses anything else;
- KV ``hotswap-release-NAME``, key ``release``: the ``RELEASE.json``, written with
  compare-and-set on the entry's last sequence (``create`` for the first), history 64 (the
  JetStream maximum) for ``rollback`` and audit;
- KV ``hotswap-status-NAME``: one key per instance, each report with a per-message TTL of a few
  of that instance's own heartbeats, so vanished instances expire whatever their heartbeat.

Every bucket is created on first use by whoever needs it (publisher or follower) with the same
configuration, three replicas on a cluster (as many as it has nodes if fewer). Followers wait
for a new release with a KV watch on the release key, re-armed after a reconnect: no polling.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import ssl
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote

import nats
import nats.aio.client
import nats.errors
import nats.js.errors
import nats.js.kv
from nats.js.api import KeyValueConfig, ObjectStoreConfig

from .. import forks
from ..artifact import write_atomically
from .channel import ArtifactRef, Channel, ChannelError, ChannelUnavailable, PublishConflict, Release

__all__ = ["ARTIFACT_BUCKET", "NatsChannel", "release_bucket", "status_bucket", "status_key"]

log = logging.getLogger(__name__)
T = TypeVar("T")

ARTIFACT_BUCKET = "hotswap-artifacts"
RELEASE_KEY = "release"
#: JetStream keeps at most 64 values per key; all of them, for rollback and audit
RELEASE_HISTORY = 64
#: a status report expires after this many of its instance's heartbeats (shown stale after 3)
STATUS_TTL_HEARTBEATS = 6
STATUS_TTL_MIN_S = 5.0
_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
_KEY_SAFE = re.compile(r"[A-Za-z0-9_-]")
#: API error codes that mean "fewer replicas than asked are possible here"
_REPLICA_ERRORS = {10074, 10023}   # not clustered; insufficient resources (too few nodes)


def release_bucket(name: str) -> str:
    return f"hotswap-release-{name}"


def status_bucket(name: str) -> str:
    return f"hotswap-status-{name}"


def status_key(instance: str) -> str:
    """A KV key for an instance id: every character but ``[A-Za-z0-9_-]`` as ``=XX`` (dots and
    colons are separators or invalid in NATS keys), so distinct ids never share a key."""
    return "".join(c if _KEY_SAFE.fullmatch(c) else "".join(f"={b:02X}" for b in c.encode()) for c in instance)


def _sha256_digest(hex_sha256: str) -> str:
    """The object store's digest string for a hex sha256 (``SHA-256=`` + urlsafe base64)."""
    return "SHA-256=" + base64.urlsafe_b64encode(bytes.fromhex(hex_sha256)).decode()


class _Unavailable(Exception):
    """Raised inside the loop; becomes ChannelUnavailable with the channel's URL."""


class _Reconnecting(_Unavailable):
    """nats-py was still reconnecting when the wait for it ended."""


_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.NoServersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
    _Unavailable,
)


class _TlsRefused(nats.errors.Error):
    """The server cannot give the TLS asked for; raised before anything is sent to it."""


class _Client(nats.aio.client.Client):
    """nats-py's client, held to the TLS that was asked for.

    nats-py upgrades a connection to TLS only when the server's INFO says ``tls_required``: a
    ``tls://`` URL (or a TLS context) against a server without TLS would go on in plain text,
    credentials included, and a server that verifies clients would just drop a client without
    a certificate (seen as "connection lost"). The INFO is checked here, before CONNECT is
    sent, on the first connect and every reconnect.
    """

    def __init__(self, require_tls: bool, client_cert: bool) -> None:
        super().__init__()
        self._hotswap_require_tls = require_tls
        self._hotswap_client_cert = client_cert

    async def _process_info(self, info: dict[str, Any], initial_connection: bool = False) -> None:
        if initial_connection:
            if self._hotswap_require_tls:
                if not (info.get("tls_required") or info.get("tls_available")):
                    raise _TlsRefused("no TLS")
                info["tls_required"] = True      # upgrade even where the server makes TLS optional
            if info.get("tls_verify") and not self._hotswap_client_cert:
                raise _TlsRefused("client certificate")
        await super()._process_info(info, initial_connection=initial_connection)


#: what setting a watch up may raise while a server recovers or a cluster elects a leader
_RETRY_WATCH: tuple[type[BaseException], ...] = (*_UNAVAILABLE, nats.js.errors.APIError)


def parse_url(url: str) -> tuple[list[str], str, dict[str, str], str]:
    """``nats://[user:pass@]host:port[,host:port...]/NAME[?creds=FILE&ca=...]`` ->
    (server URLs for nats-py, channel name, query options, the URL without credentials)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("nats", "tls"):
        raise ChannelError(f"channel {url!r}: not a NATS URL; write nats://HOST:PORT/NAME or tls://HOST:PORT/NAME")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    name = path.strip("/")
    if not _NAME_RE.fullmatch(name):
        raise ChannelError(f"channel {_public(scheme, netloc, name)!r}: the channel name {name!r} after the "
                           "server must be letters, digits, '-' or '_'; write nats://HOST:PORT/NAME")
    userinfo, at, hosts = netloc.rpartition("@")
    if not hosts:
        raise ChannelError(f"channel {_public(scheme, netloc, name)!r}: no server; write nats://HOST:PORT/NAME")
    servers = [f"{scheme}://{userinfo + at}{h.strip()}" for h in hosts.split(",") if h.strip()]
    opts = {k: unquote(v[-1]) for k, v in parse_qs(query).items()}
    unknown = set(opts) - {"creds", "ca", "cert", "key", "token"}
    if unknown:
        raise ChannelError(f"channel {_public(scheme, hosts, name)!r}: unknown option(s) {', '.join(sorted(unknown))}; "
                           "known: creds, ca, cert, key, token")
    return servers, name, opts, _public(scheme, hosts, name)


def _public(scheme: str, netloc: str, name: str) -> str:
    return f"{scheme}://{netloc.rpartition('@')[2]}/{name}"


class _Connection:
    """One nats-py connection and the private loop running it, shared by every NatsChannel of
    this process with the same servers and options (see the module note)."""

    _shared: dict[tuple[Any, ...], _Connection] = {}
    _shared_lock = threading.Lock()
    forks.free_in_child(_shared_lock)  # held for a dict lookup only

    @classmethod
    def get(cls, servers: list[str], public: str, timeout: float, connect_timeout: float,
            replicas: int | None, options: dict[str, Any], identity: str) -> _Connection:
        """The shared connection for these servers and options (``identity``: what the user
        wrote, so a TLS context built from ``?ca=`` does not make every channel a new one)."""
        key = (tuple(servers), timeout, connect_timeout, replicas, identity)
        with cls._shared_lock:
            conn = cls._shared.get(key)
            # a connection made before a fork (gunicorn's preload) has no loop thread here
            if conn is None or conn._closed or conn._pid != os.getpid():
                conn = cls._shared[key] = _Connection(servers, public, timeout, connect_timeout, replicas, options)
                conn._key = key
            conn._users += 1
            return conn

    def __init__(self, servers: list[str], public: str, timeout: float, connect_timeout: float,
                 replicas: int | None, options: dict[str, Any]) -> None:
        self._servers, self.public, self.timeout, self.connect_timeout = servers, public, timeout, connect_timeout
        self.replicas, self._options = replicas, options
        self._key: tuple[Any, ...] = ()
        self._users = 0
        self._pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        # loop-side state (touched only from the loop thread)
        self._nc: Any = None
        self.js: Any = None
        self._connect_lock: asyncio.Lock | None = None
        self._reconnected: asyncio.Event | None = None
        self._buckets: dict[str, Any] = {}
        self.watches: dict[str, _Watch] = {}

    def call(self, make: Callable[[], Awaitable[T]], what: str, *, url: str, budget: float | None = None,
             wait_connected: float = 0.0) -> T:
        """Run ``make()`` on the private loop and wait for it, bounded; map errors to ours."""
        if self._closed:
            raise ChannelError(f"channel {url!r} is closed; open it again with open_channel")
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop.run_forever,
                                                name=f"hotswap-nats-{self.public}", daemon=True)
                self._thread.start()
        connect = 2 * (self.connect_timeout + 0.25) * len(self._servers) + 1.0
        limit = (budget if budget is not None else self.timeout) + connect + 2.0
        future = asyncio.run_coroutine_threadsafe(self._guarded(make, what, url, wait_connected), self._loop)
        try:
            return future.result(limit)
        except FutureTimeout:
            future.cancel()
            raise ChannelUnavailable(f"channel {url!r}: {what} took more than {limit:.0f} s; "
                                     "the NATS server is slow or away, retry later") from None

    async def _guarded(self, make: Callable[[], Awaitable[T]], what: str, url: str, wait_connected: float) -> T:
        try:
            await self._connect(wait_connected)
            return await make()
        except ChannelError:
            raise
        except nats.errors.AuthorizationError as exc:
            raise ChannelError(f"channel {url!r}: the server refused our credentials ({exc}); "
                               "check user:pass@, ?creds= or ?token=") from exc
        except _TlsRefused as exc:
            if str(exc) == "no TLS":
                raise ChannelError(f"channel {url!r}: the NATS server does not offer TLS, but TLS was asked "
                                   "for (tls://, ?ca=, ?cert= or a tls= context), so nothing was sent to it; "
                                   "start nats-server with --tls (--tlscert and --tlskey), or use nats:// "
                                   "where plain text is acceptable") from exc
            raise ChannelError(f"channel {url!r}: the NATS server verifies clients and wants a TLS client "
                               "certificate; give ?cert=FILE and ?key=FILE (or a tls= context holding "
                               "one)") from exc
        except ssl.SSLError as exc:        # an OSError, but no retry will make it verify
            raise ChannelError(f"channel {url!r}: the TLS handshake failed ({exc}); check ?ca= (the CA "
                               "that signed the server's certificate), ?cert= and ?key=") from exc
        except _UNAVAILABLE as exc:
            if (isinstance(exc, (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError))
                    and self._nc is not None and self._nc.is_connected
                    and not getattr(self._nc, "_server_info", {}).get("jetstream")):
                # reached, but nobody answers JetStream requests: no retry fixes that
                raise ChannelError(f"channel {url!r}: {what} failed: the NATS server runs without "
                                   "JetStream; start it with -js (or jetstream {{}} in its "
                                   "configuration)") from exc
            raise ChannelUnavailable(f"channel {url!r}: {what} failed, the NATS server cannot be "
                                     f"reached ({type(exc).__name__}: {exc}); check that nats-server "
                                     "runs there with -js and that the address is right, or retry "
                                     "later") from exc
        except nats.js.errors.APIError as exc:
            if exc.code == 503:
                raise ChannelUnavailable(f"channel {url!r}: {what} failed, JetStream is not ready "
                                         f"({exc.description}); retry later") from exc
            raise ChannelError(f"channel {url!r}: {what} failed: {exc.description or exc} "
                               f"(JetStream error {exc.err_code})") from exc
        except nats.errors.Error as exc:
            if "authorization" in str(exc).lower() or "authentication" in str(exc).lower():
                raise ChannelError(f"channel {url!r}: the server refused our credentials ({exc}); "
                                   "check user:pass@, ?creds= or ?token=") from exc
            raise ChannelError(f"channel {url!r}: {what} failed: {type(exc).__name__}: {exc}") from exc

    async def _connect(self, wait_connected: float = 0.0) -> None:
        """Connect on first use; while nats-py reconnects, wait up to ``wait_connected`` seconds."""
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
            self._reconnected = asyncio.Event()
        if self._nc is not None and not self._nc.is_closed and not self._nc.is_connected and wait_connected > 0:
            assert self._reconnected is not None
            try:
                await asyncio.wait_for(self._reconnected.wait(), wait_connected)
            except TimeoutError:
                raise _Reconnecting(f"still reconnecting after {wait_connected:.1f} s") from None
        async with self._connect_lock:
            if self._nc is not None and not self._nc.is_closed:
                if not self._nc.is_connected:
                    raise _Unavailable("reconnecting")
                return
            self._nc = self.js = None
            self._buckets.clear()

            async def reconnected() -> None:
                log.info("channel %r: reconnected to %s", self.public, self._nc.connected_url.netloc)
                assert self._reconnected is not None
                self._reconnected.set()
                self._reconnected = asyncio.Event()

            async def disconnected() -> None:
                if self._closed or self._nc is None:
                    return                 # our own close, or a first connect that failed
                log.warning("channel %r: disconnected from the NATS server; reconnecting", self.public)

            async def error(exc: Exception) -> None:
                log.debug("channel %r: %s: %s", self.public, type(exc).__name__, exc)

            # the first connect tries each server twice and fails (nats-py would retry forever
            # with max_reconnect_attempts=-1); once connected, reconnect forever
            options = {"connect_timeout": self.connect_timeout, "reconnect_time_wait": 0.25,
                       "ping_interval": 5, "max_outstanding_pings": 2, "reconnected_cb": reconnected,
                       "disconnected_cb": disconnected, "error_cb": error, **self._options,
                       "allow_reconnect": False, "max_reconnect_attempts": 1}
            require_tls = any(s.startswith("tls://") for s in self._servers) or options.get("tls") is not None
            nc = _Client(require_tls, client_cert=options.pop("_client_cert", options.get("tls") is not None))
            try:
                await asyncio.wait_for(nc.connect(self._servers, **options),
                                       2 * (self.connect_timeout + 0.25) * len(self._servers) + 0.5)
            except BaseException:
                with contextlib.suppress(Exception):   # a refused TLS leaves its socket open
                    await asyncio.wait_for(nc.close(), 1.0)
                raise
            nc.options["allow_reconnect"] = self._options.get("allow_reconnect", True)
            nc.options["max_reconnect_attempts"] = self._options.get("max_reconnect_attempts", -1)
            self._nc, self.js = nc, nc.jetstream(timeout=self.timeout)

    # -- buckets ------------------------------------------------------------------------------
    def _replica_choices(self) -> list[int]:
        if self.replicas is not None:
            return [self.replicas]
        return [3, 2, 1]

    async def bucket(self, bucket: str, *, create: bool = True) -> Any:
        """Get the KV or object-store bucket, creating it (same config everywhere) when missing."""
        if bucket in self._buckets:
            return self._buckets[bucket]
        js = self.js
        if js is None:
            raise _Unavailable("not connected")
        try:
            handle = await (js.object_store(bucket) if bucket == ARTIFACT_BUCKET else js.key_value(bucket))
        except nats.js.errors.NotFoundError:
            if not create:
                return None
            handle = None
            for replicas in self._replica_choices():
                try:
                    handle = await self._create(bucket, replicas)
                    log.info("channel %r: created bucket %s with %d replica(s)", self.public, bucket, replicas)
                    break
                except nats.js.errors.APIError as exc:
                    if exc.err_code in _REPLICA_ERRORS and replicas > 1:
                        continue
                    if exc.err_code == 10058:    # created meanwhile by another host: use theirs
                        handle = await (js.object_store(bucket) if bucket == ARTIFACT_BUCKET
                                        else js.key_value(bucket))
                        break
                    raise
        self._buckets[bucket] = handle
        return handle

    async def _create(self, bucket: str, replicas: int) -> Any:
        if bucket == ARTIFACT_BUCKET:
            return await self.js.create_object_store(
                bucket, ObjectStoreConfig(description="hotswap artifacts by sha256", replicas=replicas))
        if bucket.startswith("hotswap-release-"):
            return await self.js.create_key_value(KeyValueConfig(
                bucket=bucket, description=f"hotswap releases of channel {bucket[len('hotswap-release-'):]}",
                history=RELEASE_HISTORY, replicas=replicas))
        return await self.js.create_key_value(KeyValueConfig(
            bucket=bucket, description=f"hotswap instance status of channel {bucket[len('hotswap-status-'):]}",
            history=1, replicas=replicas))

    async def scan(self, kv: Any, keys: str, *, include_history: bool = False) -> list[Any]:
        """The last value of each key matching ``keys`` (or every value kept), read through a
        consumer deleted right after: a status loop must not leave one behind per round."""
        watcher = await kv.watch(keys, include_history=include_history,
                                 inactive_threshold=max(5.0, 2 * self.timeout))
        entries: list[Any] = []
        try:
            while True:
                entry = await watcher.updates(self.timeout)
                if entry is None:
                    # nats-py may send its "nothing pending" marker before messages the server
                    # had already sent: trust it only when the consumer delivered nothing
                    if entries and entries[-1].delta == 0:
                        break
                    info = await watcher._sub.consumer_info()
                    if not entries and info.delivered.consumer_seq == 0 and info.num_pending == 0:
                        break
                    continue
                entries.append(entry)
                if entry.delta == 0 and watcher._init_done:
                    break
        finally:
            await self.drop(watcher)
        return [e for e in entries if e.operation is None]

    async def drop(self, watcher: Any) -> None:
        """Stop a KV watcher and delete its consumer on the server (else it lingers 5 minutes)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(watcher.stop(), 1.0)
        sub = watcher._sub
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.js.delete_consumer(sub._stream, sub._consumer), 1.0)

    def watch(self, bucket: str, parse: Callable[[Any], Release]) -> _Watch:
        """The one watch of ``bucket``'s release key this connection keeps, started on first use."""
        state = self.watches.get(bucket)
        if state is None:
            state = self.watches[bucket] = _Watch()
        if state.task is None or state.task.done():
            state.synced = False
            state.task = asyncio.get_running_loop().create_task(self._watch(bucket, state, parse))
        return state

    async def _watch(self, bucket: str, state: _Watch, parse: Callable[[Any], Release]) -> None:
        """Keep ``state.latest`` on the release key's last value: a KV watch (an ordered consumer
        delivering the latest value, then each new one), set up again after a reconnect."""
        changed = state.changed

        async def note(latest: Release | None = None, *, synced: bool, error: ChannelError | None = None) -> None:
            async with changed:
                if synced:
                    state.latest = latest
                state.synced, state.error = synced, error
                changed.notify_all()

        while not self._closed:
            assert self._reconnected is not None
            reconnected = self._reconnected
            try:
                if self._nc is None or not self._nc.is_connected:
                    await reconnected.wait()
                    continue
                kv = await self.bucket(bucket)
                watcher = await kv.watch(RELEASE_KEY)
            except _RETRY_WATCH as exc:
                # a cluster electing a leader, a server recovering its streams: set the watch
                # up again shortly (this retries a failed setup; it reads nothing)
                log.debug("channel %r: watch not set up yet (%s); again in 0.25 s", self.public, exc)
                await asyncio.sleep(0.25)
                continue
            try:
                latest = state.latest if state.synced else None
                while True:
                    get = asyncio.ensure_future(watcher._updates.get())
                    rearm = asyncio.ensure_future(reconnected.wait())
                    try:
                        done, _ = await asyncio.wait({get, rearm}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for task in (get, rearm):
                            task.cancel()
                    if get not in done:
                        await note(synced=False)      # reconnected: watch again from the latest
                        break
                    entry = get.result()
                    if entry is None:                 # the "up to date" marker
                        await note(latest, synced=True)
                        continue
                    if isinstance(entry, nats.js.kv.KeyValue.Entry) and entry.operation is None:
                        try:
                            latest = parse(entry)
                        except ChannelError as exc:
                            await note(synced=False, error=exc)
                            continue
                        if entry.delta == 0:          # the last pending value: now up to date
                            await note(latest, synced=True)
            finally:
                await self.drop(watcher)

    def release_user(self) -> None:
        """One channel less; the last one closes the connection and stops the loop."""
        with self._shared_lock:
            self._users -= 1
            if self._users > 0 or self._closed:
                return
            self._closed = True
            if self._shared.get(self._key) is self:
                del self._shared[self._key]
        if self._thread is None:
            self._loop.close()
            return

        async def shutdown() -> None:
            if self._nc is not None and not self._nc.is_closed:
                try:
                    await asyncio.wait_for(self._nc.close(), self.connect_timeout)
                except Exception:                  # noqa: BLE001 - closing a dead connection
                    pass
            # nats-py may leave a reconnect attempt behind: end every task before the loop stops
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
        if threading.current_thread() is self._thread:
            # collected on the loop's own thread: it cannot wait for itself
            async def shutdown_and_stop() -> None:
                await shutdown()
                self._loop.stop()
            self._loop.create_task(shutdown_and_stop())
            return
        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(self.connect_timeout + 2)
        except Exception:                          # noqa: BLE001 - best effort on the way out
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def _parse_release(url: str, entry: Any) -> Release:
    return Release.from_json(entry.value, where=f"channel {url!r} release entry {entry.revision}")


def _release_holder(holder: list[_Connection]) -> None:
    """A channel closed or collected: one user less of its connection (in this process)."""
    if holder[0]._pid == os.getpid():
        holder[0].release_user()


class _Watch:
    """What one watch of a release key knows (loop-side)."""

    def __init__(self) -> None:
        self.changed = asyncio.Condition()     # notified when latest, synced or error change
        self.task: asyncio.Task[None] | None = None
        self.latest: Release | None = None
        self.synced = False                    # latest is the key's current value
        self.error: ChannelError | None = None


class NatsChannel(Channel):
    """A channel on a NATS JetStream server or cluster; see the module note.

    Args:
        url: ``nats://[user:pass@]HOST:PORT[,HOST:PORT...]/NAME``, ``tls://...`` for TLS;
            query options ``creds=FILE`` (a ``.creds`` file), ``token=T``, ``ca=FILE``,
            ``cert=FILE`` and ``key=FILE`` (TLS trust and client certificate).
        timeout: seconds one JetStream request may take before ChannelUnavailable.
        connect_timeout: seconds one connection attempt may take.
        replicas: replicas of the buckets it creates (default: 3, or the cluster's size if smaller).
        status_ttl: seconds a status report lives (default: 6 of the reporter's heartbeats, >= 5 s).
        **options: passed to ``nats.connect`` (``tls=SSLContext``, ``user_credentials=``, ``name=``...).
    """

    def __init__(self, url: str, *, timeout: float = 5.0, connect_timeout: float = 2.0,
                 replicas: int | None = None, status_ttl: float | None = None, **options: Any) -> None:
        servers, self.name, query, self.url = parse_url(url)
        self.timeout = timeout
        self.status_ttl = status_ttl
        self._closed = False
        self._conn_args = (servers, self.url.rpartition("/")[0], timeout, connect_timeout, replicas,
                           self._connect_options(query, options),
                           repr((sorted(query.items()), sorted(options.items()))))
        # the connection is released by close() or, for a channel dropped without it (a status
        # loop calling open_channel each round), when the channel is garbage: nothing on the
        # loop holds the channel itself
        self._holder = [_Connection.get(*self._conn_args)]
        self._finalizer = weakref.finalize(self, _release_holder, self._holder)
        self._finalizer.atexit = False

    def __repr__(self) -> str:
        return f"NatsChannel({self.url!r})"

    @property
    def _conn(self) -> _Connection:
        return self._holder[0]

    @property
    def _js(self) -> Any:
        return self._conn.js

    def _connect_options(self, query: Mapping[str, str], options: dict[str, Any]) -> dict[str, Any]:
        opts = dict(options)
        if "creds" in query:
            opts.setdefault("user_credentials", query["creds"])
        if isinstance(opts.get("user_credentials"), (str, os.PathLike)):
            self._check_creds(os.fspath(opts["user_credentials"]))
        if "token" in query:
            opts.setdefault("token", query["token"])
        if {"ca", "cert", "key"} & set(query) and "tls" not in opts:
            try:
                context = ssl.create_default_context(cafile=query.get("ca"))
                if "cert" in query:
                    context.load_cert_chain(query["cert"], query.get("key"))
            except (OSError, ssl.SSLError) as exc:
                raise ChannelError(f"channel {self.url!r}: cannot load the TLS files ({exc}); "
                                   "check the ca=, cert= and key= paths") from exc
            opts["tls"] = context
            opts["_client_cert"] = "cert" in query     # _Client: a verifying server wants one
        return opts

    def _check_creds(self, path: str) -> None:
        """A ``.creds`` file nats-py can use, checked now: nats-py itself reads it only while
        connecting, where a missing file looks like a server away and a wrong one is a
        TypeError deep inside it."""
        where = f"channel {self.url!r}: the credentials file {path!r}"
        try:
            text = Path(path).read_text(errors="replace")
        except OSError as exc:
            raise ChannelError(f"{where} cannot be read ({exc.strerror}); check the path of ?creds= "
                               "and that this user may read it") from exc
        if "BEGIN NATS USER JWT" not in text or "BEGIN USER NKEY SEED" not in text:
            raise ChannelError(f"{where} is not a NATS credentials file (it needs a user JWT and an "
                               "nkey seed); give the .creds file made by nsc or your NATS operator")
        if importlib.util.find_spec("nkeys") is None:   # nats-py signs with it, found only then
            raise ChannelError(f"{where} needs the nkeys package; pip install 'hotswap[fleet]' "
                               "(it brings nats-py[nkeys])")

    def _call(self, make: Callable[[], Awaitable[T]], what: str, *, budget: float | None = None,
              wait_connected: float | None = None) -> T:
        """Run ``make`` on the connection's loop; while nats-py is reconnecting (a server that
        just restarted) wait for it up to ``wait_connected`` (default ``connect_timeout``)."""
        if wait_connected is None:
            wait_connected = self._conn.connect_timeout
        if self._closed:
            raise ChannelError(f"channel {self.url!r} is closed; open it again with open_channel")
        if self._conn._pid != os.getpid():      # opened before a fork: this process's own connection
            self._holder[0] = _Connection.get(*self._conn_args)
        return self._conn.call(make, what, url=self.url, budget=budget, wait_connected=wait_connected)

    async def _bucket(self, bucket: str, *, create: bool = True) -> Any:
        return await self._conn.bucket(bucket, create=create)

    # -- releases -----------------------------------------------------------------------------
    async def _current_entry(self) -> tuple[Release | None, int]:
        """The current release and its KV sequence (0 when nothing was published)."""
        kv = await self._bucket(release_bucket(self.name))
        try:
            entry = await kv.get(RELEASE_KEY)
        except nats.js.errors.KeyNotFoundError:
            return None, 0
        return self._parse(entry), entry.revision

    def _parse(self, entry: Any) -> Release:
        return _parse_release(self.url, entry)

    def current(self) -> Release | None:
        async def go() -> Release | None:
            return (await self._current_entry())[0]
        return self._call(go, "reading the current release")

    async def _history(self) -> list[Release]:
        kv = await self._bucket(release_bucket(self.name))
        entries = await self._conn.scan(kv, RELEASE_KEY, include_history=True)
        releases = [self._parse(e) for e in entries if e.operation is None and e.value]
        return sorted(releases, key=lambda r: r.revision)

    def history(self) -> list[Release]:
        return self._call(self._history, "reading the release history")

    def release(self, revision: int) -> Release:
        kept = self.history()
        for candidate in kept:
            if candidate.revision == revision:
                return candidate
        listed = (f"kept revisions: {kept[0].revision}..{kept[-1].revision}" if kept
                  else "nothing was published yet")
        raise ChannelError(f"unknown revision {revision} in channel {self.url} ({listed}, the last "
                           f"{RELEASE_HISTORY} are kept); hotswap status shows the current one")

    def put_artifact(self, path: Path, ref: ArtifactRef) -> None:
        data = Path(path).read_bytes()
        if hashlib.sha256(data).hexdigest() != ref.sha256 or len(data) != ref.size:
            raise ChannelError(f"artifact {ref.file!r} at {str(path)!r} is not the one described "
                               f"(sha256 {ref.sha256[:12]}…, {ref.size} bytes); rebuild it and publish again")

        async def go() -> None:
            obs = await self._bucket(ARTIFACT_BUCKET)
            try:
                info = await obs.get_info(ref.sha256)
                if info.digest == _sha256_digest(ref.sha256) and info.size == ref.size:
                    return                                 # stored once, under its sha256
                log.warning("channel %r: object %s did not match its name; storing it again", self.url, ref.sha256)
            except nats.js.errors.ObjectNotFoundError:
                pass
            await obs.put(ref.sha256, data)
        self._call(go, f"storing artifact {ref.file!r}", budget=self.timeout + len(data) / 1e6)

    def publish_release(self, release: Release) -> Release:
        data = json.dumps(release.to_json(), indent=1).encode()

        async def go() -> Release:
            obs = await self._bucket(ARTIFACT_BUCKET)
            for ref in release.artifacts.values():
                try:
                    info = await obs.get_info(ref.sha256)
                except nats.js.errors.ObjectNotFoundError:
                    info = None
                if info is None:
                    raise ChannelError(f"channel {self.url!r}: artifact {ref.file!r} ({ref.sha256[:12]}…) is not "
                                       "stored; publish it with hotswap publish, which stores it first")
                if info.digest != _sha256_digest(ref.sha256) or info.size != ref.size:
                    raise ChannelError(f"channel {self.url!r}: artifact {ref.file!r}: the object stored under "
                                       f"{ref.sha256[:12]}… holds other bytes (changed after it was stored); "
                                       "publish again with hotswap publish, which stores it again")
            current, seq = await self._current_entry()
            expected = 1 if current is None else current.revision + 1
            if release.revision != expected:
                raise PublishConflict(
                    f"channel {self.url!r}: revision {release.revision} cannot be published, the current one is "
                    f"{current.revision if current else 'none'}; another publisher went first, publish again")
            kv = await self._bucket(release_bucket(self.name))
            try:
                if seq == 0:
                    await kv.create(RELEASE_KEY, data)
                else:
                    await kv.update(RELEASE_KEY, data, last=seq)
            except nats.js.errors.KeyWrongLastSequenceError as exc:
                raise PublishConflict(
                    f"channel {self.url!r}: revision {release.revision} lost to another publisher that published "
                    "at the same moment; nothing of yours is live, publish again") from exc
            return release
        return self._call(go, f"publishing revision {release.revision}")

    def fetch_artifact(self, ref: ArtifactRef, dest: Path) -> Path:
        dest = Path(dest)

        async def go() -> bytes:
            obs = await self._bucket(ARTIFACT_BUCKET)
            try:
                result = await obs.get(ref.sha256)
            except nats.js.errors.ObjectNotFoundError as exc:
                raise ChannelError(f"channel {self.url!r}: artifact {ref.file!r} ({ref.sha256[:12]}…) is not in "
                                   f"bucket {ARTIFACT_BUCKET}; publish the release again") from exc
            except nats.js.errors.DigestMismatchError as exc:
                raise ChannelError(f"channel {self.url!r}: artifact {ref.file!r} ({ref.sha256[:12]}…) is "
                                   "damaged in the object store (its chunks do not match its digest); "
                                   "publish it again") from exc
            return bytes(result.data or b"")
        data = self._call(go, f"fetching artifact {ref.file!r}", budget=self.timeout + ref.size / 1e6)
        actual = hashlib.sha256(data).hexdigest()
        if actual != ref.sha256 or len(data) != ref.size:
            raise ChannelError(
                f"channel {self.url!r}: artifact {ref.file!r} refused: the object stored under {ref.sha256[:12]}… has "
                f"sha256 {actual[:12]}… and {len(data)} bytes, the release says {ref.size} bytes; someone changed "
                "it after publishing: publish the artifact again and check who can write to the channel")
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(dest, data)
        return dest

    def wait_for_change(self, after: int | None, timeout: float) -> Release | None:
        async def go() -> Release | None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            state = self._conn.watch(release_bucket(self.name), functools.partial(_parse_release, self.url))
            changed = state.changed
            async with changed:
                while True:
                    if state.error is not None:
                        error, state.error = state.error, None
                        raise error
                    if state.synced and (state.latest.revision if state.latest else None) != after:
                        return state.latest
                    left = deadline - loop.time()
                    if left <= 0:
                        return None
                    try:
                        await asyncio.wait_for(changed.wait(), left)
                    except TimeoutError:
                        return None
        # a server restarting is not a change: wait for the reconnect within the timeout, and
        # when it is still under way say "no change" (the caller asks again and is woken the
        # moment it reconnects) rather than "unavailable" (the caller would back off)
        try:
            return self._call(go, "watching for a new release", budget=timeout, wait_connected=timeout)
        except ChannelUnavailable as exc:
            if isinstance(exc.__cause__, _Reconnecting):
                return None
            raise

    # -- instances ----------------------------------------------------------------------------
    def report(self, status: Mapping[str, Any]) -> None:
        instance = str(status["instance"])
        heartbeat = float(status.get("heartbeat") or 10.0)
        ttl = self.status_ttl or max(STATUS_TTL_MIN_S, STATUS_TTL_HEARTBEATS * heartbeat)
        data = json.dumps(dict(status)).encode()

        async def go() -> None:
            bucket = status_bucket(self.name)
            await self._bucket(bucket)
            await self._js.publish(f"$KV.{bucket}.{status_key(instance)}", data, msg_ttl=math.ceil(ttl))
        self._call(go, f"reporting instance {instance!r}")

    def statuses(self) -> list[dict[str, Any]]:
        async def go() -> list[dict[str, Any]]:
            kv = await self._bucket(status_bucket(self.name), create=False)
            if kv is None:
                return []
            found: list[dict[str, Any]] = []
            for entry in await self._conn.scan(kv, ">"):
                try:
                    found.append(json.loads(entry.value))
                except ValueError:
                    log.warning("channel %r: status %s is not JSON; ignored", self.url, entry.key)
            return sorted(found, key=lambda s: str(s.get("instance")))
        return self._call(go, "reading instance statuses")

    def close(self) -> None:
        """Done with this channel (it is unusable afterwards); the last channel of a connection
        closes it and stops its loop."""
        if not self._closed:
            self._closed = True
            self._finalizer()
