"""Hand-made artifacts and an event recorder for the runtime tests.

``pack_plugin`` makes an artifact the way ``hotswap build`` does (registration module, bytecode
for this Python, manifest, RECORD) without the build, so the runtime can be tested on its own
and on artifacts the build would refuse to make.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import marshal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hotswap_runtime import HotswapError
from hotswap_runtime.artifact import REGISTRATION_MODULE, REQUIRED_HOOKS, Manifest, pack

EVENTS_MODULE = "hotswap_test_events"

HOOKS_TEMPLATE = '''\
import {events} as _ev
NAME = "{name}"
STAMP = "{stamp}"

def on_load(data):
    _ev.hook(NAME, "on_load", data)

def on_init(vault):
    _ev.hook(NAME, "on_init", vault)

def on_free():
    _ev.hook(NAME, "on_free")

def export():
    _ev.hook(NAME, "export")
    return {export}

def import_():
    _ev.hook(NAME, "import_")
    return {import_}

def invoke_func(name, *params):
    _ev.hook(NAME, "invoke_func", name)
    if name == "stamp":
        return STAMP
    if name == "echo":
        return params
    if name == "boom":
        raise ValueError("boom from " + NAME)
    return None

def reloadable():
    _ev.hook(NAME, "reloadable")
    return {reloadable}
'''


def hooks_source(name: str, *, stamp: str = "v1", export: str = "None", import_: str = "None",
                 reloadable: bool = True, extra: str = "") -> str:
    """The source of a root package defining the seven hooks, recording into the events module."""
    return HOOKS_TEMPLATE.format(events=EVENTS_MODULE, name=name, stamp=stamp, export=export,
                                 import_=import_, reloadable=reloadable) + extra


def _live_names(source: str, prefix: str) -> tuple[list[str], list[str]]:
    funcs, types_ = [], []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.lower().startswith(prefix):
            funcs.append(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.lower().startswith(prefix):
            types_.append(node.name)
    return funcs, types_


def registration_source(name: str, files: dict[str, str], hooks: list[str],
                        prefix: str = "live_") -> tuple[str, dict[str, str], dict[str, str]]:
    lines = [f"from . import {hook}" for hook in hooks]
    live_funcs: dict[str, str] = {}
    live_types: dict[str, str] = {}
    for path, source in sorted(files.items()):
        if not path.endswith(".py"):
            continue
        module = path[:-3].replace("/", ".")
        if module.endswith(".__init__"):
            module = module[: -len(".__init__")]
        relative = module[len(name):] if module != name else "."
        funcs, classes = _live_names(source, prefix)
        for live in funcs + classes:
            target = "from . import" if relative == "." else f"from {relative} import"
            lines.append(f"{target} {live}")
        live_funcs.update({f: module for f in funcs})
        live_types.update({c: module for c in classes})
    lines.append("HOOKS = {" + ", ".join(f"{h!r}: {h}" for h in hooks) + "}")
    lines.append("LIVE_FUNCS = {" + ", ".join(f"{f!r}: {f}" for f in live_funcs) + "}")
    lines.append("LIVE_TYPES = {" + ", ".join(f"{t!r}: {t}" for t in live_types) + "}")
    return "\n".join(lines) + "\n", live_funcs, live_types


def pack_plugin(out_dir: Path, name: str, files: dict[str, str | bytes], *,
                hooks: list[str] | None = None, bytecode: bool = True,
                build_id: str | None = None, file_name: str | None = None) -> Path:
    """Write ``<out_dir>/<name>.hsp`` from ``files`` (paths relative to the package folder).

    Args:
        hooks: the hooks the registration module lists (default: the seven required ones).
        bytecode: ship pycs for this Python.
        build_id: defaults to a hash of the files.
    """
    hooks = list(REQUIRED_HOOKS) if hooks is None else hooks
    members: dict[str, bytes] = {}
    sources: dict[str, str] = {}
    for rel, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        members[f"{name}/{rel}"] = data
        if rel.endswith(".py"):
            sources[f"{name}/{rel}"] = data.decode()
    registration, live_funcs, live_types = registration_source(name, sources, hooks)
    members[f"{name}/{REGISTRATION_MODULE}.py"] = registration.encode()
    if bytecode:
        for member, data in list(members.items()):
            if not member.endswith(".py"):
                continue
            folder, base = member.rsplit("/", 1)
            code = compile(data, member, "exec", dont_inherit=True)
            header = (importlib.util.MAGIC_NUMBER + (1).to_bytes(4, "little")
                      + importlib.util.source_hash(data))
            tag = sys.implementation.cache_tag
            members[f"{folder}/__pycache__/{base[:-3]}.{tag}.pyc"] = header + marshal.dumps(code)
    digest = hashlib.sha256()
    for member, data in sorted(members.items()):
        digest.update(member.encode() + b"\0" + data)
    manifest = Manifest(
        name=name,
        build_id=build_id or digest.hexdigest()[:32],
        hotswap_version="0.1.0",
        python=f"{sys.version_info[0]}.{sys.version_info[1]}",
        live_prefix="live_",
        live_funcs=live_funcs,
        live_types=live_types,
        hooks=tuple(hooks),
        bytecode={"cache_tag": sys.implementation.cache_tag,
                  "magic": importlib.util.MAGIC_NUMBER.hex(), "optimize": 0} if bytecode else None,
        import_name=name,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{file_name or name}.hsp"
    path.write_bytes(pack(name, members, manifest))
    return path


class Events:
    """What the sample plugins' hooks record, and the faults to inject into them."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        self.data: list[tuple[str, Any]] = []
        self.fail: set[tuple[str, str]] = set()

    def hook(self, name: str, hook: str, arg: Any = None) -> None:
        if hook != "invoke_func":
            self.log.append((name, hook))
        if hook == "on_load":
            self.data.append((name, arg))
        if (name, hook) in self.fail:
            raise RuntimeError(f"injected fault in {name}.{hook}")

    def hooks(self, hook: str) -> list[str]:
        return [name for name, h in self.log if h == hook]


def first_load_refused(make_swapper: Callable[..., Any]) -> HotswapError:
    """Check that a new swapper's ``load_plugins`` is refused with nothing changed; the error.

    Nothing changed: the swapper has no manager and ``sys.modules`` holds no new module.
    """
    swapper = make_swapper()
    before = set(sys.modules)
    with pytest.raises(HotswapError) as info:
        swapper.load_plugins()
    assert swapper.current() is None
    assert set(sys.modules) == before
    return info.value
