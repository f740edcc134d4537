"""The version-neutral tree behind ``live.Data``: msgspec structs, one per kind of value.

Imported lazily by ``hotswap_runtime.live`` (importing msgspec costs ~10 ms), so that
importing the runtime stays cheap for hosts that never use live data.

Every node is a frozen, tagged ``msgspec.Struct`` whose fields hold only builtins and stdlib
values, so a tree never refers to a plugin's class or module, and ``msgspec.json`` encodes and
decodes a whole tree (typed, validated) in C. ``None``, ``bool``, ``int``, finite ``float`` and
``str`` are stored as themselves; everything JSON would blur (tuple vs list, set, bytes,
datetime...) gets a tag, so it comes back as the same kind after JSON.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import uuid

import msgspec

__all__ = ["Node", "Envelope", "FORMAT", "LIST", "TUPLE", "SET", "FROZENSET", "DICT", "BYTES",
           "DATETIME", "DATE", "TIME", "TIMEDELTA", "UUID", "DECIMAL", "FLOAT", "RECORD"]

#: Version of the JSON layout, stored in every document.
FORMAT = 1


class _Node(msgspec.Struct, frozen=True, gc=False, tag_field="$"):
    pass


class LIST(_Node, frozen=True, tag="list"):
    v: tuple[Node, ...]


class TUPLE(_Node, frozen=True, tag="tuple"):
    v: tuple[Node, ...]


class SET(_Node, frozen=True, tag="set"):
    v: tuple[Node, ...]


class FROZENSET(_Node, frozen=True, tag="frozenset"):
    v: tuple[Node, ...]


class DICT(_Node, frozen=True, tag="dict"):
    v: dict[str, Node]


class BYTES(_Node, frozen=True, tag="bytes"):
    v: bytes


class DATETIME(_Node, frozen=True, tag="datetime", omit_defaults=True):
    v: _dt.datetime
    zone: str | None = None   # a zoneinfo key, when the value had a ZoneInfo


class DATE(_Node, frozen=True, tag="date"):
    v: _dt.date


class TIME(_Node, frozen=True, tag="time"):
    v: _dt.time


class TIMEDELTA(_Node, frozen=True, tag="timedelta"):
    v: _dt.timedelta


class UUID(_Node, frozen=True, tag="uuid"):
    v: uuid.UUID


class DECIMAL(_Node, frozen=True, tag="decimal"):
    v: decimal.Decimal


class FLOAT(_Node, frozen=True, tag="float"):
    """A float JSON cannot hold: ``nan``, ``inf`` or ``-inf`` (as its repr)."""

    v: str


class RECORD(_Node, frozen=True, tag="dataclass", omit_defaults=True):
    """A dataclass instance: its class's qualified name (text only), version and fields."""

    type: str
    fields: dict[str, Node]
    version: int = 0


Node = (None | bool | int | float | str | LIST | TUPLE | SET | FROZENSET | DICT | BYTES | DATETIME
        | DATE | TIME | TIMEDELTA | UUID | DECIMAL | FLOAT | RECORD)


class Envelope(msgspec.Struct, frozen=True, gc=False):
    """The JSON document: ``{"hotswap_live": 1, "value": <node>}``."""

    hotswap_live: int
    value: Node


json_encoder = msgspec.json.Encoder()
json_decoder = msgspec.json.Decoder(Envelope)
