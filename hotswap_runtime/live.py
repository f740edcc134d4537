"""Live data: a version-neutral copy of a value, handed from one plugin version to the next.

``wrap(value)`` copies a value into an immutable ``Data``; ``data.unwrap(cls)`` rebuilds it,
possibly as a class of a newer version of the plugin. In between, the ``Data`` may be pickled or
persisted with ``to_json()`` / ``Data.from_json()``, and holding it never keeps an old plugin
version alive.

Design. A ``Data`` holds a tree of frozen msgspec structs (``_live_nodes``) in which every
value that JSON would blur carries a tag (a tuple stays a tuple, a set a set, bytes stay bytes,
a datetime a datetime) and a dataclass instance keeps only its class's qualified name, its
``__live_version__`` and its fields. msgspec does the heavy lifting: ``msgspec.json`` encodes
and decodes (and validates) a whole tree in C, and ``msgspec.convert`` rebuilds the caller's
dataclasses from their type hints. The tree is walked in Python only where we must decide
something: on ``wrap`` (to refuse what is not data, naming its path) and on ``unwrap`` (to run
``__live_migrate__`` and name missing required fields). msgspec is imported on first use, so
``import hotswap_runtime.live`` stays cheap.

Migrations. A dataclass may declare ``__live_version__: ClassVar[int]`` (default 0) and a
classmethod ``__live_migrate__(cls, fields: dict, from_version: int) -> dict``. ``wrap`` records
the version; ``unwrap(cls)`` with a newer ``cls`` first passes the recorded fields (nested
dataclasses appear as dicts) through ``cls.__live_migrate__``, at any depth, then matches fields
by name.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import math
import sys
import types
import typing
from collections.abc import Mapping, MutableMapping, MutableSequence, MutableSet, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, final

__all__ = ["Data", "wrap"]

_nodes: Any = None   # the lazily imported ``_live_nodes`` module


def _n() -> Any:
    global _nodes
    if _nodes is None:
        from . import _live_nodes
        _nodes = _live_nodes
    return _nodes


_SUPPORTED = ("None, bool, int, float, str, bytes, list, tuple, dict with str keys, set, "
              "datetime, date, time, timedelta, UUID, Decimal, an enum member or a dataclass")


# --------------------------------------------------------------------------------------------
# paths inside a value, for error messages: ``jobs[2].callback``, ``meta['k']``, ``Job.inner``

class _Refused(Exception):
    """Internal: raised where a value cannot be wrapped; containers add path steps on the way up."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.steps: list[tuple[str, Any]] = []   # innermost first


def _format_path(root: str, steps: list[tuple[str, Any]]) -> str:
    """Render steps (outermost first) as a Python-like access path.

    The first step of a path starting at a dict is written bare when the key is an identifier,
    like a keyword argument (``meta['k']``); a dataclass at the root is named by its class.
    """
    out = root
    for kind, key in steps:
        if kind == "attr":
            out = f"{out}.{key}" if out else key
        elif kind == "index":
            out = f"{out}[{key}]"
        elif kind == "member":
            out = f"{out}{{...}}"
        elif not out and isinstance(key, str) and key.isidentifier():
            out = key
        else:
            out = f"{out}[{key!r}]"
    return out


_FUNCTIONS = (types.FunctionType, types.BuiltinFunctionType, types.MethodType,
              types.MethodWrapperType, types.WrapperDescriptorType, types.MethodDescriptorType,
              types.ClassMethodDescriptorType)


def _kind(value: object) -> str:
    if isinstance(value, _FUNCTIONS):
        return "a function"
    if isinstance(value, types.ModuleType):
        return "a module"
    if isinstance(value, type):
        return "a class"
    return f"{_a(type(value).__qualname__)} object"


def _a(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


# --------------------------------------------------------------------------------------------
# wrap: value -> node tree

def _wrap(value: Any) -> Any:
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is float:
        return value if math.isfinite(value) else _n().FLOAT(repr(value))
    handler = _HANDLERS.get(t)
    if handler is not None:
        return handler(value)
    if "__hotswap_live_fields__" in t.__dict__:   # a dataclass seen before
        return _wrap_record(value)
    return _wrap_other(value)


def _wrap_items(values: Any) -> tuple[Any, ...]:
    out = []
    for i, item in enumerate(values):
        try:
            out.append(_wrap(item))
        except _Refused as exc:
            exc.steps.append(("index", i))
            raise
    return tuple(out)


def _wrap_members(values: Any) -> tuple[Any, ...]:
    out = []
    for item in values:
        try:
            out.append(_wrap(item))
        except _Refused as exc:
            exc.steps.append(("member", None))
            raise
    return tuple(out)


def _wrap_dict(value: Any) -> Any:
    out = {}
    for key, item in value.items():
        if type(key) is not str:
            if isinstance(key, enum.Enum):
                key = key.value
            if not isinstance(key, str):
                raise _Refused(f"dict key {key!r} is {_a(type(key).__qualname__)}, not a str; "
                               "live data dicts need str keys")
            key = str.__str__(key)
        try:
            out[key] = _wrap(item)
        except _Refused as exc:
            exc.steps.append(("key", key))
            raise
    return _n().DICT(out)


def _wrap_datetime(value: _dt.datetime) -> Any:
    tz = value.tzinfo
    zone = None
    if type(value) is not _dt.datetime:
        value = _dt.datetime(value.year, value.month, value.day, value.hour, value.minute,
                             value.second, value.microsecond, tz, fold=value.fold)
    if tz is not None and type(tz) is not _dt.timezone:
        # keep no foreign tzinfo object: a fixed offset, plus the zone's key if it has one
        key = getattr(tz, "key", None)
        zone = key if isinstance(key, str) else None
        offset = value.utcoffset()
        value = value.replace(tzinfo=None if offset is None else _dt.timezone(offset))
    return _n().DATETIME(value, zone)


def _wrap_time(value: _dt.time) -> Any:
    tz = value.tzinfo
    if type(value) is not _dt.time or (tz is not None and type(tz) is not _dt.timezone):
        offset = value.utcoffset()
        value = _dt.time(value.hour, value.minute, value.second, value.microsecond,
                         None if offset is None else _dt.timezone(offset), fold=value.fold)
    return _n().TIME(value)


def _wrap_record(value: Any) -> Any:
    cls = type(value)
    version = getattr(cls, "__live_version__", 0)
    if type(version) is not int:
        raise _Refused(f"{cls.__qualname__}.__live_version__ is {version!r}; "
                       "set it to an int (ClassVar[int])")
    names = cls.__dict__.get("__hotswap_live_fields__")
    if names is None:
        names = _field_names(cls)
    out = {}
    for name in names:
        try:
            out[name] = _wrap(getattr(value, name))
        except _Refused as exc:
            exc.steps.append(("attr", name))
            raise
    return _n().RECORD(cls.__qualname__, out, version)


def _field_names(cls: type) -> tuple[str, ...]:
    """The dataclass's field names, cached on the class itself (texts only)."""
    names = tuple(f.name for f in dataclasses.fields(cls))
    try:
        type.__setattr__(cls, "__hotswap_live_fields__", names)
    except (TypeError, AttributeError):
        pass
    return names


def _wrap_other(value: Any) -> Any:
    """Subclasses and the kinds that need an isinstance check; refuse everything else."""
    if isinstance(value, enum.Enum):
        return _wrap(value.value)
    cls = type(value)
    if hasattr(cls, "__dataclass_fields__") and not isinstance(value, type):
        return _wrap_record(value)
    # a subclass of a supported builtin (a str subclass, a namedtuple, an OrderedDict...) is
    # copied as its base type: the copy must not refer to the (plugin's) subclass
    for base, handler in _BASES:
        if isinstance(value, base):
            return handler(value)
    raise _Refused(f"{_kind(value)} is not live data; use {_SUPPORTED}")


def _handlers() -> dict[type, Any]:
    import decimal
    import uuid
    n = _n()
    return {
        list: lambda v: n.LIST(_wrap_items(v)),
        tuple: lambda v: n.TUPLE(_wrap_items(v)),
        dict: _wrap_dict,
        set: lambda v: n.SET(_wrap_members(v)),
        frozenset: lambda v: n.FROZENSET(_wrap_members(v)),
        bytes: n.BYTES,
        bytearray: lambda v: n.BYTES(bytes(v)),
        _dt.datetime: _wrap_datetime,
        _dt.date: n.DATE,
        _dt.time: _wrap_time,
        _dt.timedelta: n.TIMEDELTA,
        uuid.UUID: n.UUID,
        decimal.Decimal: n.DECIMAL,
    }


def _setup() -> None:
    """Fill the dispatch tables on first use (they need msgspec, which imports these anyway)."""
    import decimal
    import uuid
    # _BASES first: a thread that sees _HANDLERS filled must see _BASES filled too
    _BASES[:] = [
        (bool, bool), (int, lambda v: int.__int__(v)), (float, lambda v: _wrap(float(v))),
        (str, lambda v: str.__str__(v)), (bytes, lambda v: _n().BYTES(bytes(v))),
        (tuple, lambda v: _n().TUPLE(_wrap_items(v))),
        (list, lambda v: _n().LIST(_wrap_items(v))),
        (dict, _wrap_dict),
        (frozenset, lambda v: _n().FROZENSET(_wrap_members(v))),
        (set, lambda v: _n().SET(_wrap_members(v))),
        (_dt.datetime, _wrap_datetime),
        (_dt.date, lambda v: _n().DATE(_dt.date(v.year, v.month, v.day))),
        (_dt.time, _wrap_time),
        (_dt.timedelta, lambda v: _n().TIMEDELTA(
            _dt.timedelta(v.days, v.seconds, v.microseconds))),
        (uuid.UUID, lambda v: _n().UUID(uuid.UUID(int=v.int))),
        (decimal.Decimal, lambda v: _n().DECIMAL(decimal.Decimal(v))),
    ]
    _HANDLERS.update(_handlers())


_HANDLERS: dict[type, Any] = {}   # exact type -> handler
_BASES: list[tuple[type, Any]] = []


# --------------------------------------------------------------------------------------------
# unwrap: node tree -> plain values (or marked ones, for the unwrap(cls) pass)

class _Fields(dict[str, Any]):
    """Internal: the fields of a recorded dataclass, marked with its name and version."""

    __slots__ = ("live_type", "live_version")
    live_type: str
    live_version: int


def _plain(node: Any, mark: bool) -> Any:
    t = type(node)
    if t is str or t is int or t is bool or t is float or node is None:
        return node
    n = _n()
    if t is n.RECORD:
        fields = {k: _plain(v, mark) for k, v in node.fields.items()}
        if not mark:
            return fields
        marked = _Fields(fields)
        marked.live_type = node.type
        marked.live_version = node.version
        return marked
    if t is n.DICT:
        return {k: _plain(v, mark) for k, v in node.v.items()}
    if t is n.LIST:
        return [_plain(v, mark) for v in node.v]
    if t is n.TUPLE:
        return tuple([_plain(v, mark) for v in node.v])
    if t is n.SET:
        return set(_set_members([_plain(v, mark) for v in node.v]))
    if t is n.FROZENSET:
        return frozenset(_set_members([_plain(v, mark) for v in node.v]))
    if t is n.FLOAT:
        return float(node.v)
    if t is n.DATETIME and node.zone is not None:
        return _in_zone(node.v, node.zone)
    return node.v


#: a set holding more than this many distinct values of one hash is refused (hash flooding)
MAX_SAME_HASH = 64


def _set_members(items: list[Any]) -> list[Any]:
    """``items``, checked to make a set in linear time.

    A set of values whose hashes all collide (UUIDs or ints that differ by multiples of
    2**61 - 1, crafted in untrusted JSON) costs quadratic time to build. Grouping by hash is
    linear; a group of more than ``MAX_SAME_HASH`` values that are not all equal is refused.

    Raises:
        ValueError: such a group was found.
    """
    if len(items) <= MAX_SAME_HASH:
        return items
    groups: dict[int, list[Any]] = {}
    for item in items:
        groups.setdefault(hash(item), []).append(item)
    for group in groups.values():
        if len(group) > MAX_SAME_HASH and any(item != group[0] for item in group):
            raise ValueError(f"a set holds more than {MAX_SAME_HASH} different values with one "
                             f"hash ({group[0]!r}...): refused as hash flooding, which would "
                             "take quadratic time; do not unwrap live data from untrusted "
                             "sources without checking it")
    return items


def _in_zone(value: _dt.datetime, zone: str) -> _dt.datetime:
    import zoneinfo
    try:
        return value.astimezone(zoneinfo.ZoneInfo(zone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return value   # the zone is unknown here: keep the fixed offset it had


_CONTAINERS = frozenset({_Fields, dict, list, tuple, set, frozenset})


def _strip(value: Any) -> Any:
    """Turn marked field dicts back into plain dicts, at any depth."""
    t = type(value)
    if t is _Fields or t is dict:
        return {k: _strip(v) for k, v in value.items()}
    if t is list or t is tuple:
        return t([_strip(v) for v in value])
    if t is set or t is frozenset:
        return t([_strip(v) for v in value])
    return value


def _plan(cls: type) -> list[tuple[str, Any, bool, bool]]:
    """Per field of dataclass ``cls``: name, resolved hint, whether the hint involves a
    dataclass (so the value needs ``_fit``), and whether the field is required.

    Cached on the class itself, never in a global table (which would keep an old plugin
    version alive); the cache dies with the class.
    """
    cached = cls.__dict__.get("__hotswap_live_plan__")
    if cached is not None:
        return cached  # type: ignore[no-any-return]  # what this function stored there
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:
        raise TypeError(f"cannot unwrap into {cls.__qualname__}: its type hints do not resolve "
                        f"({exc}); make the names they use importable from "
                        f"{cls.__module__}") from exc
    plan = []
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name, Any)
        required = (f.init and f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING)
        plan.append((f.name, hint, _involves_dataclass(hint), required))
    try:
        type.__setattr__(cls, "__hotswap_live_plan__", plan)
    except (TypeError, AttributeError):
        pass
    return plan


def _involves_dataclass(hint: Any) -> bool:
    if isinstance(hint, type):
        return dataclasses.is_dataclass(hint)
    return any(_involves_dataclass(a) for a in typing.get_args(hint))


_UNION_ORIGINS = (typing.Union, types.UnionType)
_SEQ_ORIGINS = (list, set, frozenset, Sequence, MutableSequence, AbstractSet, MutableSet)
_MAP_ORIGINS = (dict, Mapping, MutableMapping)


def _fit(value: Any, hint: Any, path: str) -> Any:
    """Shape ``value`` (plain, with marked records) for ``msgspec.convert(..., hint)``.

    Runs migrations and checks required fields where ``hint`` names a dataclass; strips the
    marks everywhere else. Type mismatches are left for msgspec to report.
    """
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _fit_dataclass(value, hint, path)
    origin = typing.get_origin(hint)
    if origin is None:
        return _strip(value)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return _fit(value, args[0], path)
    if origin in _UNION_ORIGINS:
        if value is None:
            return None
        classes = [a for a in args if isinstance(a, type) and dataclasses.is_dataclass(a)]
        if classes and isinstance(value, dict):
            recorded = getattr(value, "live_type", None)
            chosen = next((c for c in classes if c.__qualname__ == recorded), classes[0])
            return _fit_dataclass(value, chosen, path)
        others = [a for a in args if a is not type(None)]
        return _fit(value, others[0], path) if len(others) == 1 else _strip(value)
    if origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        if len(args) == len(value):
            return tuple([_fit(v, h, f"{path}[{i}]") for i, (v, h) in enumerate(zip(value, args, strict=True))])
        return _strip(value)
    if origin in _SEQ_ORIGINS and isinstance(value, (list, tuple, set, frozenset)):
        item = args[0] if args else Any
        if isinstance(value, (set, frozenset)):
            return type(value)([_fit(v, item, f"{path}{{...}}") for v in value])
        return type(value)([_fit(v, item, f"{path}[{i}]") for i, v in enumerate(value)])
    if origin in _MAP_ORIGINS and isinstance(value, dict):
        item = args[1] if len(args) == 2 else Any
        return {k: _fit(v, item, f"{path}[{k!r}]") for k, v in value.items()}
    return _strip(value)


def _fit_dataclass(value: Any, cls: type, path: str) -> Any:
    if not isinstance(value, dict):
        return _strip(value)   # msgspec names the mismatch
    fields = dict(value)
    if isinstance(value, _Fields):
        target = getattr(cls, "__live_version__", 0)
        if type(target) is not int:
            raise TypeError(f"cannot unwrap {path}: {cls.__qualname__}.__live_version__ is "
                            f"{target!r}; set it to an int (ClassVar[int])")
        migrate = getattr(cls, "__live_migrate__", None)
        if value.live_version < target and migrate is not None:
            try:
                fields = migrate(fields, value.live_version)
            except Exception as exc:
                exc.add_note(f"while migrating {path} from version {value.live_version} "
                             f"to {cls.__qualname__} version {target}")
                raise
            if not isinstance(fields, dict):
                raise TypeError(f"cannot unwrap {path}: {cls.__qualname__}.__live_migrate__ "
                                f"returned {_kind(fields)}; return the dict of fields")
    out = {}
    for name, hint, nested, required in _plan(cls):
        if name in fields:
            value = fields[name]
            out[name] = (_fit(value, hint, f"{path}.{name}") if nested
                         else _strip(value) if type(value) in _CONTAINERS else value)
        elif required:
            raise TypeError(f"cannot unwrap {path}: required field {name!r} is missing from "
                            f"the data; give {cls.__qualname__}.{name} a default or set it "
                            f"in {cls.__qualname__}.__live_migrate__")
    return out


# --------------------------------------------------------------------------------------------
# repr and equality

def _render(node: Any) -> str:
    t = type(node)
    if t is str or t is int or t is bool or t is float or node is None:
        return repr(node)
    n = _n()
    if t is n.RECORD:
        inner = ", ".join(f"{k}={_render(v)}" for k, v in node.fields.items())
        return f"{node.type}({inner})"
    if t is n.DICT:
        return "{" + ", ".join(f"{k!r}: {_render(v)}" for k, v in node.v.items()) + "}"
    if t is n.LIST:
        return "[" + ", ".join(_render(v) for v in node.v) + "]"
    if t is n.TUPLE:
        items = [_render(v) for v in node.v]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if t is n.SET or t is n.FROZENSET:
        if not node.v:
            return "set()" if t is n.SET else "frozenset()"
        body = "{" + ", ".join(_render(v) for v in node.v) + "}"
        return body if t is n.SET else f"frozenset({body})"
    return repr(_plain(node, False))


#: ints outside this range can share a hash with many others (hash(i) is i mod 2**61 - 1)
_SMALL_INT = (1 << 61) - 2


def _canon(node: Any) -> Any:
    """A hashable form in which equal data compare equal and ``1``, ``1.0``, ``True`` differ.

    Leaves whose own hash an attacker can make collide (UUIDs and big ints: both hash as ints
    modulo 2**61 - 1; Decimals) are keyed by bytes or text instead, whose hash is randomised,
    so comparing and hashing ``Data`` stays linear on hostile input.
    """
    t = type(node)
    if t is str or node is None:
        return node
    if t is int and not -_SMALL_INT <= node <= _SMALL_INT:
        return ("bigint", node.to_bytes((node.bit_length() + 8) // 8, "little", signed=True))
    if t is int or t is bool or t is float:
        return (t.__name__, node)
    n = _n()
    if t is n.RECORD:
        return ("R", node.type, node.version,
                frozenset((k, _canon(v)) for k, v in node.fields.items()))
    if t is n.DICT:
        return ("D", frozenset((k, _canon(v)) for k, v in node.v.items()))
    if t is n.LIST or t is n.TUPLE:
        return (t.__name__, tuple(_canon(v) for v in node.v))
    if t is n.SET or t is n.FROZENSET:
        return (t.__name__, frozenset(_canon(v) for v in node.v))
    if t is n.UUID:
        return ("uuid", node.v.bytes)
    if t is n.DECIMAL:
        return ("decimal", str(node.v))
    return node   # other leaves are frozen structs of stdlib values, hashed by their bytes


# --------------------------------------------------------------------------------------------
# public API

@final
class Data:
    """An immutable, version-neutral copy of a value, made by ``wrap``.

    Holds only builtins and stdlib values (a dataclass is kept as its qualified name, version
    and fields), never a plugin's class or module. Compares equal to a ``Data`` of equal
    content (``wrap(1) != wrap(1.0)``), hashes, pickles, and round-trips through
    ``to_json()`` / ``Data.from_json()``.
    """

    __slots__ = ("_node", "_key")
    _node: Any
    _key: Any

    def __init__(self) -> None:
        raise TypeError("live.Data is made by live.wrap(value) or live.Data.from_json(raw)")

    @classmethod
    def _of(cls, node: Any) -> Data:
        data = object.__new__(cls)
        object.__setattr__(data, "_node", node)
        object.__setattr__(data, "_key", None)
        return data

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("live.Data is immutable; wrap a new value instead")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("live.Data is immutable; wrap a new value instead")

    def unwrap(self, cls: Any = None) -> Any:
        """Rebuild the value.

        Args:
            cls: ``None`` for plain values (a dataclass becomes a dict of its fields), or the
                type to rebuild: a dataclass, possibly of a newer plugin version, or any type
                msgspec converts to (``list[Job]``, ``dict[str, Job]``...). Fields are matched
                by name: a field the data lacks takes its default, one the class lacks is
                ignored, nested values follow ``cls``'s type hints. Recorded dataclasses older
                than their target's ``__live_version__`` first go through its
                ``__live_migrate__(fields, from_version)``. Instances are built the way
                ``msgspec.convert`` builds them: ``__post_init__`` runs, ``__init__`` does not.

        Raises:
            TypeError: a required field is missing, or a value does not fit its type hint;
                the message names the path (``Job.inner.count``).
        """
        if cls is None:
            return _plain(self._node, False)
        root = cls.__qualname__ if isinstance(cls, type) else ""
        fitted = _fit(_plain(self._node, True), cls, root)
        import msgspec
        try:
            return msgspec.convert(fitted, cls)
        except msgspec.ValidationError as exc:
            problem, _, where = str(exc).partition(" - at `$")
            where = where.rstrip("`")
            if where.startswith(".") and not root:
                where = where[1:]
            target = root + where
            name = cls.__qualname__ if isinstance(cls, type) else repr(cls)
            raise TypeError(f"cannot unwrap {target or 'the value'} into {name}: "
                            f"{problem[:1].lower()}{problem[1:]}") from exc

    def to_json(self) -> bytes:
        """The data as JSON bytes, for a job queue or a file; ``Data.from_json`` reads it back.

        Every kind keeps its type through JSON (a tuple stays a tuple, bytes stay bytes, a
        datetime a datetime), and dataclasses keep their name and ``__live_version__``.
        """
        n = _n()
        raw: bytes = n.json_encoder.encode(n.Envelope(n.FORMAT, self._node))
        return raw

    @classmethod
    def from_json(cls, raw: bytes | bytearray | memoryview | str) -> Data:
        """Read what ``to_json`` wrote.

        Untrusted bytes are safe here (JSON, decoded into fixed types): never ``pickle.loads``
        them instead.

        Raises:
            ValueError: ``raw`` is not live data JSON, is nested too deeply, or was written by
                a newer hotswap.
        """
        n = _n()
        import msgspec
        try:
            envelope = n.json_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise ValueError(f"not live data JSON: {exc}; pass bytes made by "
                             "Data.to_json()") from exc
        except RecursionError:  # msgspec's own depth guard (the interpreter's recursion limit)
            raise ValueError("not live data JSON: nested too deeply to read; pass bytes made "
                             "by Data.to_json()") from None
        if envelope.hotswap_live > n.FORMAT:
            raise ValueError(f"live data JSON format {envelope.hotswap_live} is newer than "
                             f"this hotswap reads ({n.FORMAT}); upgrade hotswap")
        return cls._of(envelope.value)

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled as its JSON: version-neutral, and independent of our internal classes
        return (_from_json, (self.to_json(),))

    def __copy__(self) -> Data:
        return self   # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> Data:
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Data):
            return NotImplemented
        return bool(self._canonical() == other._canonical())

    def __hash__(self) -> int:
        return hash(self._canonical())

    def _canonical(self) -> Any:
        if self._key is None:
            object.__setattr__(self, "_key", _canon(self._node))
        return self._key

    def __repr__(self) -> str:
        text = _render(self._node)
        if len(text) > 200:
            text = text[:197] + "..."
        return f"live.Data({text})"


def _from_json(raw: bytes) -> Data:
    return Data.from_json(raw)



def wrap(value: Any) -> Data:
    """Copy ``value`` into an immutable, version-neutral ``Data``.

    Supported: ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, lists, tuples, dicts
    with str keys, sets, ``datetime``, ``date``, ``time``, ``timedelta``, ``UUID``, ``Decimal``,
    enum members (kept as their value) and dataclass instances, nested freely. Subclasses of
    these are copied as their base type. A dataclass's ``__live_version__`` is recorded.

    Raises:
        TypeError: for anything else (a function, a module, an arbitrary object, a dict key
            that is not a str, a value that contains itself), naming the path inside the value:
            ``cannot wrap jobs[2].callback: a function is not live data; use ...``.
    """
    if not _HANDLERS:
        _setup()
    try:
        return Data._of(_wrap(value))
    except _Refused as exc:
        raise TypeError(f"cannot wrap {_root_path(value, exc.steps[::-1])}: "
                        f"{exc.problem}") from None
    except RecursionError:
        pass
    # looked for only now, so that the common case pays nothing for cycle detection
    cycle = _find_cycle(value)
    if cycle is not None:
        raise TypeError(f"cannot wrap {_root_path(value, cycle)}: it refers back to a value "
                        "containing it (a reference cycle); live data must be a tree") from None
    raise TypeError(f"cannot wrap the value: it nests deeper than the recursion limit "
                    f"({sys.getrecursionlimit()}); flatten it") from None


def _root_path(value: Any, steps: list[tuple[str, Any]]) -> str:
    root = ""
    if hasattr(type(value), "__dataclass_fields__") and not isinstance(value, type):
        root = type(value).__qualname__
    return _format_path(root, steps) or "the value"


def _children(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, dict):
        return [("key", k, v) for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [("index", i, v) for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return [("member", None, v) for v in value]
    if hasattr(type(value), "__dataclass_fields__") and not isinstance(value, type):
        return [("attr", f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    return []


def _find_cycle(value: Any) -> list[tuple[str, Any]] | None:
    """The path of a value that refers back to one containing it, found without recursion."""
    on_path = {id(value)}
    stack = [(value, iter(_children(value)))]
    steps: list[tuple[str, Any]] = []
    while stack:
        parent, children = stack[-1]
        for kind, key, child in children:
            if id(child) in on_path:
                return [*steps, (kind, key)]
            grandchildren = _children(child)
            if grandchildren:
                on_path.add(id(child))
                steps.append((kind, key))
                stack.append((child, iter(grandchildren)))
                break
        else:
            stack.pop()
            on_path.discard(id(parent))
            if steps:
                steps.pop()
    return None
