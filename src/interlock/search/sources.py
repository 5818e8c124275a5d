"""What ``interlock search index`` reads: JSONL files, and directories of pages.

- ``*.jsonl``: one JSON object a line, ``{"title", "url", "body"}`` (``text``
  is accepted for ``body``; ``title`` defaults to the url). Bodies are taken
  as plain text.
- A directory: every ``.md``, ``.markdown``, ``.txt``, ``.htm`` and ``.html``
  file under it, recursively (hidden files and directories skipped). The
  title is the first heading (Markdown ``#``, HTML ``<title>`` then
  ``<h1>``), else the file name; HTML is reduced to its text with the
  standard library's ``html.parser``, Markdown loses its markup. The url is
  the path relative to the directory's parent: indexing ``docs/`` gives
  ``docs/decisions/0001-http-stack.md``, wherever the command runs.
- A single ``.md``/``.txt``/``.html`` file: as above, its url its file name.

``SourceError`` says which file (and line) could not be read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["PAGE_SUFFIXES", "Document", "SourceError", "open_sources", "read_jsonl", "read_page"]

PAGE_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".htm", ".html"})


@dataclass(frozen=True, slots=True)
class Document:
    """One document to index; ``url`` is its identity."""

    title: str
    url: str
    body: str


class SourceError(Exception):
    """A source that cannot be indexed: missing, unreadable or malformed."""


def open_sources(paths: Sequence[Path]) -> tuple[int, Iterator[Document]]:
    """How many documents ``paths`` hold, and the documents, read lazily."""
    plan: list[tuple[Path, Path | None]] = []  # (file, directory it came from)
    total = 0
    for path in paths:
        if not path.exists():
            raise SourceError(f"{path}: no such file or directory")
        if path.is_dir():
            pages = sorted(_pages(path))
            plan.extend((page, path) for page in pages)
            total += len(pages)
        elif path.suffix == ".jsonl":
            plan.append((path, None))
            total += _count_lines(path)
        elif path.suffix.lower() in PAGE_SUFFIXES:
            plan.append((path, None))
            total += 1
        else:
            raise SourceError(f"{path}: not a directory, .jsonl or page ({_suffixes()})")
    return total, _read(plan)


def _read(plan: list[tuple[Path, Path | None]]) -> Iterator[Document]:
    for path, root in plan:
        if path.suffix == ".jsonl":
            yield from read_jsonl(path)
        else:
            url = path.relative_to(root.parent) if root is not None else Path(path.name)
            yield read_page(path, url.as_posix())


def read_jsonl(path: Path) -> Iterator[Document]:
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    yield _record(json.loads(line), f"{path}:{number}")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}:{number}: not JSON ({exc.msg})") from None


def _record(raw: object, where: str) -> Document:
    if not isinstance(raw, dict):
        raise SourceError(f"{where}: expected an object with title, url and body")
    url, title, body = raw.get("url"), raw.get("title"), raw.get("body", raw.get("text"))
    if not isinstance(url, str) or not url.strip():
        raise SourceError(f"{where}: url must be a non-empty string")
    if not isinstance(body, str):
        raise SourceError(f"{where}: body (or text) must be a string")
    if title is not None and not isinstance(title, str):
        raise SourceError(f"{where}: title must be a string")
    return Document(title=(title or url).strip(), url=url.strip(), body=body.strip())


def read_page(path: Path, url: str) -> Document:
    """One Markdown, text or HTML file as a document."""
    try:
        raw = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SourceError(f"{path}: {exc}") from None
    suffix = path.suffix.lower()
    if suffix in (".htm", ".html"):
        title, body = _html(raw)
    elif suffix in (".md", ".markdown"):
        title, body = _markdown(raw)
    else:
        title, body = None, raw.strip()
    return Document(title=title or _title_from_name(path), url=url, body=body)


def _pages(directory: Path) -> Iterator[Path]:
    for path in directory.rglob("*"):
        hidden = any(part.startswith(".") for part in path.relative_to(directory).parts)
        if not hidden and path.suffix.lower() in PAGE_SUFFIXES and path.is_file():
            yield path


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as raw:
            return sum(1 for line in raw if line.strip())
    except OSError as exc:
        raise SourceError(f"{path}: {exc}") from None


def _suffixes() -> str:
    return ", ".join(sorted(PAGE_SUFFIXES))


def _title_from_name(path: Path) -> str:
    words = re.sub(r"[-_]+", " ", path.stem).strip()
    return words[:1].upper() + words[1:] if words else path.name


# -- Markdown ---------------------------------------------------------------------

_MD_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_MD_RULES = [
    (re.compile(r"^ {0,3}(```|~~~).*$", re.MULTILINE), ""),  # code fences
    (re.compile(r"^ {0,3}#{1,6}\s+", re.MULTILINE), ""),  # heading marks
    (re.compile(r"^\s*\|?[\s:|-]*-{3,}[\s:|-]*$", re.MULTILINE), ""),  # table rules
    (re.compile(r"!?\[([^\]]*)\]\([^)]*\)"), r"\1"),  # links and images: their text
    (re.compile(r"\[([^\]]*)\]\[[^\]]*\]"), r"\1"),  # reference links
    (re.compile(r"<[^>\n]+>"), ""),  # inline HTML
    (re.compile(r"`+|\*\*|__|^\s*>\s?|\|", re.MULTILINE), " "),  # code, bold, quotes, cells
    (re.compile(r"[ \t]+"), " "),
    (re.compile(r"\n\s*\n+"), "\n\n"),
]


def _markdown(raw: str) -> tuple[str | None, str]:
    heading = _MD_HEADING.search(raw)
    text = raw
    for pattern, replacement in _MD_RULES:
        text = pattern.sub(replacement, text)
    title = _strip_inline(heading.group(1)) if heading else None
    return title, text.strip()


def _strip_inline(text: str) -> str:
    for pattern, replacement in _MD_RULES[3:8]:
        text = pattern.sub(replacement, text)
    return text.strip()


# -- HTML -------------------------------------------------------------------------

_SKIPPED = frozenset({"script", "style", "noscript", "template", "svg"})
_BLOCKS = frozenset(
    "address article aside blockquote br dd div dl dt figcaption footer form h1 h2 h3 h4 h5 "
    "h6 header hr li main nav ol p pre section table td th tr ul".split()
)


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self.heading: list[str] = []
        self._skipping: list[str] = []
        self._in: str | None = None  # "title" or "h1" while inside the first of each

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and not self.title:
            self._in = "title"
        elif tag in _SKIPPED:
            self._skipping.append(tag)
        elif tag == "h1" and not self.heading:
            self._in = "h1"
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None
        if self._skipping and tag == self._skipping[-1]:
            self._skipping.pop()
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in == "title":
            self.title.append(data)
            return
        if self._skipping:
            return
        if self._in == "h1":
            self.heading.append(data)
        self.parts.append(data)


def _html(raw: str) -> tuple[str | None, str]:
    parser = _HtmlText()
    parser.feed(raw)
    parser.close()
    title = " ".join("".join(parser.title).split()) or " ".join("".join(parser.heading).split())
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return title or None, "\n".join(line for line in lines if line)
