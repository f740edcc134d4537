"""The build pipeline: locate, collect, scan and rewrite, analyse, render, compile, pack.

``build()`` is what the CLI calls and what tests call directly. It either returns a
``BuildResult`` or raises one ``BuildError`` listing every problem found; on failure nothing is
left in the output folder.

Design note on speed: every file is read and hashed in this process; a per-file cache (keyed by
the content hash and every option that shapes the result, kept outside the output folder) holds
what the scan, the rewrite and the compiler made of it, so a rebuild after a one-file change redoes
one file. The rest go through ``_process_file``, in this process for small plugins and over
forked worker processes for big ones (the jobs are inherited through fork, not pickled).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from hotswap_runtime.artifact import (
    ARTIFACT_SUFFIX,
    REGISTRATION_MODULE,
    Manifest,
    deflate,
    sweep_temporaries,
)

from . import __version__
from .cache import cache_dir, file_key, index_path, load_index, read_entry, store_index, write_entry
from .check import analyse
from .errors import BuildError
from .layout import COMPUTED_IMPORTS_MODULE, PluginLayout, collect_files, locate_plugin
from .scan import FileContext, FileScan

if TYPE_CHECKING:
    from hotswap_runtime.signing import SigningKey

__all__ = ["BuildResult", "build", "cache_dir"]

logger = logging.getLogger("hotswap.build")

#: below this many files to process, worker processes cost more than they save
PARALLEL_THRESHOLD = 40


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
        files: the source files built, relative to the plugin folder.
        cached: how many of them came from the per-file cache.
        removed: what ``clean`` removed.
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
    cached: int = 0
    removed: tuple[Path, ...] = ()


@dataclass(frozen=True)
class _Outcome:
    scan: FileScan
    source: bytes
    pyc: bytes | None
    times: tuple[float, float, float]
    # source and pyc as the artifact stores them (deflated at ``level``), cached with the rest
    # so a rebuild does not compress every member again
    deflated: tuple[int, bytes, bytes] | None = None


def _render_cached(cache: Path, template: str, values: tuple[object, ...], render: Callable[[], str]
                   ) -> bytes:
    """A generated module, from the cache when the same template was rendered with the same
    values before (so a rebuild does not even import jinja2)."""
    from .render import templates_dir

    text = (templates_dir() / template).read_bytes()
    key = hashlib.sha256(repr((__version__, template, text, values)).encode()).hexdigest()
    path = cache / "render" / key[:2] / key
    cached = read_entry(path)
    if cached is not None:
        return cached
    rendered = render().encode("utf-8")
    write_entry(path, rendered)
    return rendered


def _render_registration(cache: Path, name: str, hooks: Sequence[str],
                         live_funcs: Mapping[str, str], live_types: Mapping[str, str]) -> bytes:
    """The registration module (rendered once per set of names)."""
    from .render import registration_module

    return _render_cached(
        cache, "registration.py.j2",
        (name, sorted(hooks), sorted(live_funcs.items()), sorted(live_types.items())),
        lambda: registration_module(name, hooks, live_funcs, live_types))


def _render_computed_imports(cache: Path, layout: PluginLayout) -> bytes:
    """The ``_hotswap_imports`` module the rewritten computed imports call."""
    from .render import computed_imports_module

    return _render_cached(cache, "computed_imports.py.j2", (layout.name, layout.import_name),
                          lambda: computed_imports_module(layout.name, layout.import_name))


def _process_file(ctx: FileContext, source: bytes, statement_cache: Path | None = None
                  ) -> _Outcome:
    """Scan and rewrite one file (when the text check asks for it), then compile and deflate it.

    ``statement_cache``: the build cache folder, where rewritten statements are kept."""
    from .pack import COMPRESS_LEVEL, pyc_bytes
    from .rewrite import compile_problem, rewrite_source

    started = time.perf_counter()
    scan, out, rewrite_time = rewrite_source(source, ctx, statement_cache)
    scanned = time.perf_counter()
    pyc = None
    if not scan.problems:
        member = f"{ctx.layout.name}/{ctx.rel}"
        try:
            code = compile(out, member, "exec", dont_inherit=True, optimize=ctx.optimize)
            pyc = pyc_bytes(code, out)
        except (SyntaxError, ValueError) as exc:
            problem = compile_problem(ctx, exc)
            scan = replace(scan, problems=(*scan.problems, problem), broken=True)
    done = time.perf_counter()
    times = (scanned - started - rewrite_time, rewrite_time, done - scanned)
    deflated = None
    if pyc is not None:
        deflated = (COMPRESS_LEVEL, deflate(out, COMPRESS_LEVEL), deflate(pyc, COMPRESS_LEVEL))
    return _Outcome(scan, out, pyc, times, deflated)


def _process_chunk(jobs: Sequence[tuple[FileContext, bytes]], statement_cache: Path | None
                   ) -> list[_Outcome]:
    """A worker's share of the files: its (context, source) pairs arrive as its arguments."""
    return [_process_file(ctx, source, statement_cache) for ctx, source in jobs]


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the main process, which stops them and cleans up."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _run_jobs(jobs: Sequence[tuple[FileContext, bytes]], statement_cache: Path | None
              ) -> list[_Outcome]:
    workers = min(_workers(), 8)
    # forking a process that runs other threads can deadlock the children (a lock held by a
    # thread that does not exist there); a host that builds in-process gets the serial path
    if (len(jobs) < PARALLEL_THRESHOLD or workers < 2 or sys.platform == "win32"
            or threading.active_count() > 1):
        return [_process_file(ctx, source, statement_cache) for ctx, source in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    step = max(1, -(-len(jobs) // (workers * 4)))
    chunks = [jobs[i:i + step] for i in range(0, len(jobs), step)]
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                               initializer=_ignore_interrupts)
    try:
        return [outcome for part in pool.map(_process_chunk, chunks,
                                             [statement_cache] * len(chunks))
                for outcome in part]
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)


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
                   stamps: Mapping[str, str], optimize: int,
                   include: str | re.Pattern[str] | None, exclude: str | re.Pattern[str] | None,
                   static_linking: bool, clean: bool, flag_problems: Sequence[str]
                   ) -> tuple[PluginLayout, re.Pattern[str] | None, re.Pattern[str] | None]:
    """Check every option and the plugin folder; raise once with every problem (the caller's
    ``flag_problems`` first)."""
    problems: list[str] = []
    include_re = _compile_regex("--include", include, problems)
    exclude_re = _compile_regex("--exclude", exclude, problems)
    if not live_prefix:
        problems.append("--livePrefix is empty; give a prefix such as live_ (it is matched "
                        "case-insensitively)")
    elif not f"{live_prefix}x".isidentifier():
        # no def or class name can start with it: the build would find nothing live, silently
        problems.append(f'--livePrefix "{live_prefix}" cannot start a Python name, so nothing '
                        "would be live; give letters, digits and _ not starting with a digit, "
                        "such as live_")
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
        elif layout is not None and _inside(output_dir.resolve(), layout.root.resolve()):
            problems.append(f'output folder "{shown}" is the plugin folder or inside it; '
                            "write the static glue elsewhere, e.g. beside the plugin")
    elif output_dir.exists() and not output_dir.is_dir():
        problems.append(f'output folder "{shown}" is a file; pass a folder')
    elif not output_dir.exists():
        blocker = next((p for p in output_dir.parents if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            problems.append(f'output folder "{shown}" cannot be created: "{os.fspath(blocker)}" '
                            "is a file; pass a folder whose parents are folders")
    if problems or layout is None or (clean and flag_problems):
        raise BuildError([*flag_problems, *problems], plugin=layout.name if layout else None)
    return layout, include_re, exclude_re


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
    flag_problems: Sequence[str] = (),
    sign: str | os.PathLike[str] | None = None,
) -> BuildResult:
    """Build the plugin in ``plugin_dir`` into ``output_dir`` (README "Building").

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
        flag_problems: problems the caller found in its own arguments (the CLI's bad build
            flags); the build goes on to find its other problems, then fails with all of them,
            these first.
        sign: a private key file (``hotswap keygen``): add a ``SIGNATURE`` member by it.

    Raises:
        BuildError: listing every problem found; nothing was written to ``output_dir``.
    """
    started = time.perf_counter()
    out_path = Path(output_dir)
    stamps = dict(stamps or {})
    log = logger.info if verbose else logger.debug
    signer = None
    if sign is not None:  # a bad key is found before any work, with the other option problems
        from hotswap_runtime.errors import HotswapError
        from hotswap_runtime.signing import SigningKey

        try:
            signer = SigningKey.load(sign)
        except HotswapError as exc:
            flag_problems = [*flag_problems, str(exc)]
        if static_linking:
            flag_problems = [*flag_problems, "--sign signs artifacts; static linking makes "
                             "none: drop --sign or --staticLinking"]
    layout, include_re, exclude_re = _check_options(
        Path(plugin_dir), out_path, live_prefix, stamps, optimize, include, exclude,
        static_linking, clean, flag_problems)
    if clean:
        from .static import clean_static

        kept, removed = clean_static(layout, out_path)
        return BuildResult(artifact=None, name=layout.name, build_id=None, live_funcs={},
                           live_types={}, generated=kept, import_name=layout.import_name,
                           timings={"total": time.perf_counter() - started}, removed=removed)

    collected = _collect(layout, include_re, exclude_re)
    log("plugin %r (import name %s): %d source files, %d data files", layout.name,
        layout.import_name, len(collected.sources), len(collected.data))
    processed = _process(layout, collected, live_prefix, stamps, optimize)
    log("%d files from the cache, %d processed", processed.cached,
        len(collected.sources) - processed.cached)
    analysis = analyse(layout, [processed.outcomes[rel].scan for rel in collected.sources],
                       live_prefix, stamps)
    problems = sorted([*collected.problems, *analysis.problems])  # each is found once
    if problems or flag_problems:
        raise BuildError([*flag_problems, *problems], plugin=layout.name)
    registration = _render_registration(processed.cache, layout.name, analysis.hooks,
                                        analysis.live_funcs, analysis.live_types)

    timings = dict(processed.timings)
    pack_started = time.perf_counter()
    # what every kind of build reports; the artifact, ids, files written and timings follow
    result = BuildResult(
        artifact=None,
        name=layout.name,
        build_id=None,
        live_funcs=dict(analysis.live_funcs),
        live_types=dict(analysis.live_types),
        generated=(),
        timings={},
        hooks=tuple(sorted(analysis.hooks)),
        import_name=layout.import_name,
        files=collected.sources,
        cached=processed.cached,
    )
    if static_linking:
        from .static import write_static

        written = write_static(layout, out_path, registration)
        timings["pack"] = time.perf_counter() - pack_started
        timings["total"] = time.perf_counter() - started
        return replace(result, generated=written, timings=timings)

    from .pack import build_id as compute_build_id
    from .pack import git_commit, make_manifest

    members, deflated = _members(layout, collected, processed, registration, optimize)
    the_id = compute_build_id(collected.contents.items(), live_prefix, stamps, optimize)
    manifest = make_manifest(
        name=layout.name, build_id_=the_id, live_prefix=live_prefix,
        live_funcs=analysis.live_funcs, live_types=analysis.live_types, hooks=analysis.hooks,
        optimize=optimize, import_name=layout.import_name, stamps=stamps,
        git=git_commit(layout.root), source_dir=os.fspath(layout.root),
        source_hashes=_rewritten_hashes(layout.name, collected, members),
    )
    generated: list[Path] = []
    tree = None
    if leave_temps or not package:
        tree = _write_tree(layout.name, members, manifest)
        generated.append(tree / layout.name / f"{REGISTRATION_MODULE}.py")
        log("build tree kept at %s", tree)
    artifact = None
    if package:
        artifact = _write_artifact(out_path, layout.name, members, manifest, deflated, signer)
        generated.append(artifact)
        log("wrote %s (build id %s%s)", artifact, the_id,
            f", signed by key {signer.key_id}" if signer is not None else "")
    timings["pack"] = time.perf_counter() - pack_started
    timings["total"] = time.perf_counter() - started
    return replace(result, artifact=artifact, build_id=the_id if package else None,
                   generated=tuple(generated), timings=timings, tree=tree)


@dataclass(frozen=True)
class _Collected:
    """The files of a plugin: sources and data files (relative paths) and their contents."""

    sources: tuple[str, ...]
    data: tuple[str, ...]
    contents: Mapping[str, bytes]
    problems: tuple[str, ...]


@dataclass(frozen=True)
class _Processed:
    """What scanning, rewriting and compiling made of every source file."""

    outcomes: Mapping[str, _Outcome]
    cached: int
    timings: Mapping[str, float]
    cache: Path


def _collect(layout: PluginLayout, include: re.Pattern[str] | None,
             exclude: re.Pattern[str] | None) -> _Collected:
    sources, data, problems = collect_files(layout, include, exclude)
    contents = {rel: (layout.root / rel).read_bytes() for rel in (*sources, *data)}
    return _Collected(tuple(sources), tuple(data), contents, tuple(problems))


def _process(layout: PluginLayout, collected: _Collected, live_prefix: str,
             stamps: Mapping[str, str], optimize: int) -> _Processed:
    """Every source file from the cache, or scanned, rewritten and compiled (then cached)."""
    cache = cache_dir()
    index_file = index_path(cache, layout)
    index = load_index(index_file, _Outcome)
    outcomes: dict[str, _Outcome] = {}
    misses: list[tuple[FileContext, bytes]] = []
    keys: dict[str, str] = {}
    for rel in collected.sources:
        ctx = FileContext.create(layout, rel, live_prefix, stamps, optimize)
        keys[rel] = key = file_key(ctx, collected.contents[rel])
        cached = index.get(key)
        if cached is not None:
            outcomes[rel] = cached
        else:
            misses.append((ctx, collected.contents[rel]))
    done = _run_jobs(misses, cache)
    for (ctx, _), outcome in zip(misses, done, strict=True):
        outcomes[ctx.rel] = outcome
    if misses:
        store_index(index_file, {keys[rel]: outcome for rel, outcome in outcomes.items()
                                 if not outcome.scan.problems})
    timings = {stage: sum(outcome.times[i] for outcome in done)
               for i, stage in enumerate(("scan", "rewrite", "compile"))}
    return _Processed(outcomes, len(collected.sources) - len(misses), timings, cache)


def _members(layout: PluginLayout, collected: _Collected, processed: _Processed,
             registration: bytes, optimize: int) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Every member of the artifact's package (sources, bytecode, data, the generated modules:
    registration; ``_hotswap_imports`` when a computed import was rewritten), and the deflated
    form of those the cache holds (see ``pack``)."""
    from .pack import COMPRESS_LEVEL, pyc_bytes, pyc_path

    name = layout.name
    members: dict[str, bytes] = {}
    deflated: dict[str, bytes] = {}
    for rel in collected.sources:
        outcome = processed.outcomes[rel]
        assert outcome.pyc is not None, rel  # files with problems never get this far
        source_member, pyc_member = f"{name}/{rel}", pyc_path(f"{name}/{rel}", optimize)
        members[source_member] = outcome.source
        members[pyc_member] = outcome.pyc
        if outcome.deflated is not None and outcome.deflated[0] == COMPRESS_LEVEL:
            deflated[source_member], deflated[pyc_member] = outcome.deflated[1:]
    for rel in collected.data:
        members[f"{name}/{rel}"] = collected.contents[rel]
    generated = {REGISTRATION_MODULE: registration}
    if any(processed.outcomes[rel].scan.computed for rel in collected.sources):
        generated[COMPUTED_IMPORTS_MODULE] = _render_computed_imports(processed.cache, layout)
    for module, text in generated.items():
        member = f"{name}/{module}.py"
        members[member] = text
        code = compile(text, member, "exec", dont_inherit=True, optimize=optimize)
        members[pyc_path(member, optimize)] = pyc_bytes(code, text)
    return members, deflated


def _rewritten_hashes(name: str, collected: _Collected,
                      members: Mapping[str, bytes]) -> dict[str, str]:
    """member -> sha256 of the file the build read, for each source it rewrote (map_sources
    compares the file on disk with what the build read, not with what it shipped)."""
    out = {}
    for rel in collected.sources:
        original = collected.contents[rel]
        if members[f"{name}/{rel}"] != original:
            out[f"{name}/{rel}"] = hashlib.sha256(original).hexdigest()
    return out


def _write_tree(name: str, members: Mapping[str, bytes], manifest: Manifest) -> Path:
    """The generated tree in a fresh temporary folder (``--leaveTemps``, ``--no-package``)."""
    tree = Path(tempfile.mkdtemp(prefix=f"hotswap-build-{name}-"))
    try:
        for member, body in sorted(members.items()):
            target = tree / member
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
        (tree / "MANIFEST.json").write_bytes(manifest.to_json())
    except BaseException:  # a disk full or Ctrl-C midway: no half tree left in the temp folder
        shutil.rmtree(tree, ignore_errors=True)
        raise
    return tree


def _write_artifact(out_path: Path, name: str, members: Mapping[str, bytes],
                    manifest: Manifest, deflated: Mapping[str, bytes],
                    signer: SigningKey | None = None) -> Path:
    """Write ``<out>/<name>.hsp`` atomically; a folder created for it goes again on failure."""
    from .pack import write_artifact

    artifact = out_path / f"{name}{ARTIFACT_SUFFIX}"
    created = not out_path.exists()
    try:
        out_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # the user's to fix (permissions), not a bug to report
        raise BuildError([f'output folder "{os.fspath(out_path)}" cannot be created '
                          f"({exc.strerror or exc}); check the permissions of its parent or "
                          "pass another folder"], plugin=name) from exc
    # what a killed build of this artifact left behind; a concurrent build's temporary is locked
    for stale in sweep_temporaries(artifact):
        logger.info("removed %s, left behind by an interrupted build", stale)
    try:
        write_artifact(artifact, name, members, manifest, deflated,
                       sign=signer.sign_record if signer is not None else None)
    except BaseException as exc:
        if created:
            shutil.rmtree(out_path, ignore_errors=True)
        if isinstance(exc, OSError):
            raise BuildError([f'cannot write "{os.fspath(artifact)}" ({exc.strerror or exc}); '
                              "check the free space and permissions of the output folder"],
                             plugin=name) from exc
        raise
    return artifact
