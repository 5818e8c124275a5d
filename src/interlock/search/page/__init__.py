"""The search page served at ``/search``: plain HTML, one script, one
stylesheet, committed as they are served (no build step). The page talks to
``/api/v1/search`` and follows the task's event stream; see ``page.js``."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

__all__ = ["page_files"]

# URL path -> (file in this package, content type).
_FILES = {
    "/search": ("index.html", "text/html; charset=utf-8"),
    "/search/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/search/page.css": ("page.css", "text/css; charset=utf-8"),
}


def page_files() -> dict[str, tuple[bytes, str]]:
    """URL path -> (body, content type) for the page's three files."""
    return dict(_read())


@cache
def _read() -> tuple[tuple[str, tuple[bytes, str]], ...]:
    # Read from the installed package once, at the first request; immutable.
    package = files(__name__)
    return tuple(
        (path, (package.joinpath(name).read_bytes(), content_type))
        for path, (name, content_type) in _FILES.items()
    )
