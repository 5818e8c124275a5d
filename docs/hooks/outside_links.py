"""Links from a page to a file outside ``docs/`` (``../bench/results/latest.md``,
``../deploy/README.md``) are written relative to the repository, so they work
on GitHub. The site carries a copy of each such file under ``repo/``
(Markdown rendered as a page, anything else as it is, Markdown's own links
followed the same way) and the link is pointed at the copy. A link to a file
that does not exist stays as it is, and MkDocs reports it (a failure under
``--strict``)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files, InclusionLevel

REPO = Path(__file__).resolve().parents[2]
MIRROR = "repo/"  # where the site keeps its copies of files outside docs/


_LINK = re.compile(r"(!?\[[^\]\n]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _outside_lines(markdown: str) -> Iterator[tuple[int, str]]:
    """(index, line) of every line outside fenced code."""
    fenced = False
    for index, line in enumerate(markdown.split("\n")):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield index, line


def _repo_path(src_uri: str) -> str:
    """A page's path in the repository."""
    if src_uri.startswith(MIRROR):
        return src_uri[len(MIRROR) :]
    return "docs/" + src_uri


def _site_uri(repo_path: str) -> tuple[str, str] | None:
    """Where a repository file is in the site, with its path in the
    repository (a folder: its README.md): docs/ as it is, anything else under
    repo/. None when it does not exist or is outside the repository."""
    if repo_path == ".." or repo_path.startswith("../"):
        return None
    target = REPO / repo_path
    if target.is_dir():
        if not (target / "README.md").is_file():
            return None
        repo_path = posixpath.join(repo_path, "README.md")
    elif not target.is_file():
        return None
    if repo_path.startswith("docs/"):
        return repo_path, repo_path[len("docs/") :]
    return repo_path, MIRROR + repo_path


def _resolve(url: str, page_repo_path: str) -> tuple[str, str, str] | None:
    """(repository path, site uri, fragment) of a relative link that reaches
    outside docs/ (or is written on a mirrored page), else None."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", url) or url.startswith(("#", "/")):
        return None
    path, _, fragment = url.partition("#")
    if not path:
        return None
    repo_path = posixpath.normpath(posixpath.join(posixpath.dirname(page_repo_path), path))
    if repo_path.startswith("docs/") and page_repo_path.startswith("docs/"):
        return None  # an ordinary link between pages: MkDocs checks it
    found = _site_uri(repo_path)
    if found is None:
        return None  # left as it is: MkDocs reports it
    return found[0], found[1], fragment


def _outside_targets(markdown: str, page_repo_path: str) -> Iterator[str]:
    """The repository paths of the files outside docs/ that ``markdown`` links to."""
    for _, line in _outside_lines(markdown):
        for match in _LINK.finditer(line):
            found = _resolve(match.group(2), page_repo_path)
            if found is not None and found[1].startswith(MIRROR):
                yield found[0]


def rewrite_links(markdown: str, page_src_uri: str) -> str:
    """``markdown`` with its links outside docs/ pointed at the site's copies."""
    page_repo_path = _repo_path(page_src_uri)
    lines = markdown.split("\n")
    for index, line in _outside_lines(markdown):

        def point(match: re.Match[str]) -> str:
            found = _resolve(match.group(2), page_repo_path)
            if found is None:
                return match.group(0)
            _, site, fragment = found
            url = posixpath.relpath(site, posixpath.dirname(page_src_uri) or ".")
            return f"{match.group(1)}{url}{'#' + fragment if fragment else ''}{match.group(3)}"

        lines[index] = _LINK.sub(point, line)
    return "\n".join(lines)


def mirror(files: Files, config: MkDocsConfig) -> None:
    """Add every repository file the pages link to outside docs/, and what
    those (Markdown) files link to in turn."""
    queue = [
        (_repo_path(file.src_uri), Path(file.abs_src_path))
        for file in files.documentation_pages()
        if file.abs_src_path
    ]
    done: set[str] = set()
    while queue:
        repo_path, source = queue.pop()
        for target in _outside_targets(source.read_text(encoding="utf-8"), repo_path):
            if target in done:
                continue
            done.add(target)
            src_uri = MIRROR + target
            if files.get_file_from_path(src_uri) is None:
                files.append(
                    File.generated(
                        config,
                        src_uri,
                        abs_src_path=str(REPO / target),
                        inclusion=InclusionLevel.NOT_IN_NAV,
                    )
                )
            if target.endswith(".md"):
                queue.append((target, REPO / target))
