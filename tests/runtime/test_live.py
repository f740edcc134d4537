"""Live data (README "Live data", migrations included): wrap, unwrap, JSON, pickle, refusals, migrations."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import enum
import gc
import pickle
import subprocess
import sys
import textwrap
import types
import typing
import uuid
import weakref
import zoneinfo
from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from hotswap_runtime import live

UTC = dt.UTC
MakeModule = Callable[[str, str], types.ModuleType]


@pytest.fixture
def plugin_module() -> Iterator[MakeModule]:
    """Execute a source as a fresh module, like one version of a plugin (distinct classes).

    The module is in ``sys.modules`` (as a loaded plugin's are, so type hints resolve) until
    the test ends.
    """
    made: list[str] = []

    def make(name: str, source: str) -> types.ModuleType:
        module = types.ModuleType(name)
        sys.modules[name] = module
        made.append(name)
        exec(textwrap.dedent(source), module.__dict__)
        return module

    yield make
    for name in made:
        sys.modules.pop(name, None)


V1 = """
    from __future__ import annotations
    import dataclasses, datetime, uuid

    @dataclasses.dataclass
    class Step:
        name: str
        done: bool = False

    @dataclasses.dataclass
    class Job:
        id: uuid.UUID
        title: str
        steps: list[Step]
        priority: int = 0
        legacy: str = "old"
"""

V2 = """
    from __future__ import annotations
    import dataclasses, datetime, uuid
    from typing import Optional

    @dataclasses.dataclass
    class Step:
        name: str
        done: bool = False
        attempts: int = 0

    @dataclasses.dataclass
    class Job:
        id: uuid.UUID
        title: str
        steps: list[Step]
        by_name: dict[str, Step] = dataclasses.field(default_factory=dict)
        parent: Step | None = None
        pair: tuple[Step, int] | None = None
        backup: Optional[Step] = None
        history: tuple[Step, ...] = ()
        priority: int = 0
        owner: str = "nobody"
"""


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Shape:
    points: list[Point]
    center: Point | None = None
    named: dict[str, Point] = dataclasses.field(default_factory=dict)
    color: Color = Color.RED


SAMPLES: list[Any] = [
    None, True, False, 0, -7, 2**100, -(2**80), 1.5, -0.0, 1e308, float("inf"), float("-inf"),
    "", "héllo", b"", b"\x00\xffbytes", [], [1, "a", None], (), (1,), (1, (2, (3,))),
    {}, {"a": 1, "b": [1, 2]}, set(), {1, 2, 3}, frozenset({"x"}), {"t": (1, 2), "s": {3}},
    dt.datetime(2024, 5, 6, 7, 8, 9, 123456), dt.datetime(2024, 5, 6, tzinfo=UTC),
    dt.datetime(2024, 5, 6, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=-5, minutes=-30))),
    dt.date(1999, 12, 31), dt.time(23, 59, 59, 999999), dt.time(1, 2, tzinfo=UTC),
    dt.timedelta(days=-3, seconds=5, microseconds=7), dt.timedelta(0),
    uuid.UUID("12345678-1234-5678-1234-567812345678"), Decimal("1.10"), Decimal("-1e-30"),
    [[{"deep": [({"k": (b"v",)},)]}]],
]


def roundtrips(data: live.Data) -> list[live.Data]:
    """The data itself, after pickle, after JSON, and after pickle of the JSON copy."""
    via_json = live.Data.from_json(data.to_json())
    return [data, pickle.loads(pickle.dumps(data)), via_json,
            pickle.loads(pickle.dumps(via_json, protocol=0))]


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, dt.datetime):
        return a == b and a.tzinfo == b.tzinfo
    return bool(a == b)


@pytest.mark.parametrize("value", SAMPLES, ids=repr)
def test_every_supported_kind_round_trips_exactly(value: Any) -> None:
    """Each kind comes back equal and of the same type, also after pickle and JSON."""
    for data in roundtrips(live.wrap(value)):
        assert same(data.unwrap(), value), (data, value)
        assert data == live.wrap(value)


def test_nan_round_trips() -> None:
    """NaN, which JSON cannot hold, comes back as NaN."""
    for data in roundtrips(live.wrap({"x": float("nan")})):
        x = data.unwrap()["x"]
        assert type(x) is float and x != x


def test_zoneinfo_datetime_keeps_its_zone() -> None:
    """A datetime in a named zone comes back in that zone, even through JSON."""
    zone = zoneinfo.ZoneInfo("Europe/Paris")  # the dev extra brings tzdata where the OS has none
    value = dt.datetime(2024, 7, 1, 12, 30, tzinfo=zone)
    for data in roundtrips(live.wrap(value)):
        back = data.unwrap()
        assert back == value and back.tzinfo == zone and back.utcoffset() == value.utcoffset()


def test_enum_members_are_kept_as_their_value_and_rebuilt_from_hints() -> None:
    """Enums are stored as values; unwrap(cls) turns them back into members by type hint."""
    data = live.wrap(Shape([Point(1, 2)], color=Color.BLUE))
    assert data.unwrap()["color"] == "blue"
    assert live.wrap(Level.LOW).unwrap() == 1 and type(live.wrap(Level.LOW).unwrap()) is int
    for again in roundtrips(data):
        assert again.unwrap(Shape).color is Color.BLUE


def test_subclasses_of_builtins_are_copied_as_their_base_type() -> None:
    """A namedtuple, an OrderedDict or a str subclass come back as the plain builtin."""
    class Name(str):
        pass
    P = namedtuple("P", "a b")
    back = live.wrap({"n": Name("x"), "p": P(1, 2), "o": OrderedDict(a=1)}).unwrap()
    assert same(back, {"n": "x", "p": (1, 2), "o": {"a": 1}})


def test_nested_dataclasses_unwrap_plain_and_typed() -> None:
    """Without cls a dataclass is a dict of its fields; with cls it is rebuilt at every depth."""
    shape = Shape([Point(1, 2), Point(3, 4)], Point(0, 0), {"a": Point(5, 6)})
    for data in roundtrips(live.wrap(shape)):
        assert data.unwrap() == {"points": [{"x": 1, "y": 2}, {"x": 3, "y": 4}],
                                 "center": {"x": 0, "y": 0}, "named": {"a": {"x": 5, "y": 6}},
                                 "color": "red"}
        back = data.unwrap(Shape)
        assert back == shape and type(back.named["a"]) is Point
    assert live.wrap(Shape([])).unwrap(Shape).center is None


def test_unwrap_into_newer_version_with_added_and_removed_fields(plugin_module: MakeModule) -> None:
    """A job of version 1 is rebuilt as version 2's classes: new fields default, gone ones drop."""
    v1, v2 = plugin_module("plugin_world_v1", V1), plugin_module("plugin_world_v2", V2)
    assert v1.Job is not v2.Job
    job_id = uuid.uuid4()
    job = v1.Job(job_id, "build", [v1.Step("fetch", True), v1.Step("run")], priority=3)
    for data in roundtrips(live.wrap(job)):
        new = data.unwrap(v2.Job)
        assert type(new) is v2.Job and all(type(s) is v2.Step for s in new.steps)
        assert new == v2.Job(job_id, "build", [v2.Step("fetch", True), v2.Step("run")],
                             priority=3)
        assert not hasattr(new, "legacy") and new.owner == "nobody"


def test_unwrap_follows_dict_optional_and_tuple_hints(plugin_module: MakeModule) -> None:
    """dict[str, Inner], Inner | None, Optional, and tuple fields are rebuilt from hints."""
    v2 = plugin_module("plugin_world_hints", V2)
    data = live.wrap({"id": uuid.UUID(int=1), "title": "t", "steps": [],
                      "by_name": {"a": {"name": "a"}}, "parent": {"name": "p", "done": True},
                      "pair": ({"name": "q"}, 7), "backup": {"name": "b"},
                      "history": [{"name": "h1"}, {"name": "h2", "done": True}]})
    job = data.unwrap(v2.Job)
    assert job.backup == v2.Step("b") and type(job.backup) is v2.Step
    assert job.history == (v2.Step("h1"), v2.Step("h2", True))
    assert job.by_name == {"a": v2.Step("a")} and job.parent == v2.Step("p", True)
    assert job.pair == (v2.Step("q"), 7) and type(job.pair[0]) is v2.Step


def test_unwrap_into_other_types() -> None:
    """unwrap accepts any type msgspec converts to, such as list[Point]."""
    assert live.wrap([Point(1, 2)]).unwrap(list[Point]) == [Point(1, 2)]
    with pytest.raises(TypeError) as info:
        live.wrap([{"x": 1, "y": 2}, {"x": 1}]).unwrap(list[Point])
    assert str(info.value) == ("cannot unwrap [1]: required field 'y' is missing from the data; "
                               "give Point.y a default or set it in Point.__live_migrate__")
    with pytest.raises(TypeError) as info:
        live.wrap({"a": "x"}).unwrap(dict[str, int])
    assert str(info.value) == ("cannot unwrap [...] into dict[str, int]: "
                               "expected `int`, got `str`")


def test_missing_required_field_is_a_type_error_naming_it() -> None:
    """A required field the data lacks is named with its path."""
    with pytest.raises(TypeError) as info:
        live.wrap({"points": [{"x": 1}]}).unwrap(Shape)
    assert str(info.value) == ("cannot unwrap Shape.points[0]: required field 'y' is missing "
                               "from the data; give Point.y a default or set it in "
                               "Point.__live_migrate__")


def test_value_not_fitting_its_hint_is_a_type_error_naming_the_path() -> None:
    """A value of the wrong type for the new class names where it is."""
    with pytest.raises(TypeError) as info:
        live.wrap({"points": [{"x": 1, "y": "two"}]}).unwrap(Shape)
    assert str(info.value) == ("cannot unwrap Shape.points[0].y into Shape: "
                               "expected `int`, got `str`")


def test_data_is_immutable() -> None:
    """A Data cannot be changed, and changing the wrapped value later does not change it."""
    value = {"a": [1, 2]}
    data = live.wrap(value)
    value["a"].append(3)
    assert data.unwrap() == {"a": [1, 2]}
    data.unwrap()["a"].append(4)
    assert data.unwrap() == {"a": [1, 2]}
    with pytest.raises(AttributeError, match="immutable"):
        data._node = None
    with pytest.raises(AttributeError, match="immutable"):
        del data._node
    with pytest.raises(TypeError):
        live.Data()
    assert copy.copy(data) is data and copy.deepcopy({"d": data})["d"] is data


def test_equality_hash_and_repr() -> None:
    """Equal content compares equal whatever the order; 1, 1.0 and True differ; repr shows it."""
    assert live.wrap({"a": 1, "b": {2, 3}}) == live.wrap({"b": {3, 2}, "a": 1})
    assert hash(live.wrap({"a": 1, "b": {2, 3}})) == hash(live.wrap({"b": {3, 2}, "a": 1}))
    distinct = {live.wrap(1), live.wrap(1.0), live.wrap(True), live.wrap([1]), live.wrap((1,))}
    assert len(distinct) == 5
    assert live.wrap(Point(1, 2)) != live.wrap({"x": 1, "y": 2})
    assert repr(live.wrap(Point(1, (2,)))) == "live.Data(Point(x=1, y=(2,)))"
    assert repr(live.wrap({"k": [b"x", None]})) == "live.Data({'k': [b'x', None]})"
    assert len(repr(live.wrap(list(range(1000))))) < 220


class Gadget:
    pass


def _callback() -> None:
    pass


@dataclasses.dataclass
class Task:
    name: str
    callback: Any = None


@pytest.mark.parametrize(("value", "message"), [
    (Task("t", _callback), "cannot wrap Task.callback: a function is not live data"),
    ({"job": Task("t", print)}, "cannot wrap job.callback: a function is not live data"),
    ({"jobs": [Task("a"), Task("b"), Task("c", lambda: 1)]},
     "cannot wrap jobs[2].callback: a function is not live data"),
    ({"meta": {"k": sys}}, "cannot wrap meta['k']: a module is not live data"),
    ([1, Gadget()], "cannot wrap [1]: a Gadget object is not live data"),
    ({"my key": (1, {Gadget})}, "cannot wrap ['my key'][1]{...}: a class is not live data"),
    (Task("t", Task("u", Task("v", Gadget().__init__))),
     "cannot wrap Task.callback.callback.callback: a function is not live data"),
    (object(), "cannot wrap the value: an object object is not live data"),
    ({"a": [{1: "x"}]}, "cannot wrap a[0]: dict key 1 is an int, not a str; "
                        "live data dicts need str keys"),
    ({"meta": {("t",): 1}}, "cannot wrap meta: dict key ('t',) is a tuple, not a str; "
                            "live data dicts need str keys"),
])
def test_unsupported_values_are_refused_naming_the_path(value: Any, message: str) -> None:
    """Functions, modules, arbitrary objects and non-str dict keys raise TypeError with a path."""
    with pytest.raises(TypeError) as info:
        live.wrap(value)
    text = str(info.value)
    if "dict key" not in message:
        message += ("; use None, bool, int, float, str, bytes, list, tuple, dict with str keys, "
                    "set, datetime, date, time, timedelta, UUID, Decimal, an enum member or a "
                    "dataclass")
    assert text == message


@dataclasses.dataclass
class Node:
    name: str
    children: list[Any] = dataclasses.field(default_factory=list)


def test_cycles_are_refused_naming_the_path() -> None:
    """A value that contains itself is a TypeError naming where the cycle closes."""
    loop: list[Any] = [1]
    loop.append({"again": loop})
    with pytest.raises(TypeError) as info:
        live.wrap({"loop": loop})
    assert str(info.value) == ("cannot wrap loop[1]['again']: it refers back to a value "
                               "containing it (a reference cycle); live data must be a tree")
    root = Node("root")
    root.children.append(Node("leaf", [root]))
    with pytest.raises(TypeError) as info:
        live.wrap(root)
    assert str(info.value).startswith("cannot wrap Node.children[0].children[0]: it refers back")
    shared = [1]
    assert live.wrap([shared, shared]).unwrap() == [[1], [1]]   # shared, not cyclic: fine


def test_too_deep_is_refused() -> None:
    """Nesting past the recursion limit is a TypeError, not a RecursionError."""
    deep: list[Any] = []
    for _ in range(sys.getrecursionlimit() + 10):
        deep = [deep]
    with pytest.raises(TypeError, match="^cannot wrap the value: it nests deeper than"):
        live.wrap(deep)


def test_bad_json_is_a_value_error() -> None:
    """from_json refuses what to_json did not write."""
    with pytest.raises(ValueError, match="^not live data JSON: "):
        live.Data.from_json(b'{"value": 1}')
    with pytest.raises(ValueError, match="^not live data JSON: "):
        live.Data.from_json(b"nope")
    with pytest.raises(ValueError, match="newer than this hotswap reads"):
        live.Data.from_json(b'{"hotswap_live": 99, "value": 1}')
    assert live.Data.from_json(b'{"hotswap_live":1,"value":{"$":"tuple","v":[1]}}').unwrap() == (1,)


def test_importing_live_does_not_import_msgspec() -> None:
    """msgspec (~10 ms to import) loads on first use, so importing the runtime stays cheap."""
    code = ("import sys, hotswap_runtime.live as live; assert 'msgspec' not in sys.modules; "
            "assert live.wrap((1,)).unwrap() == (1,); assert 'msgspec' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_data_never_keeps_a_plugin_class_alive(plugin_module: MakeModule) -> None:
    """After wrap, dropping the module lets its classes be collected while the Data lives on."""
    module = plugin_module("plugin_throwaway", V2)
    job = module.Job(uuid.uuid4(), "t", [module.Step("s")], parent=module.Step("p"))
    data = live.wrap(job)
    refs = [weakref.ref(module.Job), weakref.ref(module.Step)]
    del sys.modules["plugin_throwaway"], module, job
    gc.collect()
    assert [r() for r in refs] == [None, None]
    assert live.Data.from_json(data.to_json()).unwrap()["parent"] == {"name": "p", "done": False,
                                                                     "attempts": 0}


def test_unwrap_caches_nothing_that_keeps_a_class_alive(plugin_module: MakeModule) -> None:
    """unwrap(cls) caches only on cls itself: once typing's own caches are pruned (as the
    runtime does when it frees a version), the classes go."""
    module = plugin_module("plugin_throwaway_unwrap", V2)
    job = module.Job(uuid.uuid4(), "t", [module.Step("s")], backup=module.Step("b"))
    assert live.wrap(job).unwrap(module.Job) == job
    refs = [weakref.ref(module.Job), weakref.ref(module.Step)]
    del sys.modules["plugin_throwaway_unwrap"], module, job
    for clear in typing._cleanups:   # type: ignore[attr-defined]  # Optional[Step] is cached
        clear()
    gc.collect()
    assert [r() for r in refs] == [None, None]


# ------------------------------------------------------------------------------- migrations

MIGRATE_V0 = """
    import dataclasses

    @dataclasses.dataclass
    class Owner:
        login: str

    @dataclasses.dataclass
    class Job:
        name: str
        owner: Owner
        retries: int = 0
"""

MIGRATE_V1 = """
    import dataclasses
    from typing import ClassVar

    @dataclasses.dataclass
    class Owner:
        __live_version__: ClassVar[int] = 1
        user: str                                    # renamed from login

        @classmethod
        def __live_migrate__(cls, fields, from_version):
            fields["user"] = fields.pop("login")
            return fields

    @dataclasses.dataclass
    class Job:
        __live_version__: ClassVar[int] = 1
        title: str                                   # renamed from name
        owner: Owner
        attempts: int = 0                            # renamed from retries
        seen: list = dataclasses.field(default_factory=list)

        @classmethod
        def __live_migrate__(cls, fields, from_version):
            cls.seen_versions.append(from_version)
            fields["title"] = fields.pop("name")
            fields["attempts"] = fields.pop("retries")
            return fields

    Job.seen_versions = []
"""

MIGRATE_V2 = """
    import dataclasses
    from typing import ClassVar

    @dataclasses.dataclass
    class Owner:
        __live_version__: ClassVar[int] = 1
        user: str

        @classmethod
        def __live_migrate__(cls, fields, from_version):
            fields["user"] = fields.pop("login")
            return fields

    @dataclasses.dataclass
    class Job:
        __live_version__: ClassVar[int] = 2
        title: str
        owners: list[Owner]                          # one owner became a list
        attempts: int = 0

        @classmethod
        def __live_migrate__(cls, fields, from_version):
            cls.seen_versions.append(from_version)
            if from_version < 1:
                fields["title"] = fields.pop("name")
                fields["attempts"] = fields.pop("retries")
            fields["owners"] = [fields.pop("owner")]
            return fields

    Job.seen_versions = []
"""


def test_migrations_across_two_upgrades_persisted_as_json(plugin_module: MakeModule) -> None:
    """v0 -> v1 -> v2 through JSON, and v0 straight to v2, each migrating nested dataclasses."""
    v0 = plugin_module("plugin_mig_v0", MIGRATE_V0)
    v1 = plugin_module("plugin_mig_v1", MIGRATE_V1)
    v2 = plugin_module("plugin_mig_v2", MIGRATE_V2)

    stored_v0 = live.wrap(v0.Job("build", v0.Owner("ann"), retries=2)).to_json()
    job1 = live.Data.from_json(stored_v0).unwrap(v1.Job)
    assert job1 == v1.Job("build", v1.Owner("ann"), attempts=2)
    assert v1.Job.seen_versions == [0]

    stored_v1 = pickle.dumps(live.Data.from_json(live.wrap(job1).to_json()))
    job2 = pickle.loads(stored_v1).unwrap(v2.Job)
    assert job2 == v2.Job("build", [v2.Owner("ann")], attempts=2)
    assert type(job2.owners[0]) is v2.Owner

    direct = live.Data.from_json(stored_v0).unwrap(v2.Job)
    assert direct == job2
    assert v2.Job.seen_versions == [1, 0]


def test_same_or_older_class_version_is_not_migrated(plugin_module: MakeModule) -> None:
    """Data of the class's own version (or newer) is matched by name without migrating."""
    v1 = plugin_module("plugin_mig_same", MIGRATE_V1)
    job = v1.Job("t", v1.Owner("u"))
    assert live.wrap(job).unwrap(v1.Job) == job
    assert v1.Job.seen_versions == []
    v0 = plugin_module("plugin_mig_down", MIGRATE_V0)
    with pytest.raises(TypeError, match="required field 'name' is missing"):
        live.wrap(job).unwrap(v0.Job)


BAD_MIGRATE = """
    import dataclasses
    from typing import ClassVar

    @dataclasses.dataclass
    class Owner:
        __live_version__: ClassVar[int] = 1
        login: str

        @classmethod
        def __live_migrate__(cls, fields, from_version):
            raise ValueError("cannot read old owners")

    @dataclasses.dataclass
    class Job:
        __live_version__: ClassVar[int] = 1
        name: str
        owner: Owner

        @classmethod
        def __live_migrate__(cls, fields, from_version):
            return fields if fields["name"] != "list" else list(fields)
"""


def test_migration_errors_name_the_path(plugin_module: MakeModule) -> None:
    """A failing __live_migrate__ keeps its exception, with a note naming what was migrating."""
    v0 = plugin_module("plugin_mig_err0", MIGRATE_V0)
    bad = plugin_module("plugin_mig_err1", BAD_MIGRATE)
    with pytest.raises(ValueError, match="cannot read old owners") as info:
        live.wrap(v0.Job("n", v0.Owner("x"))).unwrap(bad.Job)
    assert info.value.__notes__ == ["while migrating Job.owner from version 0 to Owner version 1"]
    with pytest.raises(TypeError) as type_info:
        live.wrap(v0.Job("list", v0.Owner("x"))).unwrap(bad.Job)
    assert str(type_info.value) == ("cannot unwrap Job: Job.__live_migrate__ returned a list "
                                    "object; return the dict of fields")


def test_bad_live_version_is_refused() -> None:
    """A __live_version__ that is not an int is refused at wrap, naming the class."""
    @dataclasses.dataclass
    class Odd:
        __live_version__: ClassVar[str] = "2"
        x: int = 0
    with pytest.raises(TypeError) as info:
        live.wrap({"odd": Odd()})
    assert str(info.value) == ("cannot wrap odd: test_bad_live_version_is_refused.<locals>.Odd"
                               ".__live_version__ is '2'; set it to an int (ClassVar[int])")
