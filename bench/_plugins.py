"""Generate and build the sample plugins the benchmarks load (not a benchmark itself)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from hotswap_build.build import build

HOOKS = '''\
CompileTimeString = "a"

def on_load(data):
    pass

def on_init(vault):
    pass

def on_free():
    pass

def export():
    return None

def import_():
    return None

def reloadable():
    return True

def add(x):
    return x + 1

def live_add(x):
    return x + 1

def invoke_func(name, *params):
    if name == "add":
        return add(*params)
    return None
'''


def module_source(index: int) -> str:
    """About 100 lines of ordinary code: constants, functions, a class, a dataclass."""
    parts = [f'"""Generated module {index}."""\n', "import dataclasses\nimport typing\n\n",
             f"TABLE_{index} = {{{', '.join(f'{k}: {k * k}' for k in range(20))}}}\n\n"]
    for f in range(6):
        parts.append(textwrap.dedent(f"""
            def func_{index}_{f}(x: int, y: int = {f}) -> int:
                total = 0
                for i in range(x):
                    if i % 2:
                        total += i * y
                    else:
                        total -= i
                return total + TABLE_{index}.get(x, 0)
            """))
    parts.append(textwrap.dedent(f"""
        class Worker{index}:
            def __init__(self, name: str) -> None:
                self.name = name
                self.items: list[int] = []

            def push(self, value: int) -> None:
                self.items.append(value)

            def total(self) -> int:
                return sum(self.items)

            def __repr__(self) -> str:
                return f"Worker{index}({{self.name!r}})"


        @dataclasses.dataclass
        class Record{index}:
            key: str
            value: int = 0
            tags: typing.List[str] = dataclasses.field(default_factory=list)

            def tagged(self, tag: str) -> bool:
                return tag in self.tags
        """))
    return "".join(parts)


def make_plugin(root: Path, name: str, modules: int) -> Path:
    """Write plugin ``name`` with ``modules`` modules (the root package imports every one)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    imports = "".join(f"from . import mod{i}\n" for i in range(1, modules))
    (folder / "__init__.py").write_text(HOOKS + imports)
    for i in range(1, modules):
        (folder / f"mod{i}.py").write_text(module_source(i))
    return folder


def build_stamped(plugin: Path, out: Path, stamp: str) -> bytes:
    """Build ``plugin`` with ``-X CompileTimeString=stamp`` and return the artifact's bytes."""
    result = build(plugin, out, stamps={"CompileTimeString": stamp})
    assert result.artifact is not None
    return result.artifact.read_bytes()
