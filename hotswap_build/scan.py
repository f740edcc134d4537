"""Scan one file: CPython's syntax tree, statements only, for what the build needs.

``FileContext.needs_parse`` is the cheap text check that spares most files any parsing.
``scan_tree`` walks the statements of a parsed file (never its expressions) for module-level
live names and hooks, imports at any depth, and ``-X`` stamps, and says which spans ``rewrite``
must change. ``check.analyse`` then looks across every file.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hotswap_runtime.artifact import OPTIONAL_HOOKS, REQUIRED_HOOKS, HookParams

from .layout import COMPUTED_IMPORTS_MODULE, PluginLayout

__all__ = ["ALL_HOOKS", "Binding", "Edit", "FileContext", "FileScan", "Params", "scan_tree"]

ALL_HOOKS: dict[str, int] = {**REQUIRED_HOOKS, **OPTIONAL_HOOKS}


#: a function's parameter shape; the hook-signature rule is the runtime's (``HookParams``)
Params = HookParams


@dataclass(frozen=True)
class Binding:
    """A module-level binding of a live name or a hook name.

    ``kind`` is ``function``, ``class``, ``assignment``, ``import`` (from inside the plugin;
    ``origin`` is the dotted module inside the artifact and the imported name) or
    ``external import`` (``origin`` names the outside module).
    """

    name: str
    kind: str
    line: int
    params: Params | None = None
    origin: tuple[str, str] | None = None
    conditional: bool = False
    asynchronous: bool = False


@dataclass(frozen=True)
class FileContext:
    """What the per-file pass needs to know besides the file itself (picklable)."""

    rel: str
    module: str
    package_depth: int
    is_root: bool
    layout: PluginLayout
    live_prefix: str
    stamps: tuple[tuple[str, str], ...]
    optimize: int

    @classmethod
    def create(cls, layout: PluginLayout, rel: str, live_prefix: str = "live_",
               stamps: Mapping[str, str] | None = None, optimize: int = 0) -> FileContext:
        """The context of source file ``rel`` (relative to the plugin folder, ``/``-separated)."""
        parts = rel[:-3].split("/")
        if parts[-1] == "__init__":
            parts.pop()
            depth = len(parts)
        else:
            depth = len(parts) - 1
        is_root = rel == "__init__.py"
        return cls(
            rel=rel,
            module=".".join([layout.name, *parts]),
            package_depth=depth,
            is_root=is_root,
            layout=layout,
            live_prefix=live_prefix,
            stamps=tuple(sorted((stamps or {}).items())) if is_root else (),
            optimize=optimize,
        )

    def needs_parse(self, text: str) -> bool:
        """The cheap text check: could a scan find anything to record or rewrite here?"""
        if self.is_root:
            return True
        pattern = _prefilter(self.layout, self.live_prefix, self.package_depth)
        return pattern.search(text) is not None


_PREFILTERS: dict[tuple[str, tuple[str, ...], str, int], re.Pattern[str]] = {}


def _prefilter(layout: PluginLayout, prefix: str, depth: int) -> re.Pattern[str]:
    key = (layout.import_name, layout.siblings, prefix, depth)
    pattern = _PREFILTERS.get(key)
    if pattern is None:
        words = {layout.import_name.split(".")[0], *(s.split(".")[0] for s in layout.siblings),
                 *ALL_HOOKS}
        alternatives = [
            f"(?i:{re.escape(prefix)})",
            r"\b(?:" + "|".join(sorted(map(re.escape, words))) + r")\b",
            rf"\bfrom\s*\.{{{depth + 2}}}",
            _IMPORT_CALLS,
        ]
        pattern = _PREFILTERS[key] = re.compile("|".join(alternatives))
    return pattern


@dataclass(frozen=True)
class FileScan:
    """What the scan of one file found.

    Attributes:
        rel: path relative to the plugin folder.
        module: dotted module name inside the artifact (``foo.jobs``).
        parsed: False when the text check showed there was nothing to look at.
        bindings: module-level bindings of live names and hook names.
        star_imports: modules inside the artifact this file star-imports at module level.
        stamped: names of ``-X`` stamps applied (root package only).
        problems: messages for what is wrong in this file alone.
        rewritten: whether the source was changed.
        broken: the file does not compile, so what it defines is unknown.
        computed: a call was rewritten to use the generated ``_hotswap_imports`` module.
    """

    rel: str
    module: str
    parsed: bool
    bindings: tuple[Binding, ...] = ()
    star_imports: tuple[str, ...] = ()
    stamped: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    rewritten: bool = False
    broken: bool = False
    computed: bool = False


@dataclass(frozen=True)
class Edit:
    """A change to one span of a file: ``kind`` is ``import`` (a statement for libcst to make
    relative; ``text`` is its source) or ``replace`` (``text`` replaces the span as is).

    Spans are (line, column) pairs, 1-based lines and 0-based character columns.
    """

    start: tuple[int, int]
    end: tuple[int, int]
    kind: str
    text: str


_BLOCK_FIELDS = ("body", "orelse", "finalbody", "handlers")
_BLOCK_NAMES = {"If": "if", "Try": "try", "TryStar": "try", "With": "with",
                "AsyncWith": "async with", "For": "for", "AsyncFor": "async for",
                "While": "while", "Match": "match"}
#: what ``import <own>`` becomes: the mounted root package (or a module inside it) by a name
#: relative to ``__package__``, which binds nothing else
LOAD = "__import__('importlib').import_module({!r}, __package__)"


class _Scanner:
    """Walk a module's statements (never its expressions) and record what the build needs.

    Module-level bindings are recorded while no ``def``/``class`` encloses the walk (``scope``);
    statements inside module-level ``if``/``try``/``with`` blocks count as conditional, and a
    live function or type defined there is refused (the registration module imports live names
    unconditionally). Imports are checked at every depth, lazy ones inside functions included;
    with a one-identifier real name, ``import <own>`` forms are rewritten to bind the mounted
    root package.
    """

    def __init__(self, ctx: FileContext, lines: Sequence[str]) -> None:
        layout = ctx.layout
        self.ctx = ctx
        self.lines = lines
        self.own = layout.import_name
        self.own_parent, _, self.own_last = self.own.rpartition(".")
        self.prefix = ctx.live_prefix.lower()
        self.stamps = dict(ctx.stamps) if ctx.is_root else {}
        self.package = ctx.module.split(".") if ctx.rel.endswith("__init__.py") \
            else ctx.module.split(".")[:-1]
        self.dots = ctx.package_depth + 1
        self.where = layout.display(ctx.rel)
        self.plugin = f'plugin "{layout.name}"'
        self.scope = 0
        self.blocks = 0
        self.block_names: list[str] = []
        self.bindings: list[Binding] = []
        self.star_imports: list[str] = []
        self.stamped: list[str] = []
        self.problems: list[str] = []
        self.edits: list[Edit] = []
        self.computed = False

    # --- helpers --------------------------------------------------------------------------

    def column(self, line: int, offset: int) -> int:
        """ast columns count UTF-8 bytes; edits count characters."""
        text = self.lines[line - 1]
        return len(text.encode("utf-8")[:offset].decode("utf-8", "replace")) if not text.isascii() \
            else offset

    def span(self, node: ast.AST) -> tuple[tuple[int, int], tuple[int, int]]:
        start = (node.lineno, self.column(node.lineno, node.col_offset))  # type: ignore[attr-defined]  # positioned nodes only
        end_line = node.end_lineno  # type: ignore[attr-defined]  # positioned nodes only
        return start, (end_line, self.column(end_line, node.end_col_offset))  # type: ignore[attr-defined]  # positioned nodes only

    def source(self, node: ast.AST) -> str:
        (l1, c1), (l2, c2) = self.span(node)
        if l1 == l2:
            return self.lines[l1 - 1][c1:c2]
        return self.lines[l1 - 1][c1:] + "".join(self.lines[l1:l2 - 1]) + self.lines[l2 - 1][:c2]

    def problem(self, node: ast.AST, text: str) -> None:
        self.problems.append(text.replace("{where}", f"{self.where}:{node.lineno}"))  # type: ignore[attr-defined]  # positioned nodes only

    def bind(self, node: ast.AST, name: str, kind: str, origin: tuple[str, str] | None = None,
             params: Params | None = None) -> None:
        if self.scope or not (name.lower().startswith(self.prefix) or name in ALL_HOOKS):
            return
        live = name.lower().startswith(self.prefix) and not self.blocks
        if self.blocks and kind in ("function", "class") and name.lower().startswith(self.prefix):
            what = "function" if kind == "function" else "type"
            self.problem(node, f'{self.plugin}: live {what} "{name}" in {{where}} is defined '
                         f"inside a module-level {self.block_names[0]} block, so the "
                         "registration module could not import it reliably; define it "
                         "unconditionally at module level, or drop the "
                         f'"{self.ctx.live_prefix}" prefix')
        if live and kind == "assignment":
            self.problem(node, f'{self.plugin}: live name "{name}" in {{where}} is assigned, not '
                         "defined by a def or class of the plugin; define it with def or class, "
                         f'or drop the "{self.ctx.live_prefix}" prefix')
        elif live and kind == "external import":
            self.problem(node, f'{self.plugin}: live name "{name}" in {{where}} is imported from '
                         f'"{origin[0] if origin else ""}", outside the plugin; live functions '
                         "and types must be defined by a def or class of the plugin, so import "
                         f'it under a name without the "{self.ctx.live_prefix}" prefix')
        self.bindings.append(Binding(name, kind, node.lineno, params, origin,  # type: ignore[attr-defined]  # positioned nodes only
                                     conditional=self.blocks > 0,
                                     asynchronous=isinstance(node, ast.AsyncFunctionDef)))

    # --- walking --------------------------------------------------------------------------

    def visit_body(self, body: Sequence[ast.stmt]) -> None:
        for node in body:
            method = getattr(self, f"visit_{type(node).__name__}", None)
            if method is not None:
                method(node)
            else:
                self.visit_block(node)

    def visit_block(self, node: ast.AST) -> None:
        """Compound statements (if, try, with, for, while, match): look inside their bodies."""
        self.blocks += 1
        self.block_names.append(_BLOCK_NAMES.get(type(node).__name__, "compound"))
        for name in _BLOCK_FIELDS:
            for child in getattr(node, name, ()):
                if isinstance(child, ast.ExceptHandler):
                    self.visit_body(child.body)
                else:
                    self.visit_body([child])
        for case in getattr(node, "cases", ()):
            self.visit_body(case.body)
        self.block_names.pop()
        self.blocks -= 1

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        params = None if node.decorator_list else Params(
            positional=len(positional),
            required=len(positional) - len(args.defaults),
            varargs=args.vararg is not None,
            required_kwonly=tuple(
                a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                if d is None),
        )
        self.bind(node, node.name, "function", params=params)
        self.scope += 1
        self.visit_body(node.body)
        self.scope -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.bind(node, node.name, "class")
        self.scope += 1
        self.visit_body(node.body)
        self.scope -= 1

    def visit_Expr(self, node: ast.Expr) -> None:
        pass

    visit_Return = visit_Pass = visit_Break = visit_Continue = visit_Raise = visit_Expr
    visit_Delete = visit_Assert = visit_Global = visit_Nonlocal = visit_Expr

    def visit_TypeAlias(self, node: ast.AST) -> None:
        name = getattr(node, "name", None)
        if isinstance(name, ast.Name):
            self.bind(node, name.id, "assignment")

    # --- assignments and stamps -----------------------------------------------------------

    def visit_Assign(self, node: ast.Assign | ast.AnnAssign | ast.AugAssign) -> None:
        if self.scope:
            return
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            for target in node.targets:
                targets.extend(target.elts if isinstance(target, (ast.Tuple, ast.List))
                               else [target])
        elif not (isinstance(node, ast.AnnAssign) and node.value is None):
            targets.append(node.target)
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        for name in names:
            self.bind(node, name, "assignment")
        if (not self.stamps or self.blocks or isinstance(node, ast.AugAssign)
                or len(targets) != 1 or not names or names[0] not in self.stamps):
            return
        name = names[0]
        self.stamped.append(name)
        value = node.value
        if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
            self.problem(node, f"{self.plugin}: -X {name}: {name} in {{where}} is not a str "
                         f'constant; assign it a string literal ({name} = "...") or drop '
                         f"-X {name}")
            return
        start, end = self.span(value)
        self.edits.append(Edit(start, end, "replace", repr(self.stamps[name])))

    visit_AnnAssign = visit_AugAssign = visit_Assign

    # --- imports --------------------------------------------------------------------------

    def sibling_of(self, module: str) -> str | None:
        for sibling in self.ctx.layout.siblings:
            if module == sibling or module.startswith(sibling + "."):
                return sibling
        return None

    def sibling(self, node: ast.AST, sibling: str) -> None:
        self.problem(node, f'{self.plugin}: {{where}} imports "{sibling}", the package of plugin '
                     f'"{sibling.rpartition(".")[2]}"; a plugin never imports another '
                     "plugin's package: share types through a host-side module and reach other "
                     "plugins through export() and import_()")

    def own_root(self, node: ast.AST) -> None:
        self.problem(node, f'{self.plugin}: "{" ".join(self.source(node).split())}" in {{where}} '
                     "imports the plugin's own root package by name, which cannot be made "
                     f'relative; import what you need with "from {"." * self.dots} import name"')

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        star = any(alias.name == "*" for alias in node.names)
        if node.level:
            if node.level > self.dots:
                self.problem(node, f'{self.plugin}: "{" ".join(self.source(node).split())}" in '
                             "{where} reaches above the plugin's root package; import host-side "
                             "modules absolutely, and other plugins through import_()")
                return
            base = self.package[: len(self.package) - (node.level - 1)]
            target = ".".join([*base, *([module] if module else [])])
        elif module == self.own or module.startswith(self.own + "."):
            rest = module[len(self.own) + 1:]
            target = ".".join(filter(None, [self.ctx.layout.name, rest]))
            start, end = self.span(node)
            self.edits.append(Edit(start, end, "import", self.source(node)))
        else:
            sibling = self.sibling_of(module)
            if sibling:
                self.sibling(node, sibling)
                return
            if self.own_parent and module == self.own_parent:
                for alias in node.names:
                    if alias.name == self.own_last:
                        self.own_root(node)
                    elif f"{self.own_parent}.{alias.name}" in self.ctx.layout.siblings:
                        self.sibling(node, f"{self.own_parent}.{alias.name}")
            for alias in node.names:
                self.bind(node, alias.asname or alias.name, "external import",
                          origin=(module, alias.name))
            return
        if star:
            if not self.scope and not self.blocks:
                self.star_imports.append(target)
            return
        for alias in node.names:
            self.bind(node, alias.asname or alias.name, "import", origin=(target, alias.name))

    def visit_Import(self, node: ast.Import) -> None:
        rewrite = False
        for alias in node.names:
            name = alias.name
            if not self.own_parent and (name == self.own or (
                    name.startswith(self.own + ".") and alias.asname is None)):
                # the real import name is one identifier, so the name this binds is the
                # plugin's own root package: bind the mounted one instead (rewrite.LOAD)
                rewrite = True
                self.bind(node, alias.asname or self.own, "assignment")
            elif name == self.own:
                self.own_root(node)
            elif name.startswith(self.own + "."):
                parent, _, last = name[len(self.own) + 1:].rpartition(".")
                if alias.asname is None:
                    top = self.own.split(".")[0]
                    self.problem(node, f'{self.plugin}: "{" ".join(self.source(node).split())}" '
                                 f'in {{where}} cannot be made relative: it binds the name '
                                 f'"{top}"; write "from {"." * self.dots + parent} import {last}" '
                                 f'(or "import {name} as {last}") and use {last}.… instead')
                    continue
                rewrite = True
                self.bind(node, alias.asname, "import",
                          origin=(".".join(filter(None, [self.ctx.layout.name, parent])), last))
            else:
                sibling = self.sibling_of(name)
                if sibling:
                    self.sibling(node, sibling)
                self.bind(node, alias.asname or name.split(".")[0], "external import",
                          origin=(name, ""))
        if rewrite:
            start, end = self.span(node)
            self.edits.append(Edit(start, end, "import", self.source(node)))

    # --- import_module("<own>.x"), computed imports ---------------------------------------

    def named_calls(self, tree: ast.Module) -> None:
        """Calls that name modules by a string, which the runtime may mount under another name.

        ``import_module("<own>.x")`` becomes ``import_module("..x", __package__)`` and
        ``__import__("<own>.x")`` binds the mounted package (one-identifier real names); the
        package argument of ``importlib.resources``/``pkgutil.get_data`` becomes an expression of
        ``__package__``. Every other ``importlib.import_module``, ``__import__`` and
        ``importlib.util.find_spec`` call (by any alias, ``builtins.__import__``, a literal
        ``getattr``) that may name the plugin's own package (a computed
        name, an own name with more arguments, a relative name with a computed package) calls
        the function of the same role in the generated ``_hotswap_imports`` module instead,
        which maps the plugin's real names to the mounted version at run time; so does every
        ``importlib.metadata.entry_points`` call, since entry points found in the host's
        installed copy of the package name the real package's modules (babel's extractors), and
        every ``pickle.load``/``loads``/``Unpickler`` call, since a pickle shipped with the
        package names its classes by the real package's modules (babel's locale data).
        """
        aliases = _ImportlibAliases.of(tree)
        callees: set[int] = set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            callees.add(id(func))
            name = func.attr if isinstance(func, ast.Attribute) else (
                func.id if isinstance(func, ast.Name) else "")
            if name in _RESOURCE_CALLS:
                if node.args:
                    self.resource_call(node.args[0])
                continue
            role = aliases.role(func)
            if role is None and name == "import_module" and node.args and _literal(node.args[0]):
                role = "import_module"  # any import_module("<own>.x"), as before
            if role is not None:
                self.import_call(node, role)
            elif name == "getattr" and isinstance(func, ast.Name) and len(node.args) >= 2:
                self.dynamic_lookup(node, aliases)
        self.import_values(tree, aliases, callees)

    def import_values(self, tree: ast.Module, aliases: _ImportlibAliases, callees: set[int]
                      ) -> None:
        """An import function used as a value (``f = importlib.import_module``,
        ``map(importlib.import_module, names)``, ``builtins.__import__`` passed on, a literal
        ``getattr(importlib, "import_module")``): nothing tells what it will be called with,
        so the value becomes the ``_hotswap_imports`` function of the same role, which passes
        every name that is not the plugin's own through unchanged. Assignments to it (an
        import hook installed with ``builtins.__import__ = hook``) stay as they are."""
        for node in ast.walk(tree):
            if id(node) in callees or not isinstance(node, (ast.Name, ast.Attribute, ast.Call,
                                                            ast.Subscript)):
                continue
            if isinstance(node, (ast.Name, ast.Attribute, ast.Subscript)) and not isinstance(
                    node.ctx, ast.Load):
                continue
            role = aliases.value_role(node)
            if role is None:
                continue
            start, end = self.span(node)
            helper = LOAD.format("." * self.dots + COMPUTED_IMPORTS_MODULE)
            self.edits.append(Edit(start, end, "replace", f"{helper}.{_HELPERS[role]}"))
            self.computed = True

    def dynamic_lookup(self, node: ast.Call, aliases: _ImportlibAliases) -> None:
        """``getattr(importlib, name)`` with a computed ``name`` may fetch an import function
        that no rewrite can reach: refused, saying what to write instead."""
        module = aliases.module_of(node.args[0])
        if module is None or module == "builtins" or _literal(node.args[1]) is not None:
            return
        self.problem(node, f'{self.plugin}: "{" ".join(self.source(node).split())}" in '
                     "{where} looks up a function of " + module + " by a computed name, so the "
                     "build cannot point it at this version (an import through it would reach "
                     "the host's package of the same name, not the plugin's own modules); call "
                     f"{module}.<function>(...) by its name instead")

    def import_call(self, node: ast.Call, role: str) -> None:
        """One call of ``import_module``, ``__import__`` or ``find_spec`` (``role``)."""
        first = node.args[0] if node.args else _keyword(node, "name")
        target = _literal(first) if first is not None and role in _NAME_ROLES else None
        if target is not None and not target.startswith("."):
            if target != self.own and not target.startswith(self.own + "."):
                return  # a host module by a literal name: nothing to map
            if role == "import_module" and len(node.args) == 1 and not node.keywords:
                relative = "." * self.dots + target[len(self.own) + 1:]
                start, end = self.span(node.args[0])
                self.edits.append(Edit(start, end, "replace", f"{relative!r}, __package__"))
                return
            if role == "__import__" and self.dunder_import(node, target):
                return
        elif target is not None:
            # a relative name: only the package says whose it is (__import__'s level is
            # relative to the caller's own globals, which are the mounted module's already)
            if role == "__import__":
                return
            package = node.args[1] if len(node.args) > 1 else _keyword(node, "package")
            text = _literal(package) if package is not None else None
            if package is None or (isinstance(package, ast.Name) and package.id in _OWN_NAMES):
                return
            if text is not None and text != self.own and not text.startswith(self.own + "."):
                return
        start, end = self.span(node.func)
        helper = LOAD.format("." * self.dots + COMPUTED_IMPORTS_MODULE)
        self.edits.append(Edit(start, end, "replace", f"{helper}.{_HELPERS[role]}"))
        self.computed = True

    def dunder_import(self, node: ast.Call, target: str) -> bool:
        """``__import__("<own>.x")`` imports ``<own>.x`` and returns the root package: with a
        one-identifier real name and no other argument, both happen on the mounted package.
        Returns False when the call is left to the ``_hotswap_imports`` helper instead."""
        dots = "." * self.dots
        if len(node.args) == 1 and not node.keywords and not self.own_parent:
            rest = target[len(self.own) + 1:]
            root = LOAD.format(dots)
            text = f"({LOAD.format(dots + rest)}, {root})[1]" if rest else root
            start, end = self.span(node)
            self.edits.append(Edit(start, end, "replace", text))
            return True
        if self.own_parent and len(node.args) < 4 and _keyword(node, "fromlist") is None:
            self.problem(node, f'{self.plugin}: __import__("{target}") in {{where}} names the '
                         "plugin's own package, which the runtime mounts under another name, "
                         "and cannot be rewritten (it returns the host package "
                         f'"{self.own.split(".")[0]}"); write importlib.import_module('
                         f'"{dots}{target[len(self.own) + 1:]}", __package__) instead, and use '
                         f'the module it returns ("{target}" of this version) where the code '
                         f'reached it through "{self.own.split(".")[0]}"')
            return True
        return False

    def resource_call(self, first: ast.expr) -> None:
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            return
        target = first.value
        if target != self.own and not target.startswith(self.own + "."):
            return
        depth = self.ctx.package_depth
        root = "__package__" if not depth else f'__package__.rsplit(".", {depth})[0]'
        rest = target[len(self.own) + 1:]
        start, end = self.span(first)
        self.edits.append(Edit(start, end, "replace", f'{root} + ".{rest}"' if rest else root))


#: functions of importlib.resources and pkgutil that take a package name first
_RESOURCE_CALLS = frozenset({"files", "read_text", "read_binary", "open_text", "open_binary",
                             "path", "contents", "is_resource", "get_data"})
_NAMED_CALLS = re.compile(
    r"\b(?:import_module|get_data|resources|__import__|find_spec|entry_points|pickle|importlib)\b")
#: the words that make a file worth parsing for computed imports alone (``importlib`` for a
#: ``getattr(importlib, name)`` that names none of its functions)
_IMPORT_CALLS = r"\b(?:import_module|__import__|find_spec|entry_points|pickle|importlib)\b"
#: what each role calls in the generated ``_hotswap_imports`` module
_HELPERS = {"import_module": "import_module", "__import__": "dunder_import",
            "find_spec": "find_spec", "entry_points": "entry_points",
            "pickle.load": "pickle_load", "pickle.loads": "pickle_loads",
            "pickle.Unpickler": "unpickler"}
#: package arguments that already name the mounted version (the caller's own package)
_OWN_NAMES = frozenset({"__package__", "__name__"})


def _literal(node: ast.expr | None) -> str | None:
    """The value of a str constant, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _keyword(node: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


#: the functions whose calls may reach the plugin's own modules by a name known at run time:
#: (module, function) -> role
#: the functions whose calls may reach the plugin's own modules by a name known only at run
#: time: (module, function) -> role. Pickles name classes by module (babel's locale data names
#: ``babel.localedata``), so unpickling is an import too.
_IMPORT_FUNCTIONS = {("importlib", "import_module"): "import_module",
                     ("importlib", "__import__"): "__import__",
                     ("builtins", "__import__"): "__import__",
                     ("importlib.util", "find_spec"): "find_spec",
                     ("importlib.metadata", "entry_points"): "entry_points",
                     ("pickle", "load"): "pickle.load",
                     ("pickle", "loads"): "pickle.loads",
                     ("pickle", "Unpickler"): "pickle.Unpickler"}
#: the top-level modules of those functions
_IMPORT_MODULES = frozenset(module.split(".")[0] for module, _ in _IMPORT_FUNCTIONS)
#: the roles whose first argument is a module name (the others are always rewritten)
_NAME_ROLES = frozenset({"import_module", "__import__", "find_spec"})


@dataclass
class _ImportlibAliases:
    """The names a file binds to ``importlib`` (and its ``util`` and ``metadata``), ``pickle``
    and their import functions (anywhere in the file: a lazy ``import importlib`` inside a
    function counts too). ``modules`` maps a bound name to the module it is (``importlib``,
    ``importlib.util``), ``functions`` a bound name to its role.
    """

    modules: dict[str, str]
    functions: dict[str, str]
    #: the file binds ``__import__`` itself (a def, an assignment): its calls are not the builtin
    own_dunder: bool = False

    @classmethod
    def of(cls, tree: ast.Module) -> _ImportlibAliases:
        found = cls({}, {})
        for node in ast.walk(tree):
            if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                    and node.name == "__import__") or (
                    isinstance(node, ast.Name) and node.id == "__import__"
                    and not isinstance(node.ctx, ast.Load)):
                found.own_dunder = True
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    if top not in _IMPORT_MODULES:
                        continue
                    if alias.asname is None:
                        found.modules[top] = top
                    else:
                        found.modules[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                for alias in node.names:
                    if alias.name == "*":  # from importlib import *: its functions, by name
                        found.functions.update({function: role for (module, function), role
                                                in _IMPORT_FUNCTIONS.items()
                                                if module == node.module
                                                and not function.startswith("_")})
                        continue
                    bound = alias.asname or alias.name
                    role = _IMPORT_FUNCTIONS.get((node.module, alias.name))
                    if role is not None:
                        found.functions[bound] = role
                    elif node.module in _IMPORT_MODULES:
                        found.modules[bound] = f"{node.module}.{alias.name}"
        return found

    def module_of(self, node: ast.expr) -> str | None:
        """The module the expression ``node`` names (``importlib.util``), or None."""
        if isinstance(node, ast.Name):
            if node.id == "__builtins__":
                return "builtins"
            return self.modules.get(node.id)
        if isinstance(node, ast.Attribute):
            parent = self.module_of(node.value)
            return f"{parent}.{node.attr}" if parent is not None else None
        return None

    def role(self, func: ast.expr) -> str | None:
        """Which import function the expression ``func`` is, or None: a bound name
        (``import_module``, the builtin ``__import__``), an attribute of a module
        (``il.import_module``, ``builtins.__import__``), a literal lookup
        (``getattr(importlib, "import_module")``, ``__builtins__["__import__"]``)."""
        if isinstance(func, ast.Name):
            if func.id == "__import__" and not self.own_dunder:
                return "__import__"
            return self.functions.get(func.id)
        if isinstance(func, ast.Attribute):
            module = self.module_of(func.value)
            return _IMPORT_FUNCTIONS.get((module, func.attr)) if module is not None else None
        if (isinstance(func, ast.Call) and isinstance(func.func, ast.Name)
                and func.func.id == "getattr" and len(func.args) in (2, 3)):
            module, attr = self.module_of(func.args[0]), _literal(func.args[1])
            return _IMPORT_FUNCTIONS.get((module, attr)) if module and attr else None
        if isinstance(func, ast.Subscript):
            key, table = _literal(func.slice), func.value
            if key is None:
                return None
            if isinstance(table, ast.Name) and table.id == "__builtins__":
                return _IMPORT_FUNCTIONS.get(("builtins", key))
            if isinstance(table, ast.Attribute) and table.attr == "__dict__":
                module = self.module_of(table.value)
            elif (isinstance(table, ast.Call) and isinstance(table.func, ast.Name)
                  and table.func.id == "vars" and len(table.args) == 1):
                module = self.module_of(table.args[0])
            else:
                return None
            return _IMPORT_FUNCTIONS.get((module, key)) if module is not None else None
        return None

    def value_role(self, node: ast.expr) -> str | None:
        """Which import function ``node``, used as a value, is (a class such as
        ``pickle.Unpickler`` may be subclassed, so it stays itself)."""
        role = self.role(node)
        return None if role == "pickle.Unpickler" else role


def scan_tree(tree: ast.Module, text: str, lines: Sequence[str], ctx: FileContext
              ) -> tuple[FileScan, list[Edit]]:
    """Scan one parsed file: bindings, imports, stamps; return what it found and the edits."""
    scanner = _Scanner(ctx, lines)
    scanner.visit_body(tree.body)
    if _NAMED_CALLS.search(text):
        scanner.named_calls(tree)
    scan = FileScan(
        rel=ctx.rel,
        module=ctx.module,
        parsed=True,
        bindings=tuple(scanner.bindings),
        star_imports=tuple(scanner.star_imports),
        stamped=tuple(scanner.stamped),
        problems=tuple(scanner.problems),
        rewritten=bool(scanner.edits),
        computed=scanner.computed,
    )
    return scan, sorted(scanner.edits, key=lambda e: e.start)
