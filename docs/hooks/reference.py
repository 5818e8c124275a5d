"""MkDocs hooks (``hooks:`` in mkdocs.yml): the generated reference pages, and
the repository's files that the documentation links to outside ``docs/``.

- ``reference/configuration.md``: every section and field of
  ``interlock.config.GatewayConfig`` and the pydantic models nested in it,
  with its YAML path, type, default, constraints and description. The
  description is what the code says: ``Field(description=...)``, else the
  ``#`` comment lines directly above the field (or on its line) in the class's
  source, else the docstring of the section it holds. Nothing is copied by
  hand, so the page cannot drift from the models.
- ``reference/api.md`` and ``openapi.json``: every route of the OpenAPI
  document the gateway serves at ``GET /openapi.json``, built the same way
  (``interlock.api.openapi.build_document``) without starting a server.
- Links from a page to a file outside ``docs/`` (``../bench/results/latest.md``,
  ``../deploy/README.md``) are written relative to the repository, so they
  work on GitHub. The site carries a copy of each such file under ``repo/``
  (Markdown rendered as a page, anything else as it is, Markdown's own
  links followed the same way) and the link is pointed at the copy. A link
  to a file that does not exist stays as it is, and MkDocs reports it (a
  failure under ``--strict``).
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import logging
import posixpath
import re
import textwrap
import tokenize
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files, InclusionLevel
from mkdocs.structure.pages import Page
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

log = logging.getLogger("mkdocs.hooks.reference")

REPO = Path(__file__).resolve().parents[2]
MIRROR = "repo/"  # where the site keeps its copies of files outside docs/
CONFIG_PAGE = "reference/configuration.md"
API_PAGE = "reference/api.md"
OPENAPI_FILE = "openapi.json"
CLI_PAGE = "cli.md"  # written apart; this stands in while it is missing
CLI_PLACEHOLDER = """# CLI

The CLI reference is generated from `interlock --help` (and each
subcommand's `--help`); run `interlock --help` for it.
"""


# -- Configuration reference ------------------------------------------------


@dataclass(frozen=True)
class FieldDoc:
    path: str  # the YAML path: models[].deployments[].timeouts.connect_s
    name: str
    type: str
    default: str
    constraints: str
    description: str


@dataclass(frozen=True)
class SectionDoc:
    path: str  # "" for the top level
    model: type[BaseModel]
    doc: str
    fields: tuple[FieldDoc, ...]


def _clean_doc(text: str | None) -> str:
    return " ".join(inspect.cleandoc(text).split()) if text else ""


def _class_comments(cls: type) -> dict[str, str]:
    """Each field's ``#`` comments in ``cls``'s own source: the comment lines
    directly above it, then a comment on its own lines. A field without
    lines above it, on the line right after a field with some, shares them
    (a comment above a group of fields)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    tree = ast.parse(source)
    node = tree.body[0]
    if not isinstance(node, ast.ClassDef):
        return {}
    lines = source.splitlines()
    trailing: dict[int, list[str]] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and token.line[: token.start[1]].strip():
            trailing.setdefault(token.start[0], []).append(token.string.lstrip("#").strip())
    comments: dict[str, str] = {}
    previous: tuple[int, str] | None = None  # (end line, comment) of the field before
    for item in node.body:
        if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
            previous = None
            continue
        above: list[str] = []
        index = item.lineno - 2  # the line above, 0-based
        while index >= 0 and lines[index].strip().startswith("#"):
            above.insert(0, lines[index].strip().lstrip("#").strip())
            index -= 1
        end = item.end_lineno or item.lineno
        own = [text for line in range(item.lineno, end + 1) for text in trailing.get(line, [])]
        group = " ".join(part for part in above if part)
        if not group and previous is not None and previous[0] == item.lineno - 1:
            group = previous[1]
        text = " ".join(part for part in [group, *own] if part)
        if text:
            comments[item.target.id] = text
        previous = (end, group) if group else None
    return comments


def field_comments(model: type[BaseModel]) -> dict[str, str]:
    """The comments of ``model``'s fields, inherited ones included."""
    found: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if isinstance(cls, type) and issubclass(cls, BaseModel) and cls is not BaseModel:
            found.update(_class_comments(cls))
    return found


def _type_args(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    origin = typing.get_origin(annotation)
    return origin, typing.get_args(annotation)


def type_name(annotation: Any) -> str:
    """A short, readable name for a field's type."""
    origin, args = _type_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in args)
    if origin is typing.Literal:
        return " | ".join(json.dumps(arg) for arg in args)
    if origin in (list, tuple, set, frozenset):
        inner = [type_name(arg) for arg in args if arg is not Ellipsis]
        return f"list[{', '.join(inner)}]" if inner else "list"
    if origin is dict:
        return f"dict[{', '.join(type_name(arg) for arg in args)}]" if args else "dict"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _models_in(annotation: Any, suffix: str = "") -> Iterator[tuple[str, type[BaseModel]]]:
    """The pydantic models a field's type holds, each with the path suffix
    that reaches it: ``[]`` for a list item, ``.<name>`` for a mapping's value."""
    origin, args = _type_args(annotation)
    if origin is typing.Annotated:
        yield from _models_in(args[0], suffix)
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from _models_in(arg, suffix)
    elif origin in (list, tuple, set, frozenset):
        for arg in args:
            if arg is not Ellipsis:
                yield from _models_in(arg, suffix + "[]")
    elif origin is dict and len(args) == 2:
        yield from _models_in(args[1], suffix + ".<name>")
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield suffix, annotation


def _jsonable(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "(its fields' defaults)"
    try:
        return json.dumps(value, default=_json_default)
    except (TypeError, ValueError):
        return repr(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(type(value).__name__)


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        try:
            value = field.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "(computed)"
        return _jsonable(value)
    if field.default is PydanticUndefined:
        return "required"
    return _jsonable(field.default)


_BOUNDS = {
    annotated_types.Gt: ("gt", "> {}"),
    annotated_types.Ge: ("ge", ">= {}"),
    annotated_types.Lt: ("lt", "< {}"),
    annotated_types.Le: ("le", "<= {}"),
    annotated_types.MultipleOf: ("multiple_of", "multiple of {}"),
    annotated_types.MinLen: ("min_length", "at least {} long"),
    annotated_types.MaxLen: ("max_length", "at most {} long"),
}


def constraints_text(field: FieldInfo) -> str:
    parts: list[str] = []
    for item in field.metadata:
        bound = _BOUNDS.get(type(item))
        if bound is not None:
            parts.append(bound[1].format(getattr(item, bound[0])))
            continue
        pattern = getattr(item, "pattern", None)
        if pattern is not None:
            parts.append(f"matches {pattern}")
            continue
        parts.append(str(item))
    return ", ".join(parts)


def config_sections(root: type[BaseModel] | None = None) -> list[SectionDoc]:
    """Every section (model, with the YAML path reaching it) under ``root``,
    depth first, in the order the fields are declared."""
    if root is None:
        from interlock.config import GatewayConfig

        root = GatewayConfig
    sections: list[SectionDoc] = []

    def walk(model: type[BaseModel], path: str, seen: tuple[type[BaseModel], ...]) -> None:
        comments = field_comments(model)
        fields: list[FieldDoc] = []
        nested: list[tuple[str, type[BaseModel]]] = []
        for name, field in model.model_fields.items():
            key = field.alias or name
            field_path = f"{path}.{key}" if path else key
            held = list(_models_in(field.annotation))
            description = _clean_doc(field.description) or comments.get(name, "")
            if not description and held:
                description = _clean_doc(held[0][1].__doc__)
            fields.append(
                FieldDoc(
                    path=field_path,
                    name=key,
                    type=type_name(field.annotation),
                    default=default_text(field),
                    constraints=constraints_text(field),
                    description=description,
                )
            )
            nested += [(field_path + suffix, held_model) for suffix, held_model in held]
        sections.append(SectionDoc(path, model, _clean_doc(model.__doc__), tuple(fields)))
        for nested_path, held_model in nested:
            if held_model not in seen:
                walk(held_model, nested_path, (*seen, held_model))

    walk(root, "", (root,))
    return sections


def _code(text: str) -> str:
    return f"`{text}`" if "`" not in text else f"``{text}``"


def configuration_page(sections: list[SectionDoc] | None = None) -> str:
    sections = config_sections() if sections is None else sections
    out = [
        "# Configuration reference",
        "",
        "Generated when the site is built from the config models in "
        "`src/interlock/config/` (`interlock.config.GatewayConfig` and every model "
        "nested in it): the types, defaults and constraints the loader enforces, and "
        "the comment the code gives each field. Edit the models, not this page. "
        "[Configuration](../guide/configuration.md) introduces the file; "
        "`interlock check-config FILE` validates one.",
        "",
        "A path's `[]` is an item of a list, `<name>` a key of a mapping. "
        "`guardrails` is checked by `interlock.guardrails.GuardrailsConfig` at "
        "start-up: see [Guardrails](../guide/guardrails.md).",
        "",
        "## Sections",
        "",
    ]
    for section in sections:
        title = _code(section.path) if section.path else "Top level"
        out.append(f"- [{title}](#{_anchor(section)}): {section.model.__name__}")
    for section in sections:
        title = _code(section.path) if section.path else "Top level"
        out += ["", f"## {title}: {section.model.__name__} {{#{_anchor(section)}}}", ""]
        out.append(f"`{section.model.__module__}.{section.model.__qualname__}`")
        if section.doc:
            out += ["", section.doc]
        out.append("")
        for field in section.fields:
            facts = [f"type {_code(field.type)}", f"default {_code(field.default)}"]
            if field.default == "required":
                facts[1] = "**required**"
            if field.constraints:
                facts.append(field.constraints)
            line = f"- **{_code(field.path)}**: {'; '.join(facts)}."
            if field.description:  # on a line of its own (a Markdown line break)
                line += "  \n    " + field.description.replace("<", "&lt;")
            out.append(line)
    return "\n".join(out) + "\n"


def _anchor(section: SectionDoc) -> str:
    """Unique: a path may hold one of several models (``search.backends[]``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", section.path.lower()).strip("-") or "top-level"
    return f"{slug}--{section.model.__name__.lower()}"


# -- API reference ----------------------------------------------------------


def openapi_document() -> dict[str, Any]:
    """The document ``GET /openapi.json`` serves, built without a server."""
    from interlock.api.openapi import document_bytes

    document: dict[str, Any] = json.loads(document_bytes())
    return document


_METHODS = ("get", "post", "put", "patch", "delete")


def api_routes(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every (METHOD, path, operation) of the document, sorted by path."""
    return [
        (method.upper(), path, item[method])
        for path, item in sorted(document["paths"].items())
        for method in _METHODS
        if method in item
    ]


def _ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def api_page(document: dict[str, Any]) -> str:
    out = [
        "# API reference",
        "",
        f"Generated when the site is built from the OpenAPI {document['openapi']} "
        "document the gateway serves at `GET /openapi.json` "
        "(`interlock.api.openapi`: request schemas from the pydantic models the edges "
        "validate with, the rest from `api/openapi_routes.py`). "
        f"Download it: [openapi.json](../{OPENAPI_FILE}). A running gateway also "
        "serves it browsable at `/docs` (Swagger UI, offline). "
        "[HTTP API](../guide/http-api.md) describes what every endpoint shares "
        "(authentication, errors, bounds).",
        "",
        "Every error answer is an `InterlockError` (OpenAI's error shape; "
        "Anthropic's on `/v1/messages`).",
        "",
    ]
    tags = {tag["name"]: tag.get("description", "") for tag in document.get("tags", [])}
    routes = api_routes(document)
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for route in routes:
        by_tag.setdefault(route[2].get("tags", ["Other"])[0], []).append(route)
    for tag in [*tags, *sorted(set(by_tag) - set(tags))]:
        if tag not in by_tag:
            continue
        out += [f"## {tag}", ""]
        if tags.get(tag):
            out += [tags[tag], ""]
        for method, path, operation in by_tag[tag]:
            out.append(f"### `{method} {path}`")
            out.append("")
            out.append(operation.get("summary", ""))
            out.append("")
            auth = [
                " and ".join(f"`{name}`" for name in option) or "none"
                for option in operation.get("security", [])
            ]
            out.append(f"- Operation: `{operation.get('operationId', '')}`")
            out.append(f"- Authentication: {', or '.join(auth) if auth else 'none'}")
            body = operation.get("requestBody")
            if body:
                for media, content in body.get("content", {}).items():
                    name = _ref_name(content.get("schema", {})) or "inline"
                    out.append(f"- Request body ({media}): schema `{name}`")
            else:
                out.append("- Request body: none")
            for status, response in operation.get("responses", {}).items():
                if status == "default":
                    ref = _ref_name(response) or "Error"
                    out.append(f"- Otherwise: `{ref}` (`InterlockError`)")
                    continue
                media = ", ".join(f"`{m}`" for m in response.get("content", {})) or "no body"
                out.append(f"- Response {status} ({media}): {response.get('description', '')}")
            out.append("")
    schemas = sorted(document["components"].get("schemas", {}))
    out += ["## Schemas", "", "Components of the document, by name:", ""]
    out += [f"- `{name}`" for name in schemas]
    return "\n".join(out) + "\n"


# -- Links to the repository outside docs/ ----------------------------------

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


def _mirror(files: Files, config: MkDocsConfig) -> None:
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


# -- The hooks ----------------------------------------------------------------


def on_files(files: Files, config: MkDocsConfig) -> Files:
    document = openapi_document()
    files.append(File.generated(config, CONFIG_PAGE, content=configuration_page()))
    files.append(File.generated(config, API_PAGE, content=api_page(document)))
    content = json.dumps(document, indent=2, sort_keys=False) + "\n"
    files.append(File.generated(config, OPENAPI_FILE, content=content))
    if files.get_file_from_path(CLI_PAGE) is None:
        files.append(File.generated(config, CLI_PAGE, content=CLI_PLACEHOLDER))
    _mirror(files, config)
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    return rewrite_links(markdown, page.file.src_uri)
