"""The one libcst pass per file: record live names and hooks, rewrite own imports, stamp ``-X``.

Design note: libcst is precise but slow (a full-tree visitor costs many times a compile), so
the pass descends only through statements, never into expressions: ``on_visit`` lets it into
modules, blocks and compound statements, and stops at every small statement after looking at
it. Module-level definitions are recorded while no ``def``/``class`` encloses the walk; imports
are checked and rewritten at any depth (lazy imports inside functions too). Positions cost a
second full walk, so the pass runs without them and runs again with ``PositionProvider`` only
when it found a problem to report; lines of live definitions come from a column-0 text match,
which is exact for module-level ``def`` and ``class``.
"""

from __future__ import annotations

import importlib.util
import re
import time
from typing import Any

from .scan import ALL_HOOKS, Binding, FileContext, FileScan, Params

__all__ = ["rewrite_source"]


def _dotted(name: str) -> Any:
    import libcst as cst

    node: Any = None
    for part in name.split("."):
        node = cst.Name(part) if node is None else cst.Attribute(value=node, attr=cst.Name(part))
    return node


def _name_of(node: Any) -> str:
    import libcst as cst

    if node is None:
        return ""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_name_of(node.value)}.{node.attr.value}"
    return ""


def _params(node: Any) -> Params:
    import libcst as cst

    positional = [*node.posonly_params, *node.params]
    return Params(
        positional=len(positional),
        required=sum(1 for p in positional if p.default is None),
        varargs=isinstance(node.star_arg, cst.Param),
        required_kwonly=tuple(p.name.value for p in node.kwonly_params if p.default is None),
    )


def _build_pass(ctx: FileContext, positions: bool) -> Any:
    """Make the transformer (a factory, so libcst is imported only when a file needs it)."""
    import libcst as cst
    from libcst.metadata import PositionProvider

    descend = (cst.Module, cst.IndentedBlock, cst.SimpleStatementSuite, cst.SimpleStatementLine,
               cst.Else, cst.ExceptHandler, cst.ExceptStarHandler, cst.Finally, cst.MatchCase)
    layout = ctx.layout
    own = layout.import_name
    own_parent, _, own_last = own.rpartition(".")
    stamps = dict(ctx.stamps) if ctx.is_root else {}
    prefix = ctx.live_prefix.lower()
    # the artifact-side dotted name of this file's package, e.g. ["foo", "sub"]
    package = ctx.module.split(".") if ctx.rel.endswith("__init__.py") else ctx.module.split(".")[:-1]
    dots = ctx.package_depth + 1
    where = layout.display(ctx.rel)
    plugin = f'plugin "{layout.name}"'
    blank = cst.Module([])

    def sibling_of(module: str) -> str | None:
        for sibling in layout.siblings:
            if module == sibling or module.startswith(sibling + "."):
                return sibling
        return None

    class Pass(cst.CSTTransformer):
        METADATA_DEPENDENCIES = (PositionProvider,) if positions else ()

        def __init__(self) -> None:
            super().__init__()
            self.scope = 0
            self.blocks = 0
            self.bindings: list[Binding] = []
            self.star_imports: list[str] = []
            self.stamped: list[str] = []
            self.problems: list[str] = []
            self.changed = False

        def line(self, node: Any) -> int:
            if not positions:
                return 0
            return self.get_metadata(PositionProvider, node).start.line

        def problem(self, node: Any, text: str) -> None:
            self.problems.append(text.replace("{where}", f"{where}:{self.line(node)}"))

        def watched(self, name: str) -> bool:
            return name.lower().startswith(prefix) or name in ALL_HOOKS

        def bind(self, node: Any, name: str, kind: str, origin: tuple[str, str] | None = None,
                 params: Params | None = None) -> None:
            if self.scope or not self.watched(name):
                return
            live = name.lower().startswith(prefix) and not self.blocks
            if live and kind == "assignment":
                self.problem(node, f'{plugin}: live name "{name}" in {{where}} is assigned, not '
                             "defined by a def or class of the plugin; define it with def or "
                             f'class, or drop the "{ctx.live_prefix}" prefix')
            elif live and kind == "external import":
                self.problem(node, f'{plugin}: live name "{name}" in {{where}} is imported from '
                             f'"{origin[0] if origin else ""}", outside the plugin; live '
                             "functions and types must be defined by a def or class of the "
                             f'plugin, so import it under a name without the '
                             f'"{ctx.live_prefix}" prefix')
            self.bindings.append(Binding(name, kind, self.line(node), params, origin,
                                         conditional=self.blocks > 0))

        # --- walking --------------------------------------------------------------------

        def on_visit(self, node: Any) -> bool:
            if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
                if isinstance(node, cst.FunctionDef):
                    params = None if node.decorators else _params(node.params)
                    self.bind(node, node.name.value, "function", params=params)
                else:
                    self.bind(node, node.name.value, "class")
                self.scope += 1
                return True
            if isinstance(node, cst.BaseCompoundStatement):
                self.blocks += 1
                return True
            return isinstance(node, descend)

        def on_leave(self, original: Any, updated: Any) -> Any:
            if isinstance(original, (cst.FunctionDef, cst.ClassDef)):
                self.scope -= 1
            elif isinstance(original, cst.BaseCompoundStatement):
                self.blocks -= 1
            elif isinstance(original, cst.ImportFrom):
                return self.import_from(original)
            elif isinstance(original, cst.Import):
                return self.import_(original)
            elif isinstance(original, (cst.Assign, cst.AnnAssign, cst.AugAssign)) and not self.scope:
                return self.assign(original)
            elif isinstance(original, cst.TypeAlias) and not self.scope:
                self.bind(original, original.name.value, "assignment")
            return updated

        # --- assignments and stamps -----------------------------------------------------

        def assign(self, node: Any) -> Any:
            targets: list[Any] = []
            if isinstance(node, cst.Assign):
                for target in node.targets:
                    value = target.target
                    targets.extend(e.value for e in value.elements) \
                        if isinstance(value, (cst.Tuple, cst.List)) else targets.append(value)
            elif not (isinstance(node, cst.AnnAssign) and node.value is None):
                targets.append(node.target)
            names = [t.value for t in targets if isinstance(t, cst.Name)]
            for name in names:
                self.bind(node, name, "assignment")
            if (not stamps or self.blocks or isinstance(node, cst.AugAssign)
                    or len(targets) != 1 or not names or names[0] not in stamps):
                return node
            name = names[0]
            self.stamped.append(name)
            value = node.value
            if not (isinstance(value, cst.SimpleString) and "b" not in value.prefix.lower()):
                self.problem(node, f"{plugin}: -X {name}: {name} in {{where}} is not a str "
                             f'constant; assign it a string literal ({name} = "...") or drop '
                             f"-X {name}")
                return node
            self.changed = True
            return node.with_changes(value=cst.SimpleString(repr(stamps[name])))

        # --- imports --------------------------------------------------------------------

        def code(self, node: Any) -> str:
            return " ".join(blank.code_for_node(node).split())

        def internal(self, level: int, module: str) -> str:
            base = package[: len(package) - (level - 1)]
            return ".".join([*base, *([module] if module else [])])

        def import_from(self, node: Any) -> Any:
            level = len(node.relative)
            module = _name_of(node.module)
            names = node.names if not isinstance(node.names, cst.ImportStar) else None
            if level:
                if level > dots:
                    self.problem(node, f'{plugin}: "{self.code(node)}" in {{where}} reaches '
                                 "above the plugin's root package; import host-side modules "
                                 "absolutely, and other plugins through import_()")
                    return node
                target = self.internal(level, module)
                result = node
            elif module == own or module.startswith(own + "."):
                rest = module[len(own) + 1:]
                target = ".".join(filter(None, [layout.name, rest]))
                self.changed = True
                result = node.with_changes(relative=[cst.Dot()] * dots,
                                           module=_dotted(rest) if rest else None)
            else:
                sibling = sibling_of(module)
                if sibling:
                    self.sibling(node, sibling)
                    return node
                if own_parent and module == own_parent and names is not None:
                    for alias in names:
                        imported = _name_of(alias.name)
                        if imported == own_last:
                            self.own_root(node)
                        elif f"{own_parent}.{imported}" in layout.siblings:
                            self.sibling(node, f"{own_parent}.{imported}")
                for alias in names or ():
                    bound = _name_of(alias.asname.name) if alias.asname else _name_of(alias.name)
                    self.bind(node, bound, "external import", origin=(module, _name_of(alias.name)))
                return node
            if names is None:
                if not self.scope and not self.blocks:
                    self.star_imports.append(target)
            else:
                for alias in names:
                    bound = _name_of(alias.asname.name) if alias.asname else _name_of(alias.name)
                    self.bind(node, bound, "import", origin=(target, _name_of(alias.name)))
            return result

        def sibling(self, node: Any, sibling: str) -> None:
            self.problem(node, f'{plugin}: {{where}} imports "{sibling}", the package of plugin '
                         f'"{sibling.rpartition(".")[2]}"; a plugin never imports another '
                         "plugin's package: share types through a host-side module and reach "
                         "other plugins through export() and import_()")

        def own_root(self, node: Any) -> None:
            self.problem(node, f'{plugin}: "{self.code(node)}" in {{where}} imports the '
                         "plugin's own root package by name, which cannot be made relative; "
                         f'import what you need with "from {"." * dots} import name"')

        def import_(self, node: Any) -> Any:
            keep: list[Any] = []
            new: list[Any] = []
            for alias in node.names:
                name = _name_of(alias.name)
                if name == own:
                    self.own_root(node)
                    keep.append(alias)
                elif name.startswith(own + "."):
                    parent, _, last = name[len(own) + 1:].rpartition(".")
                    relative = "." * dots + parent
                    if alias.asname is None:
                        top = own.split(".")[0]
                        self.problem(node, f'{plugin}: "{self.code(node)}" in {{where}} cannot be '
                                     f'made relative: it binds the name "{top}"; write '
                                     f'"from {relative} import {last}" (or "import {name} as '
                                     f'{last}") and use {last}.… instead')
                        keep.append(alias)
                        continue
                    bound = _name_of(alias.asname.name)
                    self.bind(node, bound, "import",
                              origin=(".".join(filter(None, [layout.name, parent])), last))
                    new.append(cst.ImportFrom(
                        module=_dotted(parent) if parent else None,
                        relative=[cst.Dot()] * dots,
                        names=[cst.ImportAlias(name=cst.Name(last), asname=alias.asname)],
                    ))
                else:
                    sibling = sibling_of(name)
                    if sibling:
                        self.sibling(node, sibling)
                    bound = _name_of(alias.asname.name) if alias.asname else name.split(".")[0]
                    self.bind(node, bound, "external import", origin=(name, ""))
                    keep.append(alias)
            if not new:
                return node
            self.changed = True
            statements = []
            if keep:
                keep[-1] = keep[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
                statements.append(node.with_changes(names=keep))
            statements.extend(new)
            return statements[0] if len(statements) == 1 else cst.FlattenSentinel(statements)

    return Pass()


_LAZY = re.compile(r"\bimport_module\s*\(")


def _lazy_pass(ctx: FileContext, positions: bool) -> Any:
    """Rewrite ``importlib.import_module("<own>.x")`` into ``import_module("..x", __package__)``.

    A full-tree walk, so it runs only on files whose text calls ``import_module``.
    """
    import libcst as cst
    from libcst.metadata import PositionProvider

    own = ctx.layout.import_name
    dots = "." * (ctx.package_depth + 1)
    where = ctx.layout.display(ctx.rel)

    class LazyImports(cst.CSTTransformer):
        METADATA_DEPENDENCIES = (PositionProvider,) if positions else ()

        def __init__(self) -> None:
            super().__init__()
            self.problems: list[str] = []
            self.changed = False

        def leave_Call(self, original: Any, updated: Any) -> Any:
            func = updated.func
            name = func.attr.value if isinstance(func, cst.Attribute) else (
                func.value if isinstance(func, cst.Name) else "")
            if name != "import_module" or not updated.args:
                return updated
            first = updated.args[0].value
            if isinstance(first, cst.SimpleString) and "b" not in first.prefix.lower():
                target = first.evaluated_value
                if target != own and not target.startswith(own + "."):
                    return updated
                if len(updated.args) > 1:
                    return updated  # an explicit package: the caller chose the anchor
                self.changed = True
                relative = dots + target[len(own) + 1:] if target != own else dots
                return updated.with_changes(args=[
                    cst.Arg(cst.SimpleString(repr(relative)),
                            comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))),
                    cst.Arg(cst.Name("__package__")),
                ])
            head = first
            while isinstance(head, (cst.ConcatenatedString, cst.BinaryOperation)):
                head = head.left
            text = ""
            if isinstance(head, cst.SimpleString):
                text = head.evaluated_value if isinstance(head.evaluated_value, str) else ""
            elif isinstance(head, cst.FormattedString) and head.parts and isinstance(
                    head.parts[0], cst.FormattedStringText):
                text = head.parts[0].value
            if text == own or text.startswith(own + "."):
                line = self.get_metadata(PositionProvider, original).start.line if positions else 0
                self.problems.append(
                    f'plugin "{ctx.layout.name}": import_module() in {where}:{line} builds a name '
                    f'inside the plugin\'s own package "{own}", which cannot be made relative; '
                    f'pass a relative name and the package: import_module("{dots}" + name, '
                    "__package__)")
            return updated

    return LazyImports()


def _def_line(text: str, binding: Binding) -> int:
    indent = r"[ \t]*" if binding.conditional else ""
    keyword = r"(?:async[ \t]+)?def" if binding.kind == "function" else "class"
    match = re.search(rf"^{indent}{keyword}[ \t]+{re.escape(binding.name)}\b", text, re.M)
    return text.count("\n", 0, match.start()) + 1 if match else 0


def rewrite_source(source: bytes, ctx: FileContext) -> tuple[FileScan, bytes, float]:
    """Run the pass over one file: return what it found, the (maybe rewritten) source, and the
    seconds spent generating the rewritten code.

    Files the text check clears are returned untouched without parsing.
    """
    text = importlib.util.decode_source(source)
    if not ctx.needs_parse(text):
        return FileScan(ctx.rel, ctx.module, parsed=False), source, 0.0
    import libcst as cst

    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        # CPython's own message is the one users know; libcst's is the fallback for the rare
        # source CPython accepts and libcst does not
        line, message = exc.raw_line, " ".join(str(exc.message).split())
        try:
            compile(source, ctx.rel, "exec", dont_inherit=True)
        except SyntaxError as error:
            line, message = error.lineno or line, " ".join(str(error.msg).split())
        problem = (f'plugin "{ctx.layout.name}": syntax error in '
                   f"{ctx.layout.display(ctx.rel)}:{line}: {message}; fix it and build again")
        return FileScan(ctx.rel, ctx.module, parsed=True, problems=(problem,)), source, 0.0
    visitor = _build_pass(ctx, positions=False)
    updated = module.visit(visitor)
    if visitor.problems:
        from libcst.metadata import MetadataWrapper

        visitor = _build_pass(ctx, positions=True)
        updated = MetadataWrapper(module, unsafe_skip_copy=True).visit(visitor)
    if _LAZY.search(text) and ctx.layout.import_name.split(".")[0] in text:
        lazy = _lazy_pass(ctx, positions=False)
        rewritten = updated.visit(lazy)
        if lazy.problems:
            from libcst.metadata import MetadataWrapper

            lazy = _lazy_pass(ctx, positions=True)
            rewritten = MetadataWrapper(updated, unsafe_skip_copy=True).visit(lazy)
        if lazy.changed:
            updated = rewritten
            visitor.changed = True
        visitor.problems.extend(lazy.problems)
    bindings = tuple(
        b if b.line or b.kind not in ("function", "class")
        else Binding(b.name, b.kind, _def_line(text, b), b.params, b.origin, b.conditional)
        for b in visitor.bindings
    )
    scan = FileScan(
        rel=ctx.rel,
        module=ctx.module,
        parsed=True,
        bindings=bindings,
        star_imports=tuple(visitor.star_imports),
        stamped=tuple(visitor.stamped),
        problems=tuple(visitor.problems),
        rewritten=visitor.changed,
    )
    if not visitor.changed:
        return scan, source, 0.0
    started = time.perf_counter()
    out = updated.bytes
    return scan, out, time.perf_counter() - started
