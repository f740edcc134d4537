"""Fixtures of the fleet tests: real nats-server processes (JetStream, 127.0.0.1, free ports,
a temporary store), stopped by the fixture that started them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hotswap_runtime.fleet.nats_server import NatsCluster, NatsServer


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

