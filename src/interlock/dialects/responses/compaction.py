"""Compaction (``POST /v1/responses/compact``): a long conversation made short.

The model that serves the request summarises the conversation so far (a
chat call through the pipeline, like any other); the answer is the
conversation's user messages, as they were, followed by one ``compaction``
item. That item's ``encrypted_content`` carries the summary, and a later
request that sends the item back gets it as a user message introducing the
summary (``request.summary_message``), so any model can continue from it, not only
the one that wrote it. Codex compacts this way when its context fills.

The content is this gateway's encoding (base64 of JSON), opaque to the
client as OpenAI's is; it is not encrypted: it holds nothing the client did
not send or read already.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from interlock.dialects.responses.request import (
    chat_messages,
    encode_summary,
    kept_by_compaction,
    latest_compaction,
)
from interlock.dialects.responses.schemas import (
    CompactionItem,
    CompactionTrigger,
    CompactRequest,
    InputItem,
    Message,
)
from interlock.errors import InvalidRequest, UpstreamProtocolError

__all__ = [
    "COMPACTION_PROMPT",
    "TOOL_TEXT_CHARS",
    "compact_body",
    "compactable",
    "compacted",
    "compaction_item",
    "request_items",
    "summary_body",
    "summary_of",
    "user_messages",
]

JSONDict = dict[str, Any]

# Asked of the model after the conversation's transcript.
COMPACTION_PROMPT = (
    "The conversation above is about to be replaced by a summary of it, which "
    "you or another assistant will continue from with no other record of it. "
    "Write that summary now. Keep what is needed to go on: the user's goals "
    "and constraints, decisions taken and why, the current state of the work "
    "(files, commands, results, errors), what is still to do, and anything the "
    "user asked to remember. Be specific and concise; do not address the user."
)


# The most of one tool call's input or result the transcript keeps.
TOOL_TEXT_CHARS = 4_000


def compact_body(request: CompactRequest, history: Sequence[InputItem] = ()) -> JSONDict:
    """The chat body asking the model to summarise ``history`` and the input."""
    items = [*history, *request_items(request)]
    return summary_body(request.model, request.instructions, items, start=-len(history))


def summary_body(
    model: str, instructions: str | None, items: Sequence[InputItem], start: int = 0
) -> JSONDict:
    """The chat body asking ``model`` to summarise the conversation ``items``
    (``start``: the first one's index in the request, for errors).

    The conversation goes to the model as one transcript, not as turns: a
    provider's rules for turns (tool calls answered in the next turn, tools
    declared when calls are present) would refuse a history cut mid-loop,
    and the summary needs the text, not the structure."""
    turns = chat_messages(items, start=start)
    if not turns:
        raise InvalidRequest("There is no conversation to compact.", param="input")
    messages: list[JSONDict] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    transcript = "\n\n".join(_entry(turn) for turn in turns)
    prompt = f"<conversation>\n{transcript}\n</conversation>\n\n{COMPACTION_PROMPT}"
    messages.append({"role": "user", "content": prompt})
    return {"model": model, "messages": messages}


def summary_of(answer: JSONDict) -> str:
    """The summary a compaction's chat completion carries."""
    choices = answer.get("choices") or [{}]
    summary = (choices[0].get("message") or {}).get("content")
    if not isinstance(summary, str) or not summary.strip():
        raise UpstreamProtocolError("the model answered the compaction with no summary")
    return summary


def compactable(items: Sequence[InputItem]) -> bool:
    """Whether compacting would shorten the conversation ``items``: after
    its latest compaction it holds more than the messages compaction
    keeps as they are (``kept_by_compaction``)."""
    since = latest_compaction(items)
    return any(not kept_by_compaction(item) for item in items[since:] if item.type != "compaction")


def compacted(items: Sequence[InputItem], item: JSONDict) -> list[InputItem]:
    """The conversation ``items`` once compacted into ``item``: the messages
    compaction keeps, then the compaction."""
    kept: list[InputItem] = [each for each in items if kept_by_compaction(each)]
    return [*kept, CompactionItem.model_validate(item)]


def _entry(turn: JSONDict) -> str:
    """One chat message as transcript text."""
    role = turn["role"]
    if role == "tool":
        result = _shortened(_text(turn.get("content")))
        return f"[result of call {turn.get('tool_call_id')}]\n{result}"
    parts = [f"[{role}]\n{_text(turn.get('content'))}"] if turn.get("content") else []
    for call in turn.get("tool_calls") or ():
        custom = call.get("custom")
        called = custom if isinstance(custom, dict) else call.get("function") or {}
        said = called.get("input") if isinstance(custom, dict) else called.get("arguments")
        heading = f"[{role} called {called.get('name')} (call {call.get('id')})]"
        parts.append(f"{heading}\n{_shortened(str(said))}")
    return "\n\n".join(parts) or f"[{role}]"


def _shortened(text: str) -> str:
    """A tool's input or result cut to its head and tail: they are most of a
    long agent session (whole files, command output), which is compacted
    because it nears the model's context, and the summary needs what they
    were, not every line of them."""
    if len(text) <= TOOL_TEXT_CHARS:
        return text
    half = TOOL_TEXT_CHARS // 2
    elided = len(text) - 2 * half
    return f"{text[:half]}\n[... {elided:,} characters left out ...]\n{text[-half:]}"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    pieces = []
    for part in content or ():
        kind = part.get("type")
        pieces.append(part.get("text", "") if kind == "text" else f"[{kind}]")
    return "".join(pieces)


def request_items(request: CompactRequest) -> list[InputItem]:
    """The input as items; a ``compaction_trigger`` (Codex's, which asks for
    what this endpoint does anyway) is no item of the conversation."""
    if request.input is None:
        return []
    if isinstance(request.input, str):
        return [Message(role="user", content=request.input)]
    return [item for item in request.input if not isinstance(item, CompactionTrigger)]


def user_messages(stored: Iterable[JSONDict]) -> list[JSONDict]:
    """The user messages among stored items, as they were stored."""
    return [item for item in stored if item.get("type") == "message" and item.get("role") == "user"]


def compaction_item(item_id: str, summary: str) -> JSONDict:
    return {"id": item_id, "type": "compaction", "encrypted_content": encode_summary(summary)}
