"""The configuration reference page: every section and field of
``interlock.config.GatewayConfig`` and the pydantic models nested in it, with
its YAML path, type, default, constraints and description. The description
is what the code says: ``Field(description=...)``, else the field's own
``#`` comments in the class's source (the comment lines directly above it,
then any comment ending a line of its statement), else the docstring of the
section model it holds. A comment never carries over to the next field.
Nothing is copied by hand, so the page cannot drift from the models."""

from __future__ import annotations

import ast
import inspect
import io
import json
import re
import textwrap
import tokenize
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


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
    """Each field's own ``#`` comments in ``cls``'s source: the comment lines
    directly above it (a blank line ends them), then any comment ending a line
    of its statement (after code). A field with neither has no entry: it never
    shares the comment of the field before it."""
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
    for item in node.body:
        if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
            continue
        above: list[str] = []
        index = item.lineno - 2  # the line above, 0-based
        while index >= 0 and lines[index].strip().startswith("#"):
            above.insert(0, lines[index].strip().lstrip("#").strip())
            index -= 1
        end = item.end_lineno or item.lineno
        own = [text for line in range(item.lineno, end + 1) for text in trailing.get(line, [])]
        text = " ".join(part for part in [*above, *own] if part)
        if text:
            comments[item.target.id] = text
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
