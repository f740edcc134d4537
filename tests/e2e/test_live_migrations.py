"""Live-data migrations between real builds of a plugin whose dataclass changed (README "Live data")."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hotswap_build.build import build
from hotswap_runtime import PluginManagerSwapper, live

HOOKS = """\
from hotswap_runtime import live

def on_load(data): pass
def on_init(vault): pass
def on_free(): pass
def export(): return None
def import_(): return None
def reloadable(): return True

def invoke_func(name, *params):
    if name == "wrap":
        return live.wrap(Live_Job(*params))
    if name == "describe":
        return describe(*params)
    raise LookupError(name)
"""

V1 = HOOKS + """
import dataclasses

@dataclasses.dataclass
class Live_Job:
    name: str
    retries: int = 0

def describe(job):
    return f"{job.name} (retries {job.retries})"
"""

# renamed name -> title and retries -> attempts, added owner
V2 = HOOKS + """
import dataclasses
from typing import ClassVar

@dataclasses.dataclass
class Live_Job:
    __live_version__: ClassVar[int] = 1
    title: str
    attempts: int = 0
    owner: str = "nobody"

    @classmethod
    def __live_migrate__(cls, fields, from_version):
        fields["title"] = fields.pop("name")
        fields["attempts"] = fields.pop("retries")
        return fields

def describe(job):
    return f"{job.title} (attempts {job.attempts}, owner {job.owner})"
"""

# one owner became a list of owners
V3 = HOOKS + """
import dataclasses
from typing import ClassVar

@dataclasses.dataclass
class Live_Job:
    __live_version__: ClassVar[int] = 2
    title: str
    attempts: int = 0
    owners: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def __live_migrate__(cls, fields, from_version):
        if from_version < 1:
            fields["title"] = fields.pop("name")
            fields["attempts"] = fields.pop("retries")
            fields["owner"] = "nobody"
        fields["owners"] = [fields.pop("owner")]
        return fields

def describe(job):
    return f"{job.title} (attempts {job.attempts}, owners {job.owners})"
"""


@pytest.fixture
def upgrade(tmp_path: Path) -> Iterator[tuple[PluginManagerSwapper, Callable[[str], None]]]:
    """``(swapper, deploy(source))``: deploy builds plugin ``jobs`` from ``source`` and reloads."""
    folder, out = tmp_path / "src" / "jobs", tmp_path / "out"
    folder.mkdir(parents=True)
    swapper = PluginManagerSwapper(out, free_delay=0)

    def deploy(source: str) -> None:
        (folder / "__init__.py").write_text(textwrap.dedent(source))
        build(folder, out)
        swapper.reload()

    yield swapper, deploy
    swapper.close()


def current_job_class(swapper: PluginManagerSwapper) -> type:
    manager = swapper.current()
    assert manager is not None
    return manager.vault.live_types["Live_Job"]


def only_current_after_free(swapper: PluginManagerSwapper) -> list[tuple[str, tuple[str, ...]]]:
    """The (state, referrers) of each version once the freer thread is done (at most 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        stats = [(s.state, s.referrers) for s in swapper.stats(explain=True)]
        if stats == [("current", ())] or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)


def describe(swapper: PluginManagerSwapper, job: object) -> str:
    return swapper.current().find_plugin("jobs").invoke_func("describe", job)


def test_v1_wrapped_job_unwrapped_by_v2_with_renamed_and_added_fields(upgrade) -> None:
    """A job wrapped by version 1 becomes version 2's Job: renamed fields moved, new one defaulted;
    holding the wrapped job keeps no version alive."""
    swapper, deploy = upgrade
    deploy(V1)
    wrapped = swapper.current().find_plugin("jobs").invoke_func("wrap", "backup", 3)
    deploy(V2)
    job = wrapped.unwrap(current_job_class(swapper))
    assert type(job) is current_job_class(swapper)
    assert describe(swapper, job) == "backup (attempts 3, owner nobody)"
    assert only_current_after_free(swapper) == [("current", ())]


def test_json_persisted_job_across_two_upgrades(upgrade) -> None:
    """v1 -> JSON -> v2 -> JSON (pickled too) -> v3, and v1's JSON straight into v3."""
    swapper, deploy = upgrade
    deploy(V1)
    stored_v1 = swapper.current().find_plugin("jobs").invoke_func("wrap", "report", 1).to_json()

    deploy(V2)
    job2 = live.Data.from_json(stored_v1).unwrap(current_job_class(swapper))
    job2 = dataclasses.replace(job2, owner="ann")
    stored_v2 = pickle.dumps(live.Data.from_json(live.wrap(job2).to_json()))
    assert describe(swapper, job2) == "report (attempts 1, owner ann)"

    deploy(V3)
    job3 = pickle.loads(stored_v2).unwrap(current_job_class(swapper))
    assert describe(swapper, job3) == "report (attempts 1, owners ['ann'])"
    direct = live.Data.from_json(stored_v1).unwrap(current_job_class(swapper))
    assert describe(swapper, direct) == "report (attempts 1, owners ['nobody'])"


ORDERS_V2_CHANGES = {
    # Live_Order's dish is renamed meal; its migration moves the old field over
    "    dish: str\n": "    __live_version__: ClassVar[int] = 1\n    meal: str\n",
    "    notes: list[str] = field(default_factory=list)\n": (
        "    notes: list[str] = field(default_factory=list)\n\n"
        "    @classmethod\n"
        "    def __live_migrate__(cls, fields, from_version):\n"
        "        fields['meal'] = fields.pop('dish')\n"
        "        return fields\n"),
    "{order.dish}": "{order.meal} (renamed)",
    "from dataclasses import dataclass, field\n": (
        "from dataclasses import dataclass, field\nfrom typing import ClassVar\n"),
}


def test_livex_job_persisted_by_v1_is_handled_by_v2_that_renamed_a_field(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The livex kitchen v1 takes an order; the job is persisted as JSON; kitchen v2, whose
    Live_Order renamed dish to meal, cooks it through the demo host's own worker."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.syspath_prepend(str(root))
    from demo.livex.host import Worker
    from demo.livex.shared import JobQueue

    kitchen_v2 = tmp_path / "v2" / "kitchen"
    shutil.copytree(root / "demo/livex/plugin/kitchen", kitchen_v2,
                    ignore=shutil.ignore_patterns("__pycache__"))
    orders = kitchen_v2 / "orders.py"
    text = orders.read_text()
    for old, new in ORDERS_V2_CHANGES.items():
        assert old in text, f"the livex demo's orders.py changed: {old!r} not found"
        text = text.replace(old, new)
    orders.write_text(text)

    out = tmp_path / "bin"
    build(root / "demo/livex/plugin/kitchen", out, stamps={"CompileTimeString": "v1"})
    swapper = PluginManagerSwapper(out, free_delay=0)
    try:
        swapper.load_plugins()
        queue = JobQueue(delay=3600)
        swapper.current().find_plugin("kitchen").invoke_func("take_order", queue, 2)
        [job] = queue.take_all()
        persisted = job.data.to_json()  # what a durable queue would write to disk

        build(kitchen_v2, out, stamps={"CompileTimeString": "v2"})
        assert str(swapper.reload()).endswith("kitchen: ok")
        restored = dataclasses.replace(job, data=live.Data.from_json(persisted))
        assert Worker(swapper, queue).handle(restored)
        assert queue.report() == ("scheduled 1, done 1 (by version: v2=1), handed over 1, "
                                  "pending 0, lost 0")
        cooked = restored.data.unwrap(swapper.current().vault.live_types["Live_Order"])
        assert (cooked.meal, cooked.quantity) == ("curry", 3)
    finally:
        swapper.close()
