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
    """The import line of SPEC section 4 works as written, live data included."""
    from hotswap_runtime import (  # noqa: F401
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
