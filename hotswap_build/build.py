"""The build pipeline: locate, collect, scan and rewrite, analyse, render, compile, pack.

``build()`` is what the CLI calls and what tests call directly. It either returns a
``BuildResult`` or raises one ``BuildError`` listing every problem found; on failure nothing is
left in the output folder.

Design note on speed: every file is read and hashed in this process; a per-file cache (keyed by
the content hash and every option that shapes the result, kept outside the output folder) holds
what the libcst pass and the compiler made of it, so a rebuild after a one-file change redoes
one file. The rest go through ``_process_file``, in this process for small plugins and over
forked worker processes for big ones (the jobs are inherited through fork, not pickled).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hotswap_runtime.artifact import ARTIFACT_SUFFIX, REGISTRATION_MODULE, write_atomically

from . import __version__
from .errors import BuildError
from .scan import (
    FileContext,
    FileScan,
    PluginLayout,
    analyse,
    collect_files,
    is_generated,
    locate_plugin,
)

__all__ = ["BuildResult", "build", "cache_dir"]

logger = logging.getLogger("hotswap.build")

#: below this many files to process, worker processes cost more than they save
PARALLEL_THRESHOLD = 40
STATIC_PLUGIN_PREFIX = "hotswap_static_plugin_"
STATIC_PLUGINS_MODULE = "hotswap_static_plugins.py"


@dataclass(frozen=True)
class BuildResult:
    """What a build made.

    Attributes:
        artifact: the ``.hsp`` written, or None (static linking, ``package=False``).
        name: the plugin name.
        build_id: the artifact's build id, or None when no artifact was made.
        live_funcs: live function name -> dotted module defining it (``foo.jobs``).
        live_types: live type name -> dotted module defining it.
        hooks: the hook functions the plugin provides, sorted.
        import_name: the plugin's real dotted import name.
        generated: every file written (the artifact, static glue, the kept build tree's files).
        tree: the kept temporary build tree (``leave_temps``/``package=False``), else None.
        timings: seconds per stage: scan, rewrite, compile, pack, total.
    """

    artifact: Path | None
    name: str
    build_id: str | None
    live_funcs: Mapping[str, str]
    live_types: Mapping[str, str]
    generated: tuple[Path, ...]
    timings: Mapping[str, float]
    hooks: tuple[str, ...] = ()
    import_name: str = ""
    tree: Path | None = None
    files: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class _Outcome:
    scan: FileScan
    source: bytes
    pyc: bytes | None
    times: tuple[float, float, float]


def cache_dir() -> Path:
    """The per-file cache folder: ``$HOTSWAP_CACHE_DIR``, else ``~/.cache/hotswap/build``."""
    configured = os.environ.get("HOTSWAP_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hotswap" / "build"


def _cache_key(ctx: FileContext, source: bytes) -> str:
    parts = (__version__, sys.implementation.cache_tag, sys.version, ctx.rel, ctx.module,
             ctx.package_depth, ctx.is_root, ctx.layout.name, ctx.layout.import_name,
             ctx.layout.siblings, ctx.live_prefix, ctx.stamps, ctx.optimize)
    digest = hashlib.sha256(repr(parts).encode())
    digest.update(source)
    return digest.hexdigest()


def _cache_load(folder: Path, key: str) -> _Outcome | None:
    try:
        with open(folder / key[:2] / key, "rb") as handle:
            outcome = pickle.load(handle)
    except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError, TypeError,
            ValueError):
        return None
    return outcome if isinstance(outcome, _Outcome) else None


def _cache_store(folder: Path, key: str, outcome: _Outcome) -> None:
    target = folder / key[:2] / key
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    except OSError as exc:  # the cache only speeds things up; a build never fails for it
        logger.debug("cannot write the build cache %s: %s", target, exc)


def _process_file(ctx: FileContext, source: bytes) -> _Outcome:
    """The libcst pass (when the text check asks for it), then the compiler."""
    from .pack import pyc_bytes
    from .rewrite import rewrite_source

    started = time.perf_counter()
    scan, out, rewrite_time = rewrite_source(source, ctx)
    scanned = time.perf_counter()
    pyc = None
    if not scan.problems:
        member = f"{ctx.layout.name}/{ctx.rel}"
        try:
            code = compile(out, member, "exec", dont_inherit=True, optimize=ctx.optimize)
            pyc = pyc_bytes(code, out)
        except SyntaxError as exc:
            message = " ".join(str(exc.msg).split())
            problem = (f'plugin "{ctx.layout.name}": syntax error in '
                       f"{ctx.layout.display(ctx.rel)}:{exc.lineno}: {message}; fix it and "
                       "build again")
            scan = FileScan(scan.rel, scan.module, scan.parsed, scan.bindings, scan.star_imports,
                            scan.stamped, (*scan.problems, problem), scan.rewritten)
        except ValueError as exc:
            problem = (f'plugin "{ctx.layout.name}": {ctx.layout.display(ctx.rel)} cannot be '
                       f"compiled ({exc}); fix the file and build again")
            scan = FileScan(scan.rel, scan.module, scan.parsed, scan.bindings, scan.star_imports,
                            scan.stamped, (*scan.problems, problem), scan.rewritten)
    done = time.perf_counter()
    return _Outcome(scan, out, pyc, (scanned - started - rewrite_time, rewrite_time, done - scanned))


# Jobs handed to forked workers by inheritance: (context, source) pairs
_JOBS: Sequence[tuple[FileContext, bytes]] = ()


def _process_chunk(indexes: range) -> list[_Outcome]:
    return [_process_file(*_JOBS[i]) for i in indexes]


def _workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _run_jobs(jobs: Sequence[tuple[FileContext, bytes]]) -> list[_Outcome]:
    workers = min(_workers(), 8)
    if len(jobs) < PARALLEL_THRESHOLD or workers < 2 or sys.platform == "win32":
        return [_process_file(ctx, source) for ctx, source in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if any(ctx.needs_parse(source.decode("utf-8", "replace")) for ctx, source in jobs):
        import libcst  # noqa: F401  (imported once here, inherited by every forked worker)
    global _JOBS
    _JOBS = jobs
    try:
        step = max(1, -(-len(jobs) // (workers * 4)))
        chunks = [range(i, min(i + step, len(jobs))) for i in range(0, len(jobs), step)]
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            return [outcome for part in pool.map(_process_chunk, chunks) for outcome in part]
    finally:
        _JOBS = ()


def _compile_regex(option: str, pattern: str | re.Pattern[str] | None,
                   problems: list[str]) -> re.Pattern[str] | None:
    if pattern is None or isinstance(pattern, re.Pattern):
        return pattern
    try:
        return re.compile(pattern)
    except re.error as exc:
        problems.append(f'{option} "{pattern}" is not a valid regular expression ({exc}); '
                        "fix the pattern (it is matched with re.search on each file's base name)")
        return None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_options(plugin_dir: Path, output_dir: Path, live_prefix: str,
                   stamps: Mapping[str, str], optimize: int, static_linking: bool, clean: bool,
                   problems: list[str]) -> PluginLayout | None:
    if not live_prefix:
        problems.append("--livePrefix is empty; give a prefix such as live_ (it is matched "
                        "case-insensitively)")
    if optimize not in (0, 1, 2):
        problems.append(f"optimisation level {optimize} is not 0, 1 or 2; pass -O or -OO")
    for name in stamps:
        if not name.isidentifier():
            problems.append(f'-X {name}: "{name}" is not a Python identifier; give the name '
                            "of a module-level str constant")
    if clean and not static_linking:
        problems.append("--clean only works with --staticLinking; add --staticLinking")
    layout, found = locate_plugin(plugin_dir)
    problems.extend(found)
    shown = os.fspath(output_dir)
    if static_linking:
        if not output_dir.is_dir():
            problems.append(f'output folder "{shown}" does not exist or is not a folder; '
                            "create it first (static linking writes into an existing folder)")
        elif layout is not None and _inside(output_dir.resolve(), layout.root):
            problems.append(f'output folder "{shown}" is the plugin folder or inside it; '
                            "write the static glue elsewhere, e.g. beside the plugin")
    elif output_dir.exists() and not output_dir.is_dir():
        problems.append(f'output folder "{shown}" is a file; pass a folder')
    return layout


def build(
    plugin_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    live_prefix: str = "live_",
    stamps: Mapping[str, str] | None = None,
    optimize: int = 0,
    include: str | re.Pattern[str] | None = None,
    exclude: str | re.Pattern[str] | None = None,
    static_linking: bool = False,
    clean: bool = False,
    leave_temps: bool = False,
    package: bool = True,
    verbose: bool = False,
) -> BuildResult:
    """Build the plugin in ``plugin_dir`` into ``output_dir`` (SPEC section 3).

    Args:
        plugin_dir: the plugin folder (a package).
        output_dir: where ``<name>.hsp`` goes (created if missing), or, with
            ``static_linking``, the existing folder that receives the static glue.
        live_prefix: case-insensitive prefix of live functions and types.
        stamps: ``-X`` stamps: module-level str constants of the root package to set.
        optimize: bytecode optimisation level, 0, 1 (``-O``) or 2 (``-OO``).
        include: regex (``re.search`` on base names) of extra files to ship.
        exclude: regex of files to drop from those ``include`` added.
        static_linking: write static-linking glue instead of an artifact.
        clean: with ``static_linking``, remove what static linking generated for the plugin.
        leave_temps: keep the generated build tree in a temporary folder.
        package: False stops after generating the tree (implies ``leave_temps``).
        verbose: log each stage at info level on the ``hotswap.build`` logger.

    Raises:
        BuildError: listing every problem found; nothing was written to ``output_dir``.
    """
    started = time.perf_counter()
    plugin_path, out_path = Path(plugin_dir), Path(output_dir)
    stamps = dict(stamps or {})
    log = logger.info if verbose else logger.debug
    problems: list[str] = []
    include_re = _compile_regex("--include", include, problems)
    exclude_re = _compile_regex("--exclude", exclude, problems)
    layout = _check_options(plugin_path, out_path, live_prefix, stamps, optimize,
                            static_linking, clean, problems)
    if problems or layout is None:
        raise BuildError(problems, plugin=layout.name if layout else None)
    if clean:
        return _clean_static(layout, out_path, started)

    sources, data, found = collect_files(layout, include_re, exclude_re)
    problems.extend(found)
    log("plugin %r (import name %s): %d source files, %d data files", layout.name,
        layout.import_name, len(sources), len(data))
    contents = {rel: (layout.root / rel).read_bytes() for rel in (*sources, *data)}
    contexts = [FileContext.create(layout, rel, live_prefix, stamps, optimize) for rel in sources]

    cache = cache_dir()
    outcomes: dict[str, _Outcome] = {}
    misses: list[tuple[FileContext, bytes]] = []
    keys: dict[str, str] = {}
    for ctx in contexts:
        keys[ctx.rel] = key = _cache_key(ctx, contents[ctx.rel])
        cached = _cache_load(cache, key)
        if cached is None:
            misses.append((ctx, contents[ctx.rel]))
        else:
            outcomes[ctx.rel] = cached
    for (ctx, _), outcome in zip(misses, _run_jobs(misses)):
        outcomes[ctx.rel] = outcome
        if not outcome.scan.problems:
            _cache_store(cache, keys[ctx.rel], outcome)
    log("%d files from the cache, %d processed", len(contexts) - len(misses), len(misses))
    timings = {
        "scan": sum(outcomes[c.rel].times[0] for c, _ in misses),
        "rewrite": sum(outcomes[c.rel].times[1] for c, _ in misses),
        "compile": sum(outcomes[c.rel].times[2] for c, _ in misses),
    }

    scans = [outcomes[rel].scan for rel in sources]
    analysis = analyse(layout, scans, live_prefix, stamps)
    problems.extend(analysis.problems)
    if problems:
        raise BuildError(sorted(set(problems)), plugin=layout.name)

    from .render import registration_module

    registration = registration_module(layout.name, analysis.hooks, analysis.live_funcs,
                                       analysis.live_types).encode("utf-8")
    result = dict(
        name=layout.name,
        live_funcs=dict(analysis.live_funcs),
        live_types=dict(analysis.live_types),
        hooks=tuple(sorted(analysis.hooks)),
        import_name=layout.import_name,
    )
    pack_started = time.perf_counter()
    if static_linking:
        generated = _write_static(layout, out_path, registration)
        timings["pack"] = time.perf_counter() - pack_started
        timings["total"] = time.perf_counter() - started
        return BuildResult(artifact=None, build_id=None, generated=generated, timings=timings,
                           files=tuple(sources), **result)

    from .pack import build_id as compute_build_id
    from .pack import git_commit, make_manifest, pyc_bytes, pyc_path, write_artifact

    name = layout.name
    members: dict[str, bytes] = {}
    for rel in sources:
        outcome = outcomes[rel]
        members[f"{name}/{rel}"] = outcome.source
        assert outcome.pyc is not None
        members[pyc_path(f"{name}/{rel}", optimize)] = outcome.pyc
    for rel in data:
        members[f"{name}/{rel}"] = contents[rel]
    reg_member = f"{name}/{REGISTRATION_MODULE}.py"
    members[reg_member] = registration
    code = compile(registration, reg_member, "exec", dont_inherit=True, optimize=optimize)
    members[pyc_path(reg_member, optimize)] = pyc_bytes(code, registration)
    the_id = compute_build_id(((rel, contents[rel]) for rel in (*sources, *data)), live_prefix,
                              stamps, optimize)
    manifest = make_manifest(
        name=name, build_id_=the_id, live_prefix=live_prefix,
        live_funcs=analysis.live_funcs, live_types=analysis.live_types, hooks=analysis.hooks,
        optimize=optimize, import_name=layout.import_name, stamps=stamps,
        git=git_commit(layout.root),
    )
    generated: list[Path] = []
    tree = None
    if leave_temps or not package:
        tree = Path(tempfile.mkdtemp(prefix=f"hotswap-build-{name}-"))
        for member, body in sorted(members.items()):
            target = tree / member
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
        (tree / "MANIFEST.json").write_bytes(manifest.to_json())
        generated.append(tree / reg_member)
        log("build tree kept at %s", tree)
    artifact = None
    if package:
        artifact = out_path / f"{name}{ARTIFACT_SUFFIX}"
        created = not out_path.exists()
        out_path.mkdir(parents=True, exist_ok=True)
        try:
            write_artifact(artifact, name, members, manifest)
        except BaseException:
            if created:
                shutil.rmtree(out_path, ignore_errors=True)
            raise
        generated.append(artifact)
        log("wrote %s (build id %s)", artifact, the_id)
    timings["pack"] = time.perf_counter() - pack_started
    timings["total"] = time.perf_counter() - started
    return BuildResult(artifact=artifact, build_id=the_id if package else None,
                       generated=tuple(generated), timings=timings, tree=tree,
                       files=tuple(sources), **result)


def _static_names(out_path: Path) -> list[str]:
    names = []
    for path in sorted(out_path.glob(f"{STATIC_PLUGIN_PREFIX}*.py")):
        if is_generated(path):
            names.append(path.stem[len(STATIC_PLUGIN_PREFIX):])
    return names


def _write_static(layout: PluginLayout, out_path: Path, registration: bytes) -> tuple[Path, ...]:
    """Write the registration module, the plugin's glue module and the aggregate module."""
    from .render import static_plugin_module, static_plugins_module

    reg_path = layout.root / f"{REGISTRATION_MODULE}.py"
    glue_path = out_path / f"{STATIC_PLUGIN_PREFIX}{layout.name}.py"
    all_path = out_path / STATIC_PLUGINS_MODULE
    glue = static_plugin_module(layout.name, layout.import_name).encode("utf-8")
    names = sorted({*_static_names(out_path), layout.name})
    aggregate = static_plugins_module(names).encode("utf-8")
    written: list[tuple[Path, bytes | None]] = []
    try:
        for path, body in ((reg_path, registration), (glue_path, glue), (all_path, aggregate)):
            written.append((path, path.read_bytes() if path.exists() else None))
            write_atomically(path, body)
    except BaseException:
        for path, previous in reversed(written):  # put back what was there before
            if previous is None:
                path.unlink(missing_ok=True)
            else:
                write_atomically(path, previous)
        raise
    return (reg_path, glue_path, all_path)


def _clean_static(layout: PluginLayout, out_path: Path, started: float) -> BuildResult:
    """Remove what static linking generated for the plugin; regenerate the aggregate."""
    from .render import static_plugins_module

    removed: list[Path] = []
    reg_path = layout.root / f"{REGISTRATION_MODULE}.py"
    if reg_path.exists() and is_generated(reg_path):
        reg_path.unlink()
        removed.append(reg_path)
    glue_path = out_path / f"{STATIC_PLUGIN_PREFIX}{layout.name}.py"
    if glue_path.exists() and is_generated(glue_path):
        glue_path.unlink()
        removed.append(glue_path)
    all_path = out_path / STATIC_PLUGINS_MODULE
    names = _static_names(out_path)
    generated: tuple[Path, ...] = ()
    if names:
        write_atomically(all_path, static_plugins_module(names).encode("utf-8"))
        generated = (all_path,)
    elif all_path.exists() and is_generated(all_path):
        all_path.unlink()
        removed.append(all_path)
    return BuildResult(artifact=None, name=layout.name, build_id=None, live_funcs={},
                       live_types={}, generated=generated, import_name=layout.import_name,
                       timings={"total": time.perf_counter() - started},
                       files=tuple(os.fspath(p) for p in removed))
