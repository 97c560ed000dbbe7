"""Content-free fingerprints of the messages sent to a model.

Recorded on every LLM span even with content capture off: a stable hash per input message lets
the server see which messages repeat across calls (the prompt prefix a cache can reuse, a context
that grows turn after turn) and a token estimate per message says how much each one weighs,
without any text leaving the process.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

HASH_CHARS = 16


def estimate_tokens(text: str) -> int:
    """The usual 4-characters-a-token estimate (what the mock NIM counts, too)."""
    return math.ceil(len(text) / 4) if text else 0


def field(obj: Any, name: str) -> Any:
    """A message field, whether the message is a dict (request params) or a pydantic object
    (a response message appended to the conversation)."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def content_text(content: Any) -> tuple[str, list[Any]]:
    """(the text of a message's content, its non-text parts). Content is a string or a list of
    parts; text parts are joined so that "hi" and [{"type": "text", "text": "hi"}] match."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    others: list[Any] = []
    if isinstance(content, Iterable) and not isinstance(content, Mapping):
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif field(part, "type") in ("text", "input_text") and isinstance(field(part, "text"), str):
                texts.append(field(part, "text"))
            else:
                others.append(_plain(part))
    else:
        others.append(_plain(content))
    return "".join(texts), others


def tool_calls_of(message: Any) -> list[dict[str, Any]]:
    """A message's tool calls as plain dicts: id, type, function name and arguments."""
    calls = field(message, "tool_calls")
    if not calls:
        return []
    out = []
    for call in calls:
        # Function tools carry {name, arguments}; custom tools {name, input}.
        function = field(call, "function")
        custom = field(call, "custom") if function is None else None
        body = function if function is not None else custom
        out.append(
            {
                "id": field(call, "id"),
                "type": field(call, "type") or "function",
                "name": field(body, "name") if body is not None else None,
                "arguments": field(body, "arguments" if function is not None else "input")
                if body is not None
                else None,
            }
        )
    return out


def fingerprint_message(message: Any) -> tuple[str, int, str]:
    """(hash, token estimate, role) of one input message."""
    role = field(message, "role") or ""
    text, others = content_text(field(message, "content"))
    calls = tool_calls_of(message)
    canonical = [role, text, others, field(message, "tool_call_id"), field(message, "name"), calls]
    encoded = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    digest = hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:HASH_CHARS]
    # The model reads the tool calls of an assistant message too: count them with its text.
    tokens = estimate_tokens(text)
    if calls:
        tokens += estimate_tokens(json.dumps(calls, ensure_ascii=False, default=str))
    return digest, tokens, str(role)


def fingerprint_messages(messages: Iterable[Any]) -> tuple[list[str], list[int], list[str]]:
    """(hashes, token estimates, roles), one entry per message, in order."""
    hashes: list[str] = []
    tokens: list[int] = []
    roles: list[str] = []
    for message in messages:
        digest, count, role = fingerprint_message(message)
        hashes.append(digest)
        tokens.append(count)
        roles.append(role)
    return hashes, tokens, roles


def _plain(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    return dump() if callable(dump) else obj
