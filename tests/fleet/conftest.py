"""Fixtures of the fleet tests: one channel per test, of every kind, and real host processes.

``channel_url`` is parametrised by channel kind (``fleet_support.CHANNEL_KINDS``), so every
test written against it runs once per kind: ``folder`` (a folder under tmp_path, created by the
first publish). ``fleet`` starts host processes (``fleet_host.py``: a swapper, a follower, a
probe of a pair of plugins that only work together) and stops them after the test.
``releases`` builds that pair with given stamps (once per session): stamps starting with
``bad-init`` make alpha's ``on_init`` raise, ``bad-test`` make beta's ``self_test`` raise,
``slow`` make alpha's ``on_load`` take 2.5 s.
``nats_server`` and ``nats_cluster`` are real nats-server processes (JetStream, 127.0.0.1, free
ports, a temporary store), stopped by the fixture that started them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fleet_support import ALPHA, BETA, CHANNEL_KINDS, Fleet

from hotswap_build.build import build
from hotswap_runtime.fleet.nats_server import NatsCluster, NatsServer


@pytest.fixture(params=sorted(CHANNEL_KINDS))
def channel_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty channel of each kind (the test runs once per kind)."""
    return CHANNEL_KINDS[request.param](tmp_path, request)


# -- plugins -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], list[Path]]:
    """``releases(stamp)``: [alpha.hsp, beta.hsp] built with that stamp (cached per session)."""
    root = tmp_path_factory.mktemp("fleet-plugins")
    src = root / "src"
    for name, text in (("alpha", ALPHA), ("beta", BETA)):
        (src / name).mkdir(parents=True)
        (src / name / "__init__.py").write_text(text)
    built: dict[str, list[Path]] = {}
    cache = root / "build-cache"

    def get(stamp: str) -> list[Path]:
        if stamp not in built:
            out = root / "bin" / stamp
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("HOTSWAP_CACHE_DIR", str(cache))
                for name in ("alpha", "beta"):
                    build(src / name, out, stamps={"CompileTimeString": stamp})
            built[stamp] = [out / "alpha.hsp", out / "beta.hsp"]
        return built[stamp]

    return get


@pytest.fixture
def fleet(channel_url: str, tmp_path: Path) -> Iterator[Fleet]:
    """Host processes following ``channel_url``; all stopped after the test."""
    root = tmp_path / "hosts"
    root.mkdir()
    f = Fleet(channel_url, root)
    try:
        yield f
    finally:
        f.stop_all()


@pytest.fixture
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One JetStream server; ``.kill()`` / ``.start()`` restart it on the same port and store."""
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """Three JetStream servers routed into one cluster."""
    cluster = NatsCluster(tmp_path_factory.mktemp("nats-cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()
