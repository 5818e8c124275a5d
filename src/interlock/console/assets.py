"""The console's static files: its stylesheet and script, committed as they
are served, and plotly.js from the ``plotly`` package's own copy (the
Python package is installed only for that file and never imported), so
the charts need no network and no build step.

Each file is read once, compressed once, and served with a long cache
lifetime: the page links them with the package's version in the URL, so a
new release is a new URL.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

__all__ = ["Asset", "asset", "asset_version"]

# URL name -> content type; "plotly.min.js" comes from the plotly package.
_TYPES = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "plotly.min.js": "text/javascript; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes
    content_type: str


@cache
def asset_version() -> str:
    """Part of every asset URL: changes when the files may have."""
    return f"{importlib.metadata.version('interlock')}-{importlib.metadata.version('plotly')}"


def asset(name: str) -> Asset | None:
    """The file served as ``/console/assets/<name>``, or None."""
    if name not in _TYPES:
        return None
    return _load(name)


@cache
def _load(name: str) -> Asset:
    if name == "plotly.min.js":
        body = _plotly_path().read_bytes()
    else:
        body = files("interlock.console").joinpath("static", name).read_bytes()
    return Asset(body, gzip.compress(body, compresslevel=6, mtime=0), _TYPES[name])


def _plotly_path() -> Path:
    spec = importlib.util.find_spec("plotly")  # finds it without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the plotly package is missing: reinstall interlock")
    return Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
