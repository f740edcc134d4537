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
