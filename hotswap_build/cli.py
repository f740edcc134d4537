"""The ``hotswap`` command: ``build``, ``inspect``, ``keygen``, and the fleet's ``publish``,
``status``, ``rollback`` and ``rollout`` (click only).

The CLI parses and delegates: ``hotswap_build.build.build`` and ``hotswap_runtime.fleet.ops``
do the work. A ``BuildError``
(or an artifact that does not verify) becomes one ``Error: ...`` line per problem on stderr and
exit status 1, here and only here; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from hotswap_runtime.errors import HotswapError

from . import __version__

__all__ = ["main", "parse_build_flags"]

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def parse_build_flags(flags: Sequence[str]) -> tuple[dict[str, str], int, list[str]]:
    """Parse the flags after ``--``: ``-X NAME=VALUE`` (repeatable), ``-O``, ``-OO``.

    Returns the stamps, the optimisation level and the problems found.
    """
    stamps: dict[str, str] = {}
    optimize = 0
    problems: list[str] = []
    items = list(flags)
    i = 0
    while i < len(items):
        flag = items[i]
        i += 1
        if flag in ("-O", "-OO"):
            optimize = max(optimize, len(flag) - 1)
        elif flag == "-X" or (flag.startswith("-X") and len(flag) > 2):
            if flag == "-X":
                if i >= len(items):
                    problems.append("-X needs NAME=VALUE after it, e.g. -X CompileTimeString=abc")
                    break
                value = items[i]
                i += 1
            else:
                value = flag[2:]
            name, sep, text = value.partition("=")
            if not sep or not name:
                problems.append(f'-X "{value}" is not NAME=VALUE; write e.g. '
                                "-X CompileTimeString=abc")
            else:
                stamps[name] = text
        else:
            problems.append(f'unknown build flag "{flag}" after --; the build flags are '
                            "-X NAME=VALUE, -O and -OO")
    return stamps, optimize, problems


def _fail(problems: Sequence[str], code: int = 1) -> NoReturn:
    for problem in problems:
        click.echo(f"Error: {problem}", err=True)
    sys.exit(code)


@click.group(context_settings=_CONTEXT)
@click.version_option(__version__, "--version", prog_name="hotswap")
def main() -> None:
    """hotswap: build plugins into reloadable artifacts, inspect them, and publish them as
    releases that every worker of a fleet takes together."""


@main.command("build", context_settings=_CONTEXT)
@click.option("--debug", is_flag=True, help="print full tracebacks of the build's own failures")
@click.option("--exclude", metavar="REGEX", help="files to drop from those that --include added")
@click.option("--include", metavar="REGEX",
              help="files to ship in addition to .py files (matched on the base name)")
@click.option("--leaveTemps", "leave_temps", is_flag=True,
              help="keep the temporary build tree and print its path")
@click.option("--livePrefix", "live_prefix", default="live_", show_default=True, metavar="TEXT",
              help="case-insensitive prefix of live functions and types")
@click.option("--package/--no-package", default=True,
              help="--no-package stops after generating the tree (implies --leaveTemps)")
@click.option("--staticLinking", "static_linking", is_flag=True,
              help="generate static-linking glue instead of an artifact")
@click.option("--clean", is_flag=True, hidden=True,
              help="with --staticLinking: remove what static linking generated for the plugin")
@click.option("--sign", "sign", metavar="KEYFILE", default=None,
              help="sign the artifact with this private key (made by hotswap keygen)")
@click.option("-v", "--verbose", is_flag=True,
              help="list live functions, live types, generated files and timings")
@click.argument("plugin_dir", metavar="<pluginDir>", type=click.Path(file_okay=True))
@click.argument("output_dir", metavar="<outputDir>", type=click.Path(file_okay=True))
@click.argument("build_flags", nargs=-1, type=click.UNPROCESSED, metavar="-- [buildFlags]")
def build_command(debug: bool, exclude: str | None, include: str | None, leave_temps: bool,
                  live_prefix: str, package: bool, static_linking: bool, clean: bool,
                  sign: str | None, verbose: bool, plugin_dir: str, output_dir: str,
                  build_flags: tuple[str, ...]) -> None:
    """Build the plugin in <pluginDir> into <outputDir>/<name>.hsp.

    \b
    buildFlags (after --):
      -X NAME=VALUE   set the module-level str constant NAME in the plugin's root package
                      (repeatable)
      -O | -OO        optimisation level of the bytecode stored in the artifact

    \b
    Examples:
      hotswap build plugin/foo bin
      hotswap build -v plugin/foo bin -- -X CompileTimeString=abc
      hotswap build --staticLinking plugin/foo plugin
      hotswap build --sign deploy.key plugin/foo bin
    """
    # bad flags are reported with the build's other problems, after it has looked for them
    stamps, optimize, flag_problems = parse_build_flags(build_flags)
    name = os.path.basename(os.path.normpath(os.path.abspath(plugin_dir)))
    if static_linking:
        verb = "Removing" if clean else "Generating"
        click.echo(f'{verb} static code for plugin "{name}"...')
    else:
        click.echo(f'Building plugin "{name}"...')
    from .build import build
    from .errors import BuildError

    try:
        result = build(plugin_dir, output_dir, live_prefix=live_prefix, stamps=stamps,
                       optimize=optimize, include=include, exclude=exclude,
                       static_linking=static_linking, clean=clean,
                       leave_temps=leave_temps or not package, package=package, verbose=verbose,
                       flag_problems=flag_problems, sign=sign)
    except BuildError as exc:
        if debug:
            traceback.print_exc()
        _fail(exc.problems)
    except KeyboardInterrupt:
        _fail(["interrupted; nothing was written"], code=130)
    except Exception as exc:
        if debug:
            raise
        _fail([f"the build failed unexpectedly ({type(exc).__name__}: {exc}); rerun with "
               "--debug for the traceback and report it"])
    if verbose:
        _print_verbose(result)
    if result.tree is not None:
        click.echo(f"Build tree kept at {result.tree}")
    if clean:
        for removed in result.removed:
            click.echo(f"Removed {removed}")
        click.echo(os.fspath(result.generated[-1] if result.generated else output_dir))
    elif static_linking:
        click.echo(os.fspath(result.generated[1]))
    elif result.artifact is not None:
        click.echo(os.fspath(result.artifact))
    else:
        assert result.tree is not None  # no artifact (--no-package): the kept build tree
        click.echo(os.fspath(result.tree))


def _print_verbose(result: Any) -> None:
    def table(title: str, names: dict[str, str]) -> None:
        click.echo(f"{title} ({len(names)}):")
        width = max((len(n) for n in names), default=0)
        for name, module in sorted(names.items()):
            click.echo(f"  {name.ljust(width)}  {module}")

    click.echo(f"Sources: {len(result.files)} files, {result.cached} from the cache")
    table("Live functions", dict(result.live_funcs))
    table("Live types", dict(result.live_types))
    click.echo(f"Generated files ({len(result.generated)}):")
    for path in result.generated:
        click.echo(f"  {os.fspath(path)}")
    click.echo("Timings (scan, rewrite and compile summed over worker processes):")
    for stage in ("scan", "rewrite", "compile", "pack", "total"):
        if stage in result.timings:
            click.echo(f"  {stage:<8} {result.timings[stage] * 1000:9.1f} ms")


@main.command("inspect", context_settings=_CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="print the manifest and members as JSON")
@click.option("--trusted-key", "trusted", multiple=True, metavar="KEYFILE.pub",
              help="check the signature against this public key (repeatable); an artifact not "
                   "signed by one of them fails")
@click.argument("artifact", metavar="<artifact>", type=click.Path())
def inspect_command(artifact: str, as_json: bool, trusted: tuple[str, ...]) -> None:
    """Verify <artifact> exactly as the runtime does and print its manifest.

    Also recompiles each shipped source and fails when its bytecode holds other code.
    """
    from .inspect import describe, describe_json, printable

    try:
        text = describe_json(artifact, trusted) if as_json else describe(artifact, trusted)
    except HotswapError as exc:
        # one line: the message already lists every problem, with the path
        _fail([printable(str(exc))])
    click.echo(text)


@main.command("keygen", context_settings=_CONTEXT)
@click.argument("keyfile", metavar="KEYFILE", type=click.Path())
def keygen_command(keyfile: str) -> None:
    """Make an Ed25519 key pair for signing artifacts: KEYFILE (private, mode 0600) and
    KEYFILE.pub (public; give it to hosts as trusted_keys). Prints the key id last.
    """
    from hotswap_runtime.signing import generate_key

    try:
        kid = generate_key(keyfile)
    except HotswapError as exc:
        _fail([str(exc)])
    click.echo(f"Wrote the private key {keyfile} (mode 0600: keep it on the build machine, "
               f"never in the plugin or release folder) and the public key {keyfile}.pub")
    click.echo(kid)


# ---------------------------------------------------------------------------------- fleet
# The fleet commands parse and print; hotswap_runtime.fleet.ops does the work (tests call it).

def shown_url(channel: str) -> str:
    """The channel as the fleet commands print it: no credentials (a deploy log is read by many)."""
    from hotswap_runtime.fleet.open import shown_url as shown

    return shown(channel)


def _channel_call(action: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one ops call; any HotswapError (a bad artifact, a path that is not a channel, an
    unknown revision, a channel that cannot be reached) is one Error: line and exit 1, and so
    is anything unforeseen (no traceback: a deploy log wants the one line)."""
    try:
        return action(*args, **kwargs)
    except HotswapError as exc:
        _fail([str(exc)])
    except KeyboardInterrupt:
        _fail(["interrupted"], code=130)
    except Exception as exc:
        _fail([f"{action.__name__} on {shown_url(str(args[0]) if args else '')} failed unexpectedly "
               f"({type(exc).__name__}: {exc}); report it with this line"])


@main.command("publish", context_settings=_CONTEXT)
@click.option("--cohort", type=click.IntRange(1, 100), default=100, show_default=True,
              metavar="PCT", help="share of instances that take this release; the others stay "
                                  "on the current one")
@click.option("--note", default="", metavar="TEXT", help="free text kept in RELEASE.json")
@click.option("--trusted-key", "trusted", multiple=True, metavar="PUB",
              help="publish only artifacts signed by one of these public keys (repeatable)")
@click.argument("channel", metavar="CHANNEL")
@click.argument("artifacts", metavar="ARTIFACT...", nargs=-1, required=True, type=click.Path())
def publish_command(cohort: int, note: str, trusted: tuple[str, ...], channel: str,
                    artifacts: tuple[str, ...]) -> None:
    """Verify every ARTIFACT exactly as the runtime does, then publish them together as the
    next revision of CHANNEL (a folder, created when missing, or a nats:// URL). One bad
    artifact publishes nothing. Prints the new revision as the last line.
    """
    from hotswap_runtime.fleet import ops

    release = _channel_call(ops.publish, channel, artifacts, cohort=cohort, note=note,
                            trusted_keys=trusted)
    names = ", ".join(f"{n} ({r.build_id[:12]})" for n, r in sorted(release.artifacts.items()))
    share = "" if release.cohort == 100 else f" to {release.cohort}% of instances (others stay on {release.previous})"
    click.echo(f"published revision {release.revision} of {shown_url(channel)}{share}: {names}")
    click.echo(str(release.revision))


@main.command("status", context_settings=_CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="print the release and the reports as JSON")
@click.option("--wait", is_flag=True, help="poll until every live instance runs its revision "
                                           "with state ok (or --timeout passes; once every "
                                           "live instance has taken it or failed on it, a "
                                           "failure ends the wait: it is not retried by itself)")
@click.option("--revision", type=int, default=None, metavar="REV",
              help="the revision to gate on [default: the current one]")
@click.option("--timeout", type=click.FloatRange(0), default=60.0, show_default=True,
              metavar="SECONDS", help="longest --wait")
@click.argument("channel", metavar="CHANNEL")
def status_command(as_json: bool, wait: bool, revision: int | None, timeout: float,
                   channel: str) -> None:
    """One line per instance (instance, revision, state, age, error) and a summary.

    Exits 0 only when every live instance runs the revision meant for it (the current release,
    or --revision; an instance outside the cohort runs the previous one) with state ok, and at
    least one instance is live; stale instances are listed but ignored. A deploy script gates
    on it with --wait.

    \b
    Exit status:
      0  every live instance runs the revision meant for it, with state ok
      1  not so (the Error: line names each instance that lags or failed, with
         its error), or the channel cannot be read
      2  a wrong command line
    """
    import json

    from hotswap_runtime.fleet import ops

    if wait:
        result = _channel_call(ops.wait_for_gate, channel, revision, timeout, stop_when_settled=True)
    else:
        result = _channel_call(ops.gate, channel, revision)
    if as_json:
        click.echo(json.dumps(ops.gate_json(result), indent=1))
    else:
        click.echo(ops.status_table(result))
    if not result.ok:
        why = "; ".join(result.problems()) or "no live instance has reported"
        waited = f" after {timeout:g} s" if wait and not result.failed else ""
        _fail([f"channel {shown_url(channel)} is not on revision {result.revision}{waited}: {why}"])


@main.command("rollback", context_settings=_CONTEXT)
@click.option("--to", "to", type=int, default=None, metavar="REVISION",
              help="the revision whose artifacts to publish again [default: the one before the "
                   "current release]")
@click.argument("channel", metavar="CHANNEL")
def rollback_command(to: int | None, channel: str) -> None:
    """Publish a new revision with the artifacts of an earlier one (cohort 100), so the
    history stays linear. Prints the new revision as the last line.
    """
    from hotswap_runtime.fleet import ops

    release = _channel_call(ops.rollback, channel, to)
    click.echo(f"published revision {release.revision} of {shown_url(channel)}: {release.note}")
    click.echo(str(release.revision))


@main.command("rollout", context_settings=_CONTEXT)
@click.option("--steps", default="10,50,100", show_default=True, metavar="PCT,PCT,...",
              help="the growing cohorts, ending at 100")
@click.option("--pause", type=click.FloatRange(0), default=10.0, show_default=True,
              metavar="SECONDS", help="pause after each step is ok")
@click.option("--timeout", type=click.FloatRange(0), default=120.0, show_default=True,
              metavar="SECONDS", help="longest wait for each step's instances")
@click.option("--note", default="", metavar="TEXT", help="free text kept in each RELEASE.json")
@click.option("--trusted-key", "trusted", multiple=True, metavar="PUB",
              help="roll out only artifacts signed by one of these public keys (repeatable)")
@click.argument("channel", metavar="CHANNEL")
@click.argument("artifacts", metavar="ARTIFACT...", nargs=-1, required=True, type=click.Path())
def rollout_command(steps: str, pause: float, timeout: float, note: str, trusted: tuple[str, ...],
                    channel: str, artifacts: tuple[str, ...]) -> None:
    """Publish ARTIFACT... to growing cohorts of CHANNEL, waiting at each step until every
    instance of the cohort reports ok on it. An instance that fails, or a step that times out,
    rolls everything back (a new revision with the previous artifacts) and exits 1 naming the
    failing instances and their errors.

    \b
    Exit status:
      0  every step reported ok; the new revision is printed last
      1  rolled back (failure or timeout), or nothing was published (a bad artifact, a
         channel that cannot be reached)
      2  a wrong command line
    """
    from hotswap_runtime.fleet import ops

    plan = _channel_call(ops.parse_steps, steps)
    done = _channel_call(ops.rollout, channel, artifacts, steps=plan, pause=pause,
                         timeout=timeout, note=note, trusted_keys=trusted, echo=click.echo)
    if not done.ok:
        why = "; ".join(done.gate.problems()) or "no live instance reported"
        what = "failed" if done.gate.failed else f"timed out after {timeout:g} s"
        back = (f"rolled back as revision {done.rolled_back.revision}" if done.rolled_back
                else "nothing was published before it to roll back to")
        _fail([f"rollout of revision {done.release.revision} to {shown_url(channel)} {what}: {why}; "
               f"{back}"])
    click.echo(f"rolled out revision {done.release.revision} to every instance")
    click.echo(str(done.release.revision))
