"""The installed distribution exposes both halves and ships its type information."""

from importlib import resources

import hotswap_build
import hotswap_runtime


def test_version_and_public_names() -> None:
    """The version is a dotted string and the runtime's public names are exported."""
    assert hotswap_build.__version__.count(".") == 2
    assert "HotswapError" in hotswap_runtime.__all__


def test_py_typed_shipped() -> None:
    """Both packages carry the PEP 561 marker."""
    assert resources.files("hotswap_build").joinpath("py.typed").is_file()
    assert resources.files("hotswap_runtime").joinpath("py.typed").is_file()


def test_spec_import_line() -> None:
    """The import line of the README works as written, live data included."""
    from hotswap_runtime import (  # noqa: F401  # importing them is the test
        Details,
        HotswapError,
        Plugin,
        PluginManager,
        PluginManagerSwapper,
        StaticPlugin,
        Vault,
        live,
    )

    assert callable(live.wrap)


def test_runtime_import_stays_cheap() -> None:
    """A host importing hotswap_runtime pays for none of the build's libraries, msgspec or
    asyncio: each is imported only when its feature is used."""
    import subprocess
    import sys

    heavy = ("asyncio", "click", "jinja2", "libcst", "msgspec", "pytest", "hotswap_build")
    code = (f"import sys, hotswap_runtime; "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_ci_matrix_refuses_to_run_on_fewer_than_two_pythons(tmp_path) -> None:
    """.ci/test-all (what .ci/run runs after lint) fails at once, saying what to install, when
    it finds only one CPython >= 3.11: a matrix of one proves nothing about the others."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    only = tmp_path / "bin"
    only.mkdir()
    # one interpreter, and the tools the script needs, but no pyenv and no other python3.X
    os.symlink(sys.executable, only / f"python3.{sys.version_info[1]}")
    for tool in ("bash", "seq", "sort", "cut", "sha256sum", "mktemp", "rm", "cat", "grep",
                 "tail", "env", "dirname"):
        found = shutil.which(tool)
        assert found, tool
        os.symlink(found, only / tool)
    done = subprocess.run([str(repo / ".ci" / "test-all")], capture_output=True, text=True,
                          timeout=60, env={"PATH": str(only), "HOME": str(tmp_path)})
    assert done.returncode == 1
    assert done.stdout.startswith(f"Pythons found: 3.{sys.version_info[1]} ")
    assert done.stderr.strip() == ("error: fewer than two CPython >= 3.11 found (python3.X on "
                                   "PATH, pyenv); install another")
