"""Median time of live.wrap, unwrap, to_json and from_json for a typical job (µs).

Run: .venv/bin/python bench/live.py
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from hotswap_runtime import live


@dataclasses.dataclass
class Step:
    name: str
    done: bool = False


@dataclasses.dataclass
class Job:
    __live_version__: ClassVar[int] = 1
    id: uuid.UUID
    title: str
    created: dt.datetime
    steps: list[Step]
    tags: set[str]
    payload: dict[str, Any]
    priority: int = 0
    timeout: dt.timedelta = dt.timedelta(seconds=30)


def median_us(fn: Callable[[], object], rounds: int = 2000) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def main() -> None:
    job = Job(uuid.uuid4(), "resize images", dt.datetime.now(dt.UTC),
              [Step("fetch", True), Step("resize"), Step("upload")], {"media", "batch"},
              {"bucket": "b1", "sizes": [64, 128, 256], "retries": 3})
    data = live.wrap(job)
    raw = data.to_json()
    print(f"job: {len(raw)} bytes of JSON")
    for name, fn in [("wrap", lambda: live.wrap(job)),
                     ("unwrap()", lambda: data.unwrap()),
                     ("unwrap(Job)", lambda: data.unwrap(Job)),
                     ("to_json", data.to_json),
                     ("from_json", lambda: live.Data.from_json(raw))]:
        fn()
        print(f"{name:12} {median_us(fn):8.1f} µs (median)")


if __name__ == "__main__":
    main()
