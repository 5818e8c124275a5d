"""JSON Schema (what OpenAI's ``tools`` and ``response_format`` carry) to
Gemini's ``Schema`` (an OpenAPI 3.0 subset), no I/O.

Gemini refuses a whole request for one keyword it does not know, so the
conversion keeps only the keywords Gemini documents and rewrites the JSON
Schema idioms it has no word for:

- local ``$ref`` to ``$defs`` / ``definitions`` (what pydantic emits for
  nested models) is inlined; a recursive one cannot be, and is a 400 naming
  the request parameter the schema came from;
- ``"type": [T, "null"]``, ``anyOf``/``oneOf`` with a ``null`` branch and
  ``null`` in ``enum`` become ``nullable``; ``oneOf`` becomes ``anyOf``;
  ``allOf`` is merged into one schema;
- ``const`` becomes a one-value ``enum``; ``enum`` is kept for strings only
  (Gemini's enums are string-valued), other enums keep just their type;
- ``examples`` becomes ``example``; ``format`` is kept where Gemini knows it
  for the type (``date-time``, ``enum``; ``int32``/``int64``;
  ``float``/``double``);
- ``properties`` get ``propertyOrdering`` in the schema's own order, so the
  answer's keys come in the order the caller declared them (as OpenAI's do);
- everything else (``additionalProperties``, ``$schema``, ``strict``,
  ``exclusiveMinimum``, ...) is dropped: it narrows what is valid, and the
  model still answers within the remaining constraints.

Types are written in Gemini's enum spelling (``STRING``, ``OBJECT``...).
"""

from __future__ import annotations

from typing import Any

from interlock.errors import InvalidRequest
from interlock.providers.base import JSONDict

__all__ = ["gemini_schema"]

# Keywords copied as they are (after their values are converted where needed).
_PLAIN = (
    "title",
    "description",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "minProperties",
    "maxProperties",
    "default",
    "example",
)
_TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
}
_FORMATS = {
    "STRING": frozenset({"date-time", "enum"}),
    "INTEGER": frozenset({"int32", "int64"}),
    "NUMBER": frozenset({"float", "double"}),
}
# Deeper than any schema a person or pydantic writes; bounds the recursion.
_MAX_DEPTH = 64


def gemini_schema(schema: JSONDict, param: str) -> JSONDict:
    """Gemini's ``Schema`` for the JSON Schema ``schema``; ``param`` names the
    request parameter it came from, for the 400 when it cannot be converted."""
    defs: JSONDict = {}
    for key in ("definitions", "$defs"):
        if isinstance(schema.get(key), dict):
            defs.update(schema[key])
    return _Converter(defs, param).convert(schema, (), 0)


class _Converter:
    def __init__(self, defs: JSONDict, param: str):
        self._defs = defs
        self._param = param

    def _refuse(self, why: str) -> InvalidRequest:
        return InvalidRequest(
            f"The JSON Schema cannot be used with Gemini: {why}.", param=self._param
        )

    def convert(self, node: Any, refs: tuple[str, ...], depth: int) -> JSONDict:
        if depth > _MAX_DEPTH:
            raise self._refuse(f"it nests deeper than {_MAX_DEPTH} levels")
        if node is True or node is None:
            return {}
        if not isinstance(node, dict):
            raise self._refuse("a subschema is not an object")
        node, refs = self._resolved(node, refs)
        if isinstance(node.get("allOf"), list):
            node = self._merged(node, refs)
        for key in ("anyOf", "oneOf"):
            if isinstance(node.get(key), list):
                return self._union(node, node[key], refs, depth)
        return self._single(node, refs, depth)

    def _resolved(self, node: JSONDict, refs: tuple[str, ...]) -> tuple[JSONDict, tuple[str, ...]]:
        """``node`` with its ``$ref`` replaced by the definition (the node's
        own keywords, such as a description, win)."""
        seen = refs
        while isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in seen:
                raise self._refuse(
                    f"`{ref}` refers to itself (recursive schemas are not supported)"
                )
            target = self._definition(ref)
            seen = (*seen, ref)
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return node, seen

    def _definition(self, ref: str) -> JSONDict:
        for prefix in ("#/$defs/", "#/definitions/"):
            if ref.startswith(prefix):
                target = self._defs.get(ref.removeprefix(prefix))
                if isinstance(target, dict):
                    return target
        raise self._refuse(f"`$ref` `{ref}` is not a local definition (`#/$defs/...`)")

    def _merged(self, node: JSONDict, refs: tuple[str, ...]) -> JSONDict:
        """``allOf`` folded into one schema: pydantic wraps a described
        ``$ref`` in it; several object parts combine their properties."""
        merged: JSONDict = {k: v for k, v in node.items() if k != "allOf"}
        for part in node["allOf"]:
            if not isinstance(part, dict):
                continue
            part, _ = self._resolved(part, refs)
            properties = {**merged.get("properties", {}), **part.get("properties", {})}
            required = [*merged.get("required", []), *part.get("required", [])]
            merged = {**part, **merged}
            if properties:
                merged["properties"] = properties
            if required:
                merged["required"] = list(dict.fromkeys(required))
        return merged

    def _union(
        self, node: JSONDict, branches: list[Any], refs: tuple[str, ...], depth: int
    ) -> JSONDict:
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
        nullable = any(_is_null(b) for b in branches)
        kept = [self.convert(b, refs, depth + 1) for b in branches if not _is_null(b)]
        if len(kept) == 1:
            out = {**kept[0], **self._single(rest, refs, depth, typed=False)}
        else:
            out = {**self._single(rest, refs, depth, typed=False), "anyOf": kept}
        if nullable:
            out["nullable"] = True
        return out

    def _single(
        self, node: JSONDict, refs: tuple[str, ...], depth: int, *, typed: bool = True
    ) -> JSONDict:
        out: JSONDict = {}
        types = node.get("type")
        types = [types] if isinstance(types, str) else types if isinstance(types, list) else []
        nullable = "null" in types or node.get("nullable") is True
        named = [_TYPES[t] for t in types if t in _TYPES]
        if len(named) > 1:  # ["string", "integer"]: one branch per type
            rest = {k: v for k, v in node.items() if k != "type"}
            branches = [self._single({**rest, "type": t.lower()}, refs, depth) for t in named]
            return {"anyOf": branches, "nullable": True} if nullable else {"anyOf": branches}
        kind = named[0] if named else _implied_type(node) if typed else None
        if kind is not None:
            out["type"] = kind
        if nullable:
            out["nullable"] = True
        for key in _PLAIN:
            if key in node:
                out[key] = node[key]
        if "example" not in out and isinstance(node.get("examples"), list) and node["examples"]:
            out["example"] = node["examples"][0]
        if isinstance(node.get("format"), str) and node["format"] in _FORMATS.get(kind or "", ()):
            out["format"] = node["format"]
        self._enum(node, out)
        if isinstance(node.get("properties"), dict):
            properties = {
                name: self.convert(sub, refs, depth + 1) for name, sub in node["properties"].items()
            }
            out["properties"] = properties
            if properties:
                out["propertyOrdering"] = list(properties)
            required = node.get("required")
            if isinstance(required, list):
                out["required"] = [r for r in required if r in properties]
        items, prefix = node.get("items"), node.get("prefixItems")
        if items in (None, False) and isinstance(prefix, list) and prefix:
            # A tuple: Gemini has no positions, so each item may be any of them.
            items = prefix[0] if len(prefix) == 1 else {"anyOf": prefix}
        if items is True or isinstance(items, dict):
            out["items"] = self.convert(items, refs, depth + 1)
        return out

    @staticmethod
    def _enum(node: JSONDict, out: JSONDict) -> None:
        values = [node["const"]] if "const" in node else node.get("enum")
        if not isinstance(values, list):
            return
        if None in values:
            out["nullable"] = True
        values = [v for v in values if v is not None]
        if values and all(isinstance(v, str) for v in values):
            out["type"] = "STRING"
            out["enum"] = values
        elif "type" not in out and values:
            out["type"] = _value_type(values[0])


def _is_null(branch: Any) -> bool:
    return isinstance(branch, dict) and branch.get("type") == "null"


def _implied_type(node: JSONDict) -> str | None:
    if "properties" in node:
        return "OBJECT"
    if "items" in node or "prefixItems" in node:
        return "ARRAY"
    return None


def _value_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int):
        return "INTEGER"
    if isinstance(value, float):
        return "NUMBER"
    if isinstance(value, list):
        return "ARRAY"
    if isinstance(value, dict):
        return "OBJECT"
    return "STRING"
