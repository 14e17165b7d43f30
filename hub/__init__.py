"""ROP Hub: the Ralali Open Platform core.

Plugins import their marker from here: ``from hub import hookimpl``.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rop-hub")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

from hub.plugins.markers import hookimpl, hookspec

__all__ = ["__version__", "hookimpl", "hookspec"]
