"""The pipeline's request schemas: OpenAI's, used to *validate* bodies.

Every edge's request arrives in these shapes (an edge for another dialect
translates into them), and the validate stage checks it against them. The
validated models are not forwarded: the client's own JSON object is, so
unknown fields pass through to OpenAI-compatible upstreams the way OpenAI
itself tolerates them. Validation is strict about types (``"1"`` is not an
integer) because OpenAI is.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from interlock.errors import InvalidRequest

__all__ = [
    "DATATYPES",
    "ChatCompletionRequest",
    "Datatype",
    "EmbeddingRequest",
    "InferRequest",
    "InferTensor",
    "Metadata",
    "ModerationRequest",
    "flat_data",
    "validate_body",
]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(_Open):
    include_usage: bool | None = None


# OpenAI's bounds on a request's metadata: 16 pairs, keys up to 64
# characters, values up to 512.
Metadata = Annotated[
    dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
    Field(max_length=16),
]


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
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    user: str | None = None
    # Kept by the gateway for the key that asked (``api/chat_store.py``).
    store: bool | None = None
    metadata: Metadata | None = None


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


# Inputs one moderation request may carry (OpenAI documents none; a bound all the same).
MAX_MODERATION_INPUTS = 1024


class ModerationText(_Open):
    type: Literal["text"]
    text: str


class ModerationImageURL(_Open):
    url: str = Field(min_length=1)


class ModerationImage(_Open):
    type: Literal["image_url"]
    image_url: ModerationImageURL


class ModerationRequest(_Open):
    model: str = Field(min_length=1)
    # One text, several texts, or the parts of one multimodal input.
    input: str | list[str] | list[ModerationText | ModerationImage] = Field(
        min_length=1, max_length=MAX_MODERATION_INPUTS
    )

    @field_validator("input", mode="before")
    @classmethod
    def _known_parts(cls, value: Any) -> Any:
        # Before the union, so the error says which part is wrong, not which member failed.
        if isinstance(value, list):
            for index, part in enumerate(value):
                kind = part.get("type") if isinstance(part, dict) else None
                if isinstance(part, dict) and kind not in ("text", "image_url"):
                    raise PydanticCustomError(
                        "unsupported_part",
                        "input[{index}] is a '{kind}' part: only 'text' and 'image_url' are",
                        {"index": index, "kind": str(kind)},
                    )
        return value


# KServe v2 / Open Inference Protocol tensor datatypes.
Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
DATATYPES: tuple[str, ...] = get_args(Datatype)
# Sanity bounds: the body size limit bounds the data itself.
MAX_INFER_TENSORS = 64
MAX_TENSOR_RANK = 8


def flat_data(data: Any) -> list[Any]:
    """A tensor's ``data`` in row-major order: the protocol allows it flat or
    nested as the shape; nested lists are flattened, a flat list is returned
    as it is."""
    if not data or not isinstance(data[0], list):
        return list(data) if not isinstance(data, list) else data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


class InferTensor(_Open):
    """One input tensor: row-major ``data`` (flat, or nested as ``shape``)."""

    name: str = Field(min_length=1)
    shape: list[int] = Field(max_length=MAX_TENSOR_RANK)
    datatype: Datatype
    data: list[Any]
    parameters: dict[str, Any] | None = None

    @field_validator("shape")
    @classmethod
    def _dimensions(cls, value: list[int]) -> list[int]:
        if any(d < 0 for d in value):
            raise PydanticCustomError("negative_dimension", "dimensions must be 0 or more", {})
        return value

    @model_validator(mode="after")
    def _element_count(self) -> InferTensor:
        expected = 1
        for dimension in self.shape:
            expected *= dimension
        got = len(flat_data(self.data))
        if got != expected:
            raise PydanticCustomError(
                "shape_mismatch",
                "tensor '{name}' has {got} elements; shape {shape} needs {expected}",
                {"name": self.name, "got": got, "shape": self.shape, "expected": expected},
            )
        return self


class RequestedOutput(_Open):
    name: str = Field(min_length=1)
    parameters: dict[str, Any] | None = None


class InferRequest(_Open):
    """``POST /v1/infer``: a KServe v2 inference request, with the model (and
    optionally its version) named in the body instead of the URL."""

    model: str = Field(min_length=1)
    version: str | None = Field(default=None, min_length=1)
    id: str | None = None
    inputs: list[InferTensor] = Field(min_length=1, max_length=MAX_INFER_TENSORS)
    outputs: list[RequestedOutput] | None = Field(default=None, max_length=MAX_INFER_TENSORS)
    parameters: dict[str, Any] | None = None


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
