"""Every build failure (README "Building"): exit 1, one exact ``Error:`` line per problem, all
problems at once, no traceback without --debug, nothing left in the output folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import NOOP_HOOKS

from hotswap_build.cli import main


def run(*args: str):
    return CliRunner().invoke(main, ["build", *args])


def errors(result) -> list[str]:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr.splitlines()


def broken(sample, name: str) -> Path:
    return sample(f"broken/{name}")


CASES = {
    "hooks": [
        'Error: plugin "hooks": import_ in hooks/__init__.py:20 is a coroutine function (async '
        "def), but the runtime calls it synchronously; define it as def import_()",
        'Error: plugin "hooks": invoke_func in hooks/__init__.py:12 cannot be called as '
        "invoke_func(name, *params); give it the signature def invoke_func(name, *params)",
        'Error: plugin "hooks": missing functions: on_free; define them in hooks/__init__.py or '
        "import them there",
        'Error: plugin "hooks": on_init in hooks/__init__.py:8 cannot be called as on_init(vault); '
        "give it the signature def on_init(vault)",
        'Error: plugin "hooks": on_load in hooks/__init__.py:4 cannot be called as on_load(data); '
        "give it the signature def on_load(data)",
        'Error: plugin "hooks": reloadable in hooks/__init__.py:16 is a class, not a function; '
        "define it as def reloadable()",
    ],
    "syntax": [
        'Error: plugin "syntax": syntax error in syntax/hooks.py:6: invalid syntax; fix it and '
        "build again",
        "Error: plugin \"syntax\": syntax error in syntax/other.py:5: 'return' outside function; "
        "fix it and build again",
    ],
    "rootsyntax": [
        'Error: plugin "rootsyntax": syntax error in rootsyntax/__init__.py:4: expected \':\'; '
        "fix it and build again",
    ],
    "dups": [
        'Error: plugin "dups": live name "Live_Other" is defined twice, in dups/a.py:5 and '
        "dups/c.py:4; live functions and types share one namespace, so rename one of them",
        'Error: plugin "dups": live name "live_thing" is defined twice, in dups/a.py:1 and '
        "dups/b.py:4; live functions and types share one namespace, so rename one of them",
    ],
    "livebad": [
        'Error: plugin "livebad": live name "Live_Job" in livebad/jobs.py:6 is assigned, not '
        'defined by a def or class of the plugin; define it with def or class, or drop the '
        '"live_" prefix',
        'Error: plugin "livebad": live name "Live_T" in livebad/jobs.py:7 is assigned, not '
        'defined by a def or class of the plugin; define it with def or class, or drop the '
        '"live_" prefix',
        'Error: plugin "livebad": live name "live_join" in livebad/jobs.py:2 is imported from '
        '"os.path", outside the plugin; live functions and types must be defined by a def or '
        'class of the plugin, so import it under a name without the "live_" prefix',
    ],
    "siblings/alpha": [
        'Error: plugin "alpha": alpha/uses.py:5 imports "beta", the package of plugin "beta"; '
        "a plugin never imports another plugin's package: share types through a host-side "
        "module and reach other plugins through export() and import_()",
        'Error: plugin "alpha": alpha/uses.py:6 imports "beta", the package of plugin "beta"; '
        "a plugin never imports another plugin's package: share types through a host-side "
        "module and reach other plugins through export() and import_()",
    ],
    "imports": [
        'Error: plugin "imports": "from .. import elsewhere" in imports/mod.py:2 reaches above '
        "the plugin's root package; import host-side modules absolutely, and other plugins "
        "through import_()",
        'Error: plugin "imports": live function "live_check" in imports/mod.py:4 is defined '
        "inside a module-level if block, so the registration module could not import it "
        'reliably; define it unconditionally at module level, or drop the "live_" prefix',
    ],
    "selftest": [
        'Error: plugin "selftest": self_test in selftest/__init__.py:10 cannot be called as '
        "self_test(vault); give it the signature def self_test(vault)",
    ],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_plugin_reports_every_problem(name: str, sample, tmp_path: Path) -> None:
    """Each broken sample fails with exactly these messages, and writes nothing."""
    if "/" in name:
        plugin = sample(f"broken/{name.split('/')[0]}") / name.split("/")[1]
    else:
        plugin = sample(f"broken/{name}")
    out = tmp_path / "bin"
    result = run(str(plugin), str(out))
    assert errors(result) == CASES[name]
    assert not out.exists()


def write_plugin(root: Path, name: str = "foo", init: str = NOOP_HOOKS, **files: str) -> Path:
    plugin = root / name
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text(init)
    for rel, text in files.items():
        (plugin / rel).write_text(text)
    return plugin


def test_stamps_must_name_str_constants(tmp_path: Path) -> None:
    """An unknown -X name and a non-str one are both reported; a good one alone is not."""
    plugin = write_plugin(tmp_path, init=NOOP_HOOKS + 'Number = 3\nText = "a"\nBytes = b"x"\n')
    out = tmp_path / "bin"
    result = run(str(plugin), str(out), "--", "-X", "Number=1", "-X", "Missing=2",
                 "-XText=ok", "-X", "Bytes=3")
    assert errors(result) == [
        'Error: plugin "foo": -X Bytes: Bytes in foo/__init__.py:10 is not a str constant; '
        'assign it a string literal (Bytes = "...") or drop -X Bytes',
        'Error: plugin "foo": -X Missing: foo/__init__.py defines no module-level str constant '
        '"Missing"; add Missing = "" there, or drop -X Missing',
        'Error: plugin "foo": -X Number: Number in foo/__init__.py:8 is not a str constant; '
        'assign it a string literal (Number = "...") or drop -X Number',
    ]
    assert not out.exists()


def test_bad_options_are_all_reported(tmp_path: Path) -> None:
    """An empty live prefix and bad regexes are reported together."""
    plugin = write_plugin(tmp_path)
    result = run("--livePrefix", "", "--include", "(", "--exclude", "[", str(plugin),
                 str(tmp_path / "bin"))
    assert errors(result) == [
        'Error: --include "(" is not a valid regular expression (missing ), unterminated '
        "subpattern at position 0); fix the pattern (it is matched with re.search on each "
        "file's base name)",
        'Error: --exclude "[" is not a valid regular expression (unterminated character set '
        "at position 0); fix the pattern (it is matched with re.search on each file's base "
        "name)",
        "Error: --livePrefix is empty; give a prefix such as live_ (it is matched "
        "case-insensitively)",
    ]
    for prefix in ("x y", "1_"):
        assert errors(run("--livePrefix", prefix, str(plugin), str(tmp_path / "bin"))) == [
            f'Error: --livePrefix "{prefix}" cannot start a Python name, so nothing would be '
            "live; give letters, digits and _ not starting with a digit, such as live_"]
    assert not (tmp_path / "bin").exists()


def test_plugin_folder_problems(tmp_path: Path) -> None:
    """A missing folder, a folder that is no package, and a name that is no identifier."""
    out = str(tmp_path / "bin")
    missing = tmp_path / "nothere"
    assert errors(run(str(missing), out)) == [
        f'Error: plugin folder "{missing}" does not exist; check the <pluginDir> argument']
    nopkg = tmp_path / "nopkg"
    nopkg.mkdir()
    assert errors(run(str(nopkg), out)) == [
        f'Error: plugin folder "{nopkg}" is not a package: nopkg/__init__.py is missing; add it '
        "(it defines the plugin's hooks)"]
    dashed = write_plugin(tmp_path, "my-plugin")
    assert errors(run(str(dashed), out)) == [
        'Error: plugin name "my-plugin" (the folder\'s name) is not a Python identifier; rename '
        'the folder, e.g. to "my_plugin"']
    keyword = write_plugin(tmp_path, "class")
    assert errors(run(str(keyword), out)) == [
        'Error: plugin name "class" (the folder\'s name) is a Python keyword; rename the folder, '
        'e.g. to "class_"']
    assert not (tmp_path / "bin").exists()


def test_output_folder_problems(tmp_path: Path) -> None:
    """Static linking needs an existing folder outside the plugin; an artifact needs no file."""
    plugin = write_plugin(tmp_path)
    (plugin / "sub").mkdir()
    inside = plugin / "sub"
    assert errors(run("--staticLinking", str(plugin), str(inside))) == [
        f'Error: output folder "{inside}" is the plugin folder or inside it; write the static '
        "glue elsewhere, e.g. beside the plugin"]
    assert errors(run("--staticLinking", str(plugin), str(plugin))) == [
        f'Error: output folder "{plugin}" is the plugin folder or inside it; write the static '
        "glue elsewhere, e.g. beside the plugin"]
    missing = tmp_path / "missing"
    assert errors(run("--staticLinking", str(plugin), str(missing))) == [
        f'Error: output folder "{missing}" does not exist or is not a folder; create it first '
        "(static linking writes into an existing folder)"]
    afile = tmp_path / "afile"
    afile.write_text("")
    assert errors(run(str(plugin), str(afile))) == [
        f'Error: output folder "{afile}" is a file; pass a folder']
    below_file = afile / "bin"
    assert errors(run(str(plugin), str(below_file))) == [
        f'Error: output folder "{below_file}" cannot be created: "{afile}" is a file; pass a '
        "folder whose parents are folders"]
    assert errors(run("--clean", str(plugin), str(tmp_path))) == [
        "Error: --clean only works with --staticLinking; add --staticLinking"]
    assert sorted(p.name for p in plugin.iterdir()) == ["__init__.py", "sub"]


def test_bad_build_flags(tmp_path: Path) -> None:
    """Flags after -- other than -X NAME=VALUE, -O and -OO are refused, and nothing is built."""
    plugin = write_plugin(tmp_path)
    result = run(str(plugin), str(tmp_path / "bin"), "--", "-X", "NoValue", "-Q", "-OOO", "-X")
    assert errors(result) == [
        'Error: -X "NoValue" is not NAME=VALUE; write e.g. -X CompileTimeString=abc',
        'Error: unknown build flag "-Q" after --; the build flags are -X NAME=VALUE, -O and -OO',
        'Error: unknown build flag "-OOO" after --; the build flags are -X NAME=VALUE, -O and '
        "-OO",
        "Error: -X needs NAME=VALUE after it, e.g. -X CompileTimeString=abc",
    ]
    assert not (tmp_path / "bin").exists()


def test_bad_build_flags_come_with_the_other_problems(tmp_path: Path) -> None:
    """One run reports the bad flags and what the build found, one Error: line each."""
    plugin = write_plugin(tmp_path)
    (plugin / "mod.py").write_text("x = 1\nlive_x = 2\n")
    result = run(str(plugin), str(tmp_path / "bin"), "--", "-Q", "-X", "Missing=1")
    assert errors(result) == [
        'Error: unknown build flag "-Q" after --; the build flags are -X NAME=VALUE, -O and -OO',
        'Error: plugin "foo": -X Missing: foo/__init__.py defines no module-level str constant '
        '"Missing"; add Missing = "" there, or drop -X Missing',
        'Error: plugin "foo": live name "live_x" in foo/mod.py:2 is assigned, not defined by a '
        'def or class of the plugin; define it with def or class, or drop the "live_" prefix',
    ]
    options = run("--include", "(", str(plugin), str(tmp_path / "bin"), "--", "-Q")
    assert errors(options)[0].startswith('Error: unknown build flag "-Q"')
    assert errors(options)[1].startswith('Error: --include "(" is not a valid regular expression')
    assert not (tmp_path / "bin").exists()


@pytest.mark.parametrize(("module", "what"), [("_hotswap_registration", "registration"),
                                              ("_hotswap_imports", "computed imports")])
def test_reserved_generated_names(tmp_path: Path, module: str, what: str) -> None:
    """A hand-written _hotswap_registration.py or _hotswap_imports.py is refused rather than
    overwritten."""
    plugin = write_plugin(tmp_path)
    (plugin / f"{module}.py").write_text("x = 1\n")
    assert errors(run(str(plugin), str(tmp_path / "bin"))) == [
        f"Error: foo/{module}.py was not generated by hotswap, but the name is "
        f"reserved for the generated {what} module; rename it"]


def test_debug_shows_the_traceback(sample, tmp_path: Path) -> None:
    """--debug adds the traceback; the Error: lines stay the same."""
    plugin = sample("broken/selftest")
    result = run("--debug", str(plugin), str(tmp_path / "bin"))
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1] == CASES["selftest"][0]


def test_unexpected_failure_without_debug(tmp_path: Path, monkeypatch) -> None:
    """A failure of the build itself is one Error: line; --debug shows its traceback."""
    plugin = write_plugin(tmp_path)

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("hotswap_build.pack.write_artifact", boom)
    result = run(str(plugin), str(tmp_path / "bin"))
    assert errors(result) == [
        "Error: the build failed unexpectedly (RuntimeError: disk on fire); rerun with --debug "
        "for the traceback and report it"]
    debug = run("--debug", str(plugin), str(tmp_path / "bin"))
    assert debug.exit_code == 1
    assert isinstance(debug.exception, RuntimeError)


def test_interrupted_build_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C while the artifact is written leaves neither a temporary nor the new folder."""
    plugin = write_plugin(tmp_path)
    out = tmp_path / "bin"

    def interrupt(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr("hotswap_runtime.artifact.os.replace", interrupt)
    result = run(str(plugin), str(out))
    assert result.exit_code == 130
    assert result.stderr.splitlines() == ["Error: interrupted; nothing was written"]
    assert not out.exists()
    out.mkdir()
    assert run(str(plugin), str(out)).exit_code == 130
    assert list(out.iterdir()) == []


def test_interrupted_leave_temps_leaves_no_half_tree(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C while --leaveTemps writes the build tree removes the half-written tree."""
    plugin = write_plugin(tmp_path)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    written: list[Path] = []
    real_write = Path.write_bytes

    def interrupt_second(self: Path, data: bytes) -> int:
        if written:
            raise KeyboardInterrupt
        written.append(self)
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", interrupt_second)
    result = run("--leaveTemps", str(plugin), str(tmp_path / "bin"))
    assert result.exit_code == 130
    assert written, "the tree was never started"
    assert list(temp.iterdir()) == []


def test_null_byte_in_a_source_names_the_file_without_a_line(tmp_path: Path) -> None:
    """A source with a null byte (a syntax error with no line) names the file, not "file:None"."""
    plugin = write_plugin(tmp_path)
    (plugin / "nul.py").write_bytes(b"x = 1\0\n")
    assert errors(run(str(plugin), str(tmp_path / "bin"))) == [
        'Error: plugin "foo": syntax error in foo/nul.py: source code string cannot contain null '
        "bytes; fix it and build again"]
    assert not (tmp_path / "bin").exists()


def test_output_folder_that_cannot_be_written(tmp_path: Path, monkeypatch) -> None:
    """An output folder that cannot be created or written is an Error: line, not a bug report."""
    plugin = write_plugin(tmp_path)
    out = tmp_path / "bin"

    def refuse_mkdir(self: Path, *args, **kwargs) -> None:
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patch:
        patch.setattr(Path, "mkdir", refuse_mkdir)
        assert errors(run(str(plugin), str(out))) == [
            f'Error: output folder "{out}" cannot be created (Permission denied); check the '
            "permissions of its parent or pass another folder"]

    def full(src, dst) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("hotswap_runtime.artifact.os.replace", full)
    assert errors(run(str(plugin), str(out))) == [
        f'Error: cannot write "{out / "foo.hsp"}" (No space left on device); check the free '
        "space and permissions of the output folder"]
    assert not out.exists()
