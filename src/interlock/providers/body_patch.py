"""An operator's changes to what a deployment sends: a JSON merge patch
(RFC 7396) over the request body, in the upstream's own API shape.

An object in the patch merges into the object at the same place in the
body, key by key; a ``null`` takes the key out; any other value replaces
what was there. So ``{"thinking": {"type": "disabled"}}`` sets one field
of DeepSeek's, ``{"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}}``
reaches into a Gemini body without touching the rest of its
``generationConfig``, and ``{"temperature": null}`` leaves the client's
temperature out.
"""

from __future__ import annotations

from typing import Any

__all__ = ["merge_patch"]


def merge_patch(body: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``body`` with ``patch`` applied; neither is changed (the objects on
    the patch's paths are copies, the rest is shared)."""
    out: dict[str, Any] = _merged(body, patch)
    return out


def _merged(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merged(out.get(key), value)
    return out
