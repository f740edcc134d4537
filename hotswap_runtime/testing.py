"""A pytest plugin for plugin authors: prove that a plugin reloads cleanly.

Installed with hotswap and registered through the ``pytest11`` entry point, so any test suite
gets, without configuration:

- the fixture ``hotswap_host``: a ``HotswapHost``, a swapper on a temporary plugin folder with
  ``build(plugin_dir, stamps={})`` running the real ``hotswap build`` into it and ``reload()``;
  closed at the end of the test;
- ``assert_reloads_cleanly(plugin_dir, times=20, data=None)``, importable from here: it builds
  the plugin once, then ``times`` times loads it into a fresh swapper, calls into it and closes
  that swapper, and fails, naming what keeps it alive, if a closed version stays in memory.

"Calls into it" means the whole lifecycle the runtime runs (``reloadable``, ``export``,
``import_``, ``on_load(data)``, ``on_init``, ``self_test`` when defined, and ``on_free`` at
close), plus, when given, ``call(manager)``: a function of the test that exercises the plugin
(``call=lambda m: m.find_plugin("jobs").invoke_func("run", 1)``), so that what a real call
leaves behind (caches, registrations, threads) is checked too.

Design note: this module imports pytest (it is a pytest plugin); ``hotswap_runtime`` itself
never imports it. It imports the build (``hotswap_build``) inside the functions that build, not
at the top, for two reasons. The ``pytest11`` entry point imports this module into *every*
pytest session of an environment where hotswap is installed, most of which never build a
plugin: they must not pay for the build's imports at start-up. And the runtime never imports
the build (the build may import the runtime's artifact format, never the other way round, so a
host that only loads artifacts needs nothing of it); this module is the one runtime module that
needs the build, as a test aid, so it takes it only when a test asks for a build.
"""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from .manager import Details, PluginManager
from .swapper import PluginManagerSwapper, VersionStats

__all__ = ["HotswapHost", "assert_reloads_cleanly", "hotswap_host"]

PathLike = str | os.PathLike[str]


def _build(plugin_dir: PathLike, output_dir: PathLike, stamps: Mapping[str, str] | None) -> Path:
    from hotswap_build.build import build  # the runtime never imports the build at import time

    artifact = build(plugin_dir, output_dir, stamps=dict(stamps or {})).artifact
    assert artifact is not None  # a build that is neither static nor package=False writes one
    return artifact


class HotswapHost:
    """A swapper on its own plugin folder, for tests: build plugins into it and reload.

    Attributes:
        plugin_dir: the folder the swapper loads artifacts from.
        swapper: the ``PluginManagerSwapper`` (``free_delay`` 0 unless given).
    """

    def __init__(self, plugin_dir: PathLike, **swapper_kwargs: Any) -> None:
        self.plugin_dir = Path(plugin_dir)
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        swapper_kwargs.setdefault("free_delay", 0)
        self.swapper = PluginManagerSwapper(self.plugin_dir, **swapper_kwargs)

    def build(self, plugin_dir: PathLike, stamps: Mapping[str, str] | None = None) -> Path:
        """Run the real ``hotswap build`` on ``plugin_dir`` into this host; returns the artifact.

        ``stamps`` are the ``-X`` stamps, e.g. ``{"CompileTimeString": "v2"}``.
        """
        return _build(plugin_dir, self.plugin_dir, stamps)

    def reload(self, data: Any = None) -> Details:
        """Load the plugins built so far (the first call loads, later ones reload)."""
        return self.swapper.reload(data)

    def current(self) -> PluginManager | None:
        """The swapper's current manager."""
        return self.swapper.current()

    def stats(self, explain: bool = False) -> list[VersionStats]:
        """The swapper's ``stats(explain)``."""
        return self.swapper.stats(explain=explain)

    def close(self) -> None:
        """Close the swapper (runs every pending ``on_free``)."""
        self.swapper.close()


@pytest.fixture
def hotswap_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HotswapHost]:
    """A ``HotswapHost`` on a temporary plugin folder, closed after the test."""
    host = HotswapHost(tmp_path_factory.mktemp("hotswap-plugins"))
    try:
        yield host
    finally:
        host.close()


def _report(stats: Iterable[VersionStats]) -> str:
    lines: list[str] = []
    for stat in stats:
        lines.append(f"{stat.plugin}#{stat.load} stays alive after its swapper was closed:")
        lines.extend(f"    {chain}" for chain in stat.referrers)
        for what in ("threads", "tasks"):  # reported when the runtime tracks them
            for name in getattr(stat, what, ()) or ():
                lines.append(f"    still running {what[:-1]}: {name}")
    return "\n".join(lines)


def assert_reloads_cleanly(plugin_dir: PathLike | Iterable[PathLike], times: int = 20,
                           data: Any = None, *,
                           call: Callable[[PluginManager], Any] | None = None,
                           stamps: Mapping[str, str] | None = None,
                           extension_factory: Callable[[], Any] | None = None) -> None:
    """Fail unless every version of the plugin is gone once its swapper is closed.

    Builds the plugin (or, given a list, each plugin: one that imports others needs them)
    once, then ``times`` times: loads it into a fresh swapper with ``data``, runs
    ``call(manager)`` when given, closes the swapper, collects garbage and checks that no
    version of that load is alive.

    Args:
        plugin_dir: the plugin's source folder, or a list of them.
        times: how many fresh loads to check (a leak may need several loads to show).
        data: what ``on_load(data)`` gets.
        call: a function of the test exercising the loaded plugins through the manager.
        stamps: ``-X`` stamps for the build.
        extension_factory: the swapper's ``extension_factory``, for plugins that fill a
            host-defined ``vault.extension``.

    Raises:
        pytest.fail.Exception: the test fails, naming each version alive and the referrer
            chains that hold it (and its threads and tasks, where the runtime reports them).
        ValueError: ``times`` is below 1.
    """
    if times < 1:
        raise ValueError(f"times must be at least 1, not {times!r}")
    folders = ([plugin_dir] if isinstance(plugin_dir, (str, os.PathLike))
               else list(plugin_dir))
    with tempfile.TemporaryDirectory(prefix="hotswap-clean-") as out:
        for folder in folders:
            _build(folder, out, stamps)
        for attempt in range(1, times + 1):
            swapper = PluginManagerSwapper(out, free_delay=0,
                                           extension_factory=extension_factory)
            try:
                swapper.load_plugins(data)
                if call is not None:
                    manager = swapper.current()
                    assert manager is not None
                    call(manager)
                    del manager
            finally:
                swapper.close()
            gc.collect()
            if not swapper.stats():
                continue
            alive = swapper.stats(explain=True)
            if alive:
                pytest.fail(f"plugin does not reload cleanly (load {attempt} of {times}):\n"
                            f"{_report(alive)}", pytrace=False)
