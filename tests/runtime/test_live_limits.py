"""Live data from untrusted bytes (issue 15): deep nesting is a ValueError, hash flooding is not
quadratic, and the README says pickle must never see untrusted bytes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from hotswap_runtime import live

M = (1 << 61) - 1  # hash(i) == i % M for ints, and a UUID hashes as its int


def _envelope(value: bytes) -> bytes:
    return b'{"hotswap_live":1,"value":' + value + b"}"


def test_json_nested_ten_thousand_deep_is_a_value_error() -> None:
    for node in (b'{"$":"list","v":[', b'{"$":"dict","v":{"k":'):
        closing = b"]}" if node.endswith(b"[") else b"}}"
        raw = _envelope(node * 10_000 + b"1" + closing * 10_000)
        with pytest.raises(ValueError, match="nested too deeply"):
            live.Data.from_json(raw)


def _colliding_uuid_set(count: int) -> bytes:
    members = b",".join(b'{"$":"uuid","v":"' + str(uuid.UUID(int=i * M + 5)).encode() + b'"}'
                        for i in range(1, count + 1))
    return _envelope(b'{"$":"set","v":[' + members + b"]}")


def test_colliding_uuid_set_is_not_quadratic() -> None:
    """8,000 UUIDs sharing one hash: comparing and hashing the Data key them by their bytes
    (spread hashes, so linear), and unwrapping them into a set is refused as hash flooding
    instead of taking quadratic time (seconds before)."""
    raw = _colliding_uuid_set(8000)
    data = live.Data.from_json(raw)
    again = live.Data.from_json(raw)
    assert hash(data) == hash(again) and data == again
    kind, members = data._canonical()
    assert kind == "SET" and len({hash(member) for member in members}) == 8000
    with pytest.raises(ValueError, match="hash flooding"):
        data.unwrap()


def test_sets_with_repeated_or_few_colliding_values_still_unwrap() -> None:
    repeated = _envelope(b'{"$":"set","v":[' + b",".join([b'{"$":"uuid","v":"'
                                                          + str(uuid.UUID(int=7)).encode() + b'"}'] * 500) + b"]}")
    assert live.Data.from_json(repeated).unwrap() == {uuid.UUID(int=7)}
    few = {uuid.UUID(int=i * M + 5) for i in range(1, 40)}
    assert live.wrap(few).unwrap() == few
    big = {i * M for i in range(1, 40)}
    assert live.Data.from_json(live.wrap(big).to_json()).unwrap() == big


def test_readme_warns_pickle_never_sees_untrusted_bytes() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    security = readme[readme.index("## Security"):]
    assert "pickle" in security and "never" in security.split("pickle", 1)[1][:400]
    assert "Data.from_json" in security
