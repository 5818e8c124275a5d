"""Properties of the cache key (hypothesis): the same request, however its
JSON is written, is one key; a different answer-determining value is another."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from interlock.cache.keys import body_digest

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=25,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant"]), "content": st.text(max_size=40)}
    ),
    min_size=1,
    max_size=4,
)
extras = st.dictionaries(
    st.text(min_size=1, max_size=10).filter(lambda k: k not in {"model", "messages"}),
    values,
    max_size=4,
)


def _shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's keys in another order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


@settings(max_examples=200)
@given(
    messages=messages,
    extra=extras,
    seed=st.integers(0, 2**32),
    indent=st.sampled_from([None, 1, 4]),
)
def test_key_order_and_whitespace_do_not_change_the_key(
    messages: list[dict[str, Any]], extra: dict[str, Any], seed: int, indent: int | None
) -> None:
    body = {"model": "m", "messages": messages, **extra}
    rewritten = json.loads(json.dumps(_shuffled(body, random.Random(seed)), indent=indent))
    assert body_digest(rewritten) == body_digest(body)


@settings(max_examples=200)
@given(messages=messages, extra=extras, other=st.text(max_size=40))
def test_a_different_prompt_is_a_different_key(
    messages: list[dict[str, Any]], extra: dict[str, Any], other: str
) -> None:
    body = {"model": "m", "messages": messages, **extra}
    changed = {**body, "messages": [*messages[:-1], {**messages[-1], "content": other}]}
    if other != messages[-1]["content"]:
        assert body_digest(changed) != body_digest(body)
