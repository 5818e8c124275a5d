"""The pipeline's request schemas: OpenAI's, used to *validate* bodies.

Every edge's request arrives in these shapes (an edge for another dialect
translates into them), and the validate stage checks it against them. The
validated models are not forwarded: the client's own JSON object is, so
unknown fields pass through to OpenAI-compatible upstreams the way OpenAI
itself tolerates them. Validation is strict about types (``"1"`` is not an
integer) because OpenAI is.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from interlock.errors import InvalidRequest

__all__ = ["ChatCompletionRequest", "EmbeddingRequest", "validate_body"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(_Open):
    include_usage: bool | None = None


class ChatCompletionRequest(_Open):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=128)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    user: str | None = None


# OpenAI's documented bound on inputs in one embeddings request.
MAX_EMBEDDING_INPUTS = 2048
# Above any model's today (OpenAI's largest: 3,072); a sanity bound, so no
# request can ask a backend for an absurd vector.
MAX_EMBEDDING_DIMENSIONS = 16384


class EmbeddingRequest(_Open):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1, le=MAX_EMBEDDING_DIMENSIONS)

    @field_validator("input")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        # Checked after the union, so the error names the bound, not a member.
        many = isinstance(value, list) and value and not isinstance(value[0], int)
        if many and len(value) > MAX_EMBEDDING_INPUTS:
            raise PydanticCustomError(
                "too_long",
                "an embeddings request takes at most {limit} inputs, got {count}",
                {"limit": MAX_EMBEDDING_INPUTS, "count": len(value)},
            )
        return value

    user: str | None = None


def _param(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"str", "list[str]", "list[int]", "list[list[int]]"} or "[" in part:
            break  # pydantic names union members in the location; hide them
        else:
            out += f".{part}" if out else part
    return out


M = TypeVar("M", bound=BaseModel)


def validate_body(schema: type[M], body: dict[str, Any]) -> M:
    """Validate ``body`` or raise a 400 naming the first offending parameter."""
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = _param(first["loc"])
        if first["type"] == "missing":
            raise InvalidRequest(
                f"Missing required parameter: '{param}'.",
                param=param,
                code="missing_required_parameter",
            ) from None
        raise InvalidRequest(
            f"Invalid value for '{param}': {first['msg']}." if param else first["msg"],
            param=param or None,
            code="invalid_value",
        ) from None
