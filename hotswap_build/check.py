"""Checks across the whole plugin: live names, hooks and stamps, every problem collected."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hotswap_runtime.artifact import HOOK_CALLS, REQUIRED_HOOKS

from .layout import PluginLayout
from .scan import ALL_HOOKS, Binding, FileScan

__all__ = ["Analysis", "analyse"]



@dataclass(frozen=True)
class Analysis:
    """The plugin-wide result: live names (name -> module), hooks found, and problems."""

    live_funcs: Mapping[str, str] = field(default_factory=dict)
    live_types: Mapping[str, str] = field(default_factory=dict)
    hooks: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


def _is_live(name: str, prefix: str) -> bool:
    return name.lower().startswith(prefix.lower())


def _resolve(name: str, module: str, scans: Mapping[str, FileScan], depth: int = 0
             ) -> tuple[Binding | None, str]:
    """Follow imports inside the plugin to the binding that defines ``name``."""
    scan = scans.get(module)
    if scan is None or depth > 8:
        return None, module
    found = [b for b in scan.bindings if b.name == name]
    for binding in found:
        if binding.kind == "import" and binding.origin is not None:
            target = scans.get(binding.origin[0])
            if target is None or not target.parsed or target.broken:
                # not a module of the plugin (a subpackage attribute?) or a file already
                # reported broken: present, but its signature cannot be checked here
                return binding, module
            return _resolve(binding.origin[1], binding.origin[0], scans, depth + 1)
        return binding, module
    for star in scan.star_imports:
        starred, where = _resolve(name, star, scans, depth + 1)
        if starred is not None:
            return starred, where
    return None, module


def analyse(layout: PluginLayout, scans: Sequence[FileScan], live_prefix: str,
            stamps: Mapping[str, str]) -> Analysis:
    """Check live names, hooks and stamps across every file; collect every problem."""
    problems: list[str] = []
    by_module = {s.module: s for s in scans}
    rel_of = {s.module: s.rel for s in scans}
    live: dict[str, list[tuple[Binding, FileScan]]] = {}
    for scan in scans:
        # a live name assigned or imported from outside is a problem of its file alone: the
        # per-file scan reports it (``FileScan.problems``); here only what spans files
        problems.extend(scan.problems)
        for bound in scan.bindings:
            if (_is_live(bound.name, live_prefix) and not bound.conditional
                    and bound.kind in ("function", "class")):
                live.setdefault(bound.name, []).append((bound, scan))
    live_funcs: dict[str, str] = {}
    live_types: dict[str, str] = {}
    for name, defs in sorted(live.items()):
        if len(defs) > 1:
            places = " and ".join(f"{layout.display(s.rel)}:{b.line}" for b, s in
                                  sorted(defs, key=lambda d: (d[1].rel, d[0].line)))
            problems.append(
                f'plugin "{layout.name}": live name "{name}" is defined twice, in {places}; '
                "live functions and types share one namespace, so rename one of them")
            continue
        first, scan = defs[0]
        (live_funcs if first.kind == "function" else live_types)[name] = scan.module

    root = by_module.get(layout.name)
    root_file = f"{layout.name}/__init__.py"
    if root is None or root.broken:  # its syntax error is reported; guessing more only misleads
        return Analysis(live_funcs, live_types, (), tuple(problems))
    hooks: list[str] = []
    missing: list[str] = []
    for hook in ALL_HOOKS:
        binding, module = _resolve(hook, layout.name, by_module) if root else (None, "")
        if binding is None:
            if hook in REQUIRED_HOOKS:
                missing.append(hook)
            continue
        hooks.append(hook)
        where = f"{layout.display(rel_of.get(module, '__init__.py'))}:{binding.line}"
        if binding.kind == "class":
            problems.append(f'plugin "{layout.name}": {hook} in {where} is a class, not a '
                            f"function; define it as def {HOOK_CALLS[hook]}")
        elif binding.asynchronous and hook != "invoke_func":
            problems.append(f'plugin "{layout.name}": {hook} in {where} is a coroutine function '
                            "(async def), but the runtime calls it synchronously; define it as "
                            f"def {HOOK_CALLS[hook]}")
        elif binding.params is not None and not binding.params.takes_hook(hook):
            problems.append(f'plugin "{layout.name}": {hook} in {where} cannot be called as '
                            f"{HOOK_CALLS[hook]}; give it the signature "
                            f"def {HOOK_CALLS[hook]}")
    if missing:
        problems.append(f'plugin "{layout.name}": missing functions: {", ".join(sorted(missing))}; '
                        f"define them in {root_file} or import them there")
    stamped = set(root.stamped) if root else set()
    for name in sorted(stamps):
        if name not in stamped:
            problems.append(f'plugin "{layout.name}": -X {name}: {root_file} defines no '
                            f'module-level str constant "{name}"; add {name} = "" there, or '
                            f"drop -X {name}")
    return Analysis(live_funcs, live_types, tuple(hooks), tuple(problems))
