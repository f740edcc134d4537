"""Rewrite one file: own absolute imports become relative, ``-X`` stamps are applied.

Design note: libcst keeps every comment and space of what it rewrites, but it is slow (a full
parse and visit costs many times a compile, and importing it costs a quarter of a second). So
the file is scanned with CPython's own parser (``scan.scan_tree``: exact lines, module level and
imports only), and libcst parses only the import statements that must change, one statement at
a time; stamps and ``import_module`` arguments are exact ``ast`` spans replaced as text.
Rewritten statements are cached by their text (``cache_dir``), so a rebuild after an edit that
keeps a file's imports does not even import libcst.

Design note on computed imports (``importlib.import_module("docutils.writers." + name)``,
pygments' ``__import__(module_name, None, None, ["__all__"])``, ``importlib.util.find_spec``):
no rewrite at build time can know the name, so the call is pointed at a function that maps it at
run time. The callee alone is replaced (every argument keeps its text, and every line its
number) by ``__import__('importlib').import_module('<dots>_hotswap_imports', __package__).<fn>``:
``_hotswap_imports`` is a module generated into the artifact (``templates/computed_imports.py.j2``)
only when some call needs it. It knows the plugin's real import name from the build and its
mounted name from its own ``__package__``, so it maps ``pygments.lexers.python`` to
``_hotswap_pygments_3.lexers.python`` and passes every other name to the standard library as is.
Why a generated module rather than a global the loader sets on every module or a function of
``hotswap_runtime``: modules that never compute an import pay nothing (no extra global, no
import); the artifact stays self-contained, so it behaves the same under any runtime that can
mount it and when its build tree (``--leaveTemps``) is imported under the real name; and the
plugin never reaches into the host's ``hotswap_runtime`` internals. A call costs one cached
relative import (about a microsecond) on top of the import it makes.
"""

from __future__ import annotations

import ast
import hashlib
import io
import re
import time
import tokenize
from pathlib import Path
from typing import Any, cast

from .cache import CACHE_FORMAT, read_entry, write_entry
from .scan import LOAD, Edit, FileContext, FileScan, scan_tree

__all__ = ["compile_problem", "relative_import", "rewrite_source"]

_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def _dotted(name: str) -> Any:
    import libcst as cst

    node: Any = None
    for part in name.split("."):
        node = cst.Name(part) if node is None else cst.Attribute(value=node, attr=cst.Name(part))
    return node


def _name_of(node: Any) -> str:
    import libcst as cst

    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_name_of(node.value)}.{node.attr.value}"
    return ""


def relative_import(statement: str, dots: int, own: str) -> str:
    """Rewrite one import statement of the plugin's own package ``own`` into relative form.

    ``dots`` is the relative level that reaches the plugin's root package from the file.
    ``import own.a.b as c`` becomes ``from .a import b as c``; ``from own.a import x`` becomes
    ``from .a import x``; other names in the same ``import`` stay, joined with ``;``. When the
    real import name is one identifier, ``import own``, ``import own as m`` and ``import own.a``
    bind the mounted root package (after importing ``.a``) through ``importlib.import_module``.
    The scan has already refused the forms that cannot be rewritten.
    """
    import libcst as cst

    line = cst.parse_statement(statement)
    assert isinstance(line, cst.SimpleStatementLine) and len(line.body) == 1, statement
    node = line.body[0]
    blank = cst.Module([])
    if isinstance(node, cst.ImportFrom):
        rest = _name_of(node.module)[len(own) + 1:]
        new = node.with_changes(relative=[cst.Dot()] * dots,
                                module=_dotted(rest) if rest else None)
        return blank.code_for_node(new)
    assert isinstance(node, cst.Import), statement
    keep: list[Any] = []
    made: list[str] = []
    for alias in node.names:
        name = _name_of(alias.name)
        asname = _name_of(alias.asname.name) if alias.asname is not None else None
        if name.startswith(own + ".") and asname is not None:
            parent, _, last = name[len(own) + 1:].rpartition(".")
            made.append(blank.code_for_node(cst.ImportFrom(
                module=_dotted(parent) if parent else None,
                relative=[cst.Dot()] * dots,
                names=[cst.ImportAlias(name=cst.Name(last), asname=alias.asname)],
            )))
        elif name == own or name.startswith(own + "."):
            # a one-identifier real name (the scan refused the others): the name bound is the
            # root package, so bind the mounted one, importing the submodule first
            assert "." not in own, statement
            rest = name[len(own) + 1:]
            if rest:
                made.append(LOAD.format("." * dots + rest))
            made.append(f"{asname or own} = {LOAD.format('.' * dots)}")
        else:
            keep.append(alias)
    parts = []
    if keep:
        keep[-1] = keep[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        parts.append(blank.code_for_node(node.with_changes(names=keep)))
    parts.extend(made)
    return "; ".join(parts)


def _cached_relative_import(statement: str, dots: int, own: str, cache: Path | None) -> str:
    if cache is None:
        return relative_import(statement, dots, own)
    key = hashlib.sha256(f"{CACHE_FORMAT}\0{own}\0{dots}\0{statement}".encode()).hexdigest()
    path = cache / "statements" / key[:2] / key
    cached = read_entry(path)
    if cached is not None:
        return cached.decode("utf-8")
    result = relative_import(statement, dots, own)
    write_entry(path, result.encode("utf-8"))
    return result


def _apply(lines: list[str], edits: list[Edit], ctx: FileContext, cache: Path | None) -> str:
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    text = "".join(lines)
    own = ctx.layout.import_name
    for edit in reversed(edits):
        begin = starts[edit.start[0] - 1] + edit.start[1]
        end = starts[edit.end[0] - 1] + edit.end[1]
        if edit.kind == "import":
            replacement = _cached_relative_import(edit.text, ctx.package_depth + 1, own, cache)
        else:
            replacement = edit.text
        text = text[:begin] + replacement + text[end:]
    return text


def _decode(source: bytes) -> tuple[str, str]:
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(source).readline)
    except SyntaxError:
        encoding = "utf-8"
    return encoding, source.decode(encoding, "replace")


def compile_problem(ctx: FileContext, exc: SyntaxError | ValueError) -> str:
    """The build problem for a file that ``compile`` refused: file:line when there is a line."""
    display = ctx.layout.display(ctx.rel)
    if isinstance(exc, SyntaxError):
        message = " ".join(str(exc.msg).split())
        # a null byte, for one, is a SyntaxError without a line
        where = display if exc.lineno is None else f"{display}:{exc.lineno}"
        return (f'plugin "{ctx.layout.name}": syntax error in {where}: {message}; fix it and '
                "build again")
    return (f'plugin "{ctx.layout.name}": {display} cannot be compiled ({exc}); fix the file and '
            "build again")


def rewrite_source(source: bytes, ctx: FileContext, cache: Path | None = None
                   ) -> tuple[FileScan, bytes, float]:
    """Scan one file and rewrite it where needed.

    Returns what the scan found, the source to ship (the original bytes when nothing changed),
    and the seconds spent rewriting. Files the cheap text check clears are not parsed at all.
    ``cache`` is the folder of the statement cache, or None for none.
    """
    encoding, text = _decode(source)
    if not ctx.needs_parse(text):
        return FileScan(ctx.rel, ctx.module, parsed=False), source, 0.0
    display = ctx.layout.display(ctx.rel)
    try:
        tree = cast(ast.Module, compile(source, display, "exec", ast.PyCF_ONLY_AST,
                                        dont_inherit=True))
    except (SyntaxError, ValueError) as exc:
        problem = compile_problem(ctx, exc)
        return FileScan(ctx.rel, ctx.module, parsed=True, problems=(problem,), broken=True), \
            source, 0.0
    lines = _LINES.findall(text)
    scan, edits = scan_tree(tree, text, lines, ctx)
    if not edits or scan.problems:
        return scan, source, 0.0
    started = time.perf_counter()
    out = _apply(lines, edits, ctx, cache).encode(encoding.removesuffix("-sig"))
    if encoding == "utf-8-sig":
        out = b"\xef\xbb\xbf" + out
    return scan, out, time.perf_counter() - started
